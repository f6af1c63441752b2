package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/infra"
)

// failover: the primary of a replicated topology is lost and a replica
// promoted.
func init() {
	register(Kind{
		Name: "failover", Class: Process, Topology: true,
		Params: "kill (default) or force",
		Doc: "fails the replicated topology over: kill SIGKILLs the primary and waits until a replica is promoted (Sentinel / pg_promote), " +
			"heal restarts the old primary (it comes back empty and rejoins as a replica); force asks Sentinel for a failover without killing anything",
		parse: func(p string) (params, error) {
			switch p {
			case "", string(infra.FailoverKill):
				return params{stream: string(infra.FailoverKill)}, nil
			case string(infra.FailoverForce):
				return params{stream: string(infra.FailoverForce)}, nil
			}
			return params{}, errors.New("want kill or force")
		},
		check: func(s Spec, _ params) error {
			if s.Target != "" {
				return fmt.Errorf("failover takes no target (it always hits the current primary), got %q", s.Target)
			}
			return nil
		},
		build: func(b builder, p *Planned) error {
			if _, paper := b.env.(paperEnv); paper {
				p.Fault = &Failover{mode: infra.FailoverMode(b.params.stream)}
				return nil
			}
			env, err := topologyEnv(b.env, "failover")
			if err != nil {
				return err
			}
			p.Fault = NewFailover(env, infra.FailoverMode(b.params.stream))
			return nil
		},
		draw: func(d *drawer, s *Spec) {},
	})
}

// Failover fails a replicated topology over (infra.Env.Failover). Start
// returns once a replica is promoted; its Report dates the fault at the
// primary's loss and names the old and the new primary. Heal restarts a
// killed primary (FailoverKill); a forced failover has nothing to heal.
type Failover struct {
	env  TopologyEnv
	mode infra.FailoverMode

	mu     sync.Mutex
	res    infra.FailoverResult
	killed infra.Node // the old primary, killed and not restarted yet
}

// NewFailover returns a failover of env's topology in mode how.
func NewFailover(env TopologyEnv, how infra.FailoverMode) *Failover {
	return &Failover{env: env, mode: how}
}

// Kind implements Fault.
func (f *Failover) Kind() string { return "failover" }

// Targets is the old primary once started.
func (f *Failover) Targets() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.res.Old == "" {
		return []string{"primary"}
	}
	return []string{f.res.Old}
}

// Nodes is the old primary once started.
func (f *Failover) Nodes() []infra.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.env == nil {
		return nil
	}
	if n, ok := f.env.Node(f.res.Old); ok {
		return []infra.Node{n}
	}
	return nil
}

// Start fails over and waits for the promotion.
func (f *Failover) Start(ctx context.Context) error {
	res, err := f.env.Failover(ctx, f.mode)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.res = res
	if f.mode == infra.FailoverKill && res.Old != "" {
		if n, ok := f.env.Node(res.Old); ok {
			f.killed = n // killed, or maybe killed: Heal restarts it either way
		}
	}
	if err != nil {
		return fmt.Errorf("failover: %w", err)
	}
	return nil
}

// Heal restarts the killed primary.
func (f *Failover) Heal(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.killed == nil {
		return nil
	}
	if err := f.killed.Start(ctx); err != nil {
		return fmt.Errorf("failover: restart the old primary %s: %w", f.killed.Name(), err)
	}
	f.killed = nil
	return nil
}

// Report dates the fault at the primary's loss and names both primaries;
// mark promoted_ns is when the new one was seen promoted.
func (f *Failover) Report() Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := Report{Began: f.res.Started, Attrs: map[string]string{"mode": string(f.mode), "old": f.res.Old, "new": f.res.New}}
	if !f.res.Promoted.IsZero() {
		r.Marks = map[string]time.Time{"promoted_ns": f.res.Promoted}
	}
	return r
}
