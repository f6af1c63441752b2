package bench

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/infra"
)

// roleLog samples the node roles of a replicated topology during a phase
// (results.ImplResult.Roles: which node was primary when): at the phase
// start, after every start and heal of a replication fault (failover,
// replication-lag, replication-partition), and at the end of the load. A
// nil roleLog (independent nodes) does nothing.
//
// The sample after a fault event is taken while the fault runner records
// the event, before it goes on: a failover's heal returns once the roles
// have settled (the old primary a replica again, the Sentinels agreeing)
// and a failover chained after it starts only once its heal was recorded
// (chaos.HealRecorder), so the sample after a heal shows the settled set,
// never the next failover's kill.
type roleLog struct {
	env *infra.Env
	now func() int64

	mu      sync.Mutex
	samples []results.RoleSample
}

// roleTimeout bounds one sample (it asks every node directly).
const roleTimeout = 3 * time.Second

// startRoles records the topology and the roles at the phase start.
func (p *phaseRun) startRoles(ctx context.Context, ir *results.ImplResult) *roleLog {
	if p.env == nil || p.env.Topology() == infra.TopologyNone {
		return nil
	}
	ir.Topology = string(p.env.Topology())
	r := &roleLog{env: p.env, now: p.h.Now}
	r.sample(ctx, "phase start")
	return r
}

// sample asks every node its role now.
func (r *roleLog) sample(ctx context.Context, why string) {
	at := r.now()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), roleTimeout)
	defer cancel()
	roles, err := r.env.Roles(sctx)
	s := results.RoleSample{Time: at, Why: why, Roles: map[string]string{}}
	if err != nil {
		s.Why += fmt.Sprintf(" (roles unknown: %v)", err)
	}
	own, _ := infra.TopologyNodes(r.env.Topology())
	for _, n := range own { // the topology's nodes, not the workload's resource
		if role, ok := roles[n.Name]; ok {
			s.Roles[n.Name] = string(role)
		}
	}
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
}

// after wraps the fault recorder: after each replication fault event, a
// sample (roleTimeout at most) before the recorder returns.
func (r *roleLog) after(ctx context.Context, record func(chaos.Event)) func(chaos.Event) {
	if r == nil {
		return record
	}
	return func(ev chaos.Event) {
		record(ev)
		if k, err := chaos.LookupKind(ev.Kind); err != nil || !k.Topology {
			return
		}
		why := "after " + ev.Fault + " (" + ev.ID + ") started"
		if ev.Heal {
			why = "after " + ev.Fault + " (" + ev.ID + ") healed"
		}
		r.sample(ctx, why)
	}
}

// finish takes the last sample and hands them all, in time order, to ir.
func (r *roleLog) finish(ctx context.Context, ir *results.ImplResult) {
	if r == nil {
		return
	}
	r.sample(ctx, "load over, faults healed")
	r.mu.Lock()
	defer r.mu.Unlock()
	sort.SliceStable(r.samples, func(i, j int) bool { return r.samples[i].Time < r.samples[j].Time })
	ir.Roles = r.samples
}
