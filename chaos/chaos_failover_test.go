package chaos_test

import (
	"context"
	"fmt"
	"github.com/faultline-dev/faultline/bench/checker"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench"
	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/infra"
)

// The failover rows (issue 12) run on a replicated topology of their own,
// started once: redis-sentinel (1 primary, 2 replicas, 3 Sentinels) plus
// the counter workload's resource node.
var failoverEnv struct {
	once sync.Once
	env  *infra.Env
	err  error
	took time.Duration
}

// failoverScripts are the scripted rows of the topology implementations.
var failoverScripts = map[string]script{
	"failover":       {ttl: failoverTTL, run: splitFailoverScenario},
	"failover-async": {ttl: standbyTTL, run: standbyFailoverScenario},
	"failover-sync":  {ttl: standbyTTL, run: standbyFailoverScenario},
}

// failoverTTL outlives a Sentinel failover (kill to promotion ~2.3 s
// locally with down-after 1 s; ~3 s with 2 s staggered, more under load)
// with margin for A's write after it.
const failoverTTL = 10 * time.Second

// standbyTTL outlives A's fence loop, a PostgreSQL kill and promotion and
// B's cycle: at 5 s, A's lease had -298 ms left once in CI (load ~8).
const standbyTTL = 10 * time.Second

// rowTopology is the topology a row runs on: its implementation's own
// (redis-sentinel), pg-standby for a row with the setting standby=async or
// standby=sync (TestChaosPGStandby), else none.
func rowTopology(row chaos.Row) infra.Topology {
	if info, err := lock.Lookup(row.Impl); err == nil && info.Topology != "" {
		return infra.Topology(info.Topology)
	}
	if _, ok := row.Settings()["standby"]; ok {
		return infra.TopologyPGStandby
	}
	return infra.TopologyNone
}

// topologyRow says whether a row runs on a replicated topology.
func topologyRow(row chaos.Row) bool { return rowTopology(row) != infra.TopologyNone }

func needFailoverEnv(t *testing.T) *infra.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("Chaos suite: starts a replicated Redis (skipped with -short)")
	}
	failoverEnv.once.Do(func() {
		provider := os.Getenv("FAULTLINE_PROVIDER")
		if provider == "" {
			provider = "local"
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		failoverEnv.env, failoverEnv.err = infra.Up(ctx, infra.Spec{Topology: infra.TopologyRedisSentinel,
			Nodes: []infra.NodeSpec{{Name: "resource", Kind: infra.Redis}}, Provider: provider})
		failoverEnv.took = time.Since(start)
	})
	if failoverEnv.err != nil {
		t.Fatalf("failover environment did not start: %v", failoverEnv.err)
	}
	return failoverEnv.env
}

// TestChaosFailover runs the rows of the implementations that need a
// replicated topology (redis-sentinel-setnx, redis-sentinel-wait), apart
// from TestChaosLocks: their environment is a Sentinel set, and a failover
// takes seconds. A row that runs a failover through the runner also has
// its kept holder asserted (assertKeptHolder).
func TestChaosFailover(t *testing.T) {
	m := loadMatrix(t)
	env := needFailoverEnv(t)
	t.Logf("environment: %s %s (%s), started in %v", env.Topology(), env.Provider(), env.ProviderReason(), failoverEnv.took.Round(time.Millisecond))
	ran := 0
	for _, row := range m.Rows {
		if rowTopology(row) != infra.TopologyRedisSentinel || dockerRow(row) { // docker rows: TestChaosFailoverPairs
			continue
		}
		ran++
		t.Run(row.Name(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			var o outcome
			if row.Scripted() {
				o = runFailoverScript(t, ctx, env, row)
			} else {
				o = runWorkload(t, ctx, env, row)
				assertKeptHolder(t, row, o)
			}
			assertRow(t, row, o)
		})
	}
	if ran == 0 {
		t.Fatal("no topology row in chaos/expected.md")
	}
}

func runFailoverScript(t *testing.T, ctx context.Context, env *infra.Env, row chaos.Row) outcome {
	t.Helper()
	sc, ok := failoverScripts[row.Fault]
	if !ok {
		t.Fatalf("row %s (line %d): run is script but there is no failover script named %q", row.Name(), row.Line, row.Fault)
	}
	cfg := lockConfig(row, sc.ttl, 1)
	cfg.Path = bench.PathProxied
	cfg.Quiet = time.Second // every lease of the script ends released or refused
	r := newPhaseRun(t, row, cfg, nil)
	r.spec.Script = func(ctx context.Context, d *bench.Driver) error {
		sc.run(&scene{t: t, ctx: ctx, d: d, row: row, ttl: sc.ttl})
		return nil
	}
	return r.run(t, ctx, env)
}

// failover fails the topology over (kill the primary, wait for Sentinel to
// promote a replica) and logs it as the runner does: dated at the loss,
// with the old and new primary and the promotion time. The returned heal
// restarts the old primary.
func (s *scene) failover() (heal func(), res chaos.Report) {
	s.t.Helper()
	f := chaos.NewFailover(s.d.Env(), infra.FailoverKill)
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	err := f.Start(ctx)
	cancel()
	rep := f.Report()
	s.must(err == nil, "failover: %v", err)
	s.faults++
	id := "s" + strconv.Itoa(s.faults)
	now, at := time.Now(), s.d.History().Now()
	hist := func(t time.Time) int64 { return at - int64(now.Sub(t)) }
	s.event(history.FaultStart, "failover", f.Kind(), id, f.Targets(), func(op *history.Op) {
		op.Time = hist(rep.Began)
		for k, v := range rep.Attrs {
			op.Attrs[k] = v
		}
		for k, t := range rep.Marks {
			op.Attrs[k] = strconv.FormatInt(hist(t), 10)
		}
	})
	healed := false
	heal = func() {
		if healed {
			return
		}
		healed = true
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 30*time.Second)
		defer cancel()
		if err := f.Heal(ctx); err != nil {
			s.t.Errorf("heal failover: %v", err)
		}
		s.event(history.FaultHeal, "failover", f.Kind(), id, f.Targets(), nil)
	}
	s.t.Cleanup(heal)
	return heal, rep
}

// splitFailoverScenario (L6): the primary's peer link is cut (its replicas
// stop receiving the stream; its clients still reach it); A asks for k0 on
// it; the primary is killed and Sentinel promotes a replica that never saw
// A's key; B acquires k0 there, reads, writes, releases; A, within its
// lease, writes its stale increment. Without WAIT, A got the lock and the
// writes overlap (mutual exclusion, lost update, and the lock itself was a
// lost acknowledged write). With WAIT, A's acquire finds no replica
// acknowledging, gives its key back and reports not acquired: nothing to
// lose.
func splitFailoverScenario(s *scene) {
	b := s.proc(nil)
	a := s.proc(nil)
	p, err := chaos.Build(chaos.Spec{Kind: "replication-partition", Target: "primary"}, "script", s.d.Env(), nil, s.ttl)
	s.must(err == nil, "build the partition: %v", err)
	healCut := s.fault(p.Fault, "replication-partition:primary")
	// One attempt, well inside Sentinel's down-after (1 s): the old
	// primary is still the one everybody uses.
	la, aErr := a.Acquire(s.ctx, key, 300*time.Millisecond, false)
	var va int64
	if aErr == nil {
		va, err = a.Read(s.ctx, la)
		s.must(err == nil, "A read: %v", err)
	}
	healFailover, rep := s.failover()
	healCut()
	s.t.Logf("failover %s → %s", rep.Attrs["old"], rep.Attrs["new"])
	lb, bErr := b.Acquire(s.ctx, key, s.ttl, false)
	s.must(bErr == nil || aErr == nil, "B could not acquire k0 on the new primary: %v", bErr)
	if bErr == nil {
		s.cycle(b, lb)
	}
	if aErr == nil {
		s.stillHeld(a, la)
		_ = a.Write(s.ctx, la, va)
		_ = a.Release(s.ctx, la)
	}
	healFailover()
}

// assertKeptHolder checks the holder a runner's lossy failover kept across
// it (the failover's held attr): off with failover-holder=false; none for
// redis-sentinel-wait, whose acquires inside the cut get no WAIT
// acknowledgement and give their key back; else one holder, whose write
// (the stale one the violation names) completed within its lease, so the
// violation is the failover's and not a ttl expiry.
func assertKeptHolder(t *testing.T, row chaos.Row, o outcome) {
	t.Helper()
	fos := checker.Failovers(o.ops)
	if len(fos) == 0 {
		return // a row without a failover
	}
	held := fos[0].Held
	switch {
	case row.Settings()["failover-holder"] == "false":
		if !strings.HasPrefix(held, "off") {
			t.Errorf("failover-holder=false, yet the failover says held %q", held)
		}
		return
	case row.Impl == "redis-sentinel-wait":
		if !strings.HasPrefix(held, "none") {
			t.Errorf("redis-sentinel-wait: a lock was granted inside the lossy window (held %q): WAIT 1 should get no acknowledgement while the link is cut", held)
		}
		return
	}
	var p int
	var key string
	if _, err := fmt.Sscanf(held, "p%d %s", &p, &key); err != nil {
		t.Fatalf("no holder kept across the failover (held %q); history: %s", held, o.saveHistory(row))
	}
	ops := checker.Operations(o.ops)
	var acq, write checker.Operation // its last acquire before the loss, its first write after
	for _, op := range ops {
		switch {
		case int(op.Process) != p || op.Key() != key:
		case op.F() == "acquire" && op.OK() && op.Invoke.Time < fos[0].Lost:
			acq = op
		case op.F() == "write" && op.Invoke.Time > fos[0].Lost && write.F() == "":
			write = op
		}
	}
	if acq.F() == "" || write.F() == "" || !write.OK() {
		t.Fatalf("kept holder p%d on %s: acquire %+v, write %+v: want an acquire before the loss and an ok write after", p, key, acq, write)
	}
	lease := acq.Invoke.Time + int64(o.ttl)
	t.Logf("kept holder p%d on %s: acquired at %.3fs, primary lost at %.3fs, wrote at %.3fs, lease valid until at least %.3fs",
		p, key, float64(acq.Complete.Time)/1e9, float64(fos[0].Lost)/1e9, float64(write.Complete.Time)/1e9, float64(lease)/1e9)
	if write.Complete.Time >= lease {
		t.Errorf("the kept holder's write completed at %.3fs, after its lease could expire (%.3fs): a ttl expiry, not the failover", float64(write.Complete.Time)/1e9, float64(lease)/1e9)
	}
}
