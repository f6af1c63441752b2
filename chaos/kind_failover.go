package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/infra"
	"github.com/faultline-dev/faultline/internal/clock"
)

// DefaultFailoverLag is how long a lossy failover's primary keeps
// acknowledging writes its replicas never receive before it dies.
const DefaultFailoverLag = 500 * time.Millisecond

// failover: the primary of a replicated topology is lost and a replica
// promoted.
func init() {
	register(Kind{
		Name: "failover", Class: Process, Topology: true,
		Params: "lossy (default; lossy with that lag: a duration such as 800ms), kill or force",
		Doc: "fails the replicated topology over. lossy (default): the primary's replication link is cut, it keeps " +
			"acknowledging its clients for the lag (default 500ms: writes its replicas never get, the L6 window of " +
			"asynchronous replication, made deterministic), then it is SIGKILLed and a replica promoted " +
			"(Sentinel / pg_promote) and the link restored; kill: SIGKILL and promotion only (on loopback " +
			"replication is sub-millisecond, so little is lost); force: SENTINEL FAILOVER / promote without " +
			"killing. Heal restarts a killed primary (it comes back empty and rejoins as a replica)",
		parse: func(p string) (params, error) {
			switch p {
			case "", failoverLossy:
				return params{stream: failoverLossy, d: Dur{D: DefaultFailoverLag}}, nil
			case string(infra.FailoverKill):
				return params{stream: string(infra.FailoverKill)}, nil
			case string(infra.FailoverForce):
				return params{stream: string(infra.FailoverForce)}, nil
			}
			if d, err := time.ParseDuration(p); err == nil {
				if d <= 0 || d > time.Minute {
					return params{}, fmt.Errorf("lag %s: want a duration in (0, 1m]", p)
				}
				return params{stream: failoverLossy, d: Dur{D: d}}, nil
			}
			return params{}, errors.New("want lossy, a lag such as 800ms (lossy with that lag), kill or force")
		},
		check: func(s Spec, _ params) error {
			if s.Target != "" {
				return fmt.Errorf("failover takes no target (it always hits the current primary), got %q", s.Target)
			}
			return nil
		},
		build: func(b builder, p *Planned) error {
			if _, paper := b.env.(paperEnv); paper {
				p.Fault = &Failover{mode: b.params.stream, lag: b.params.d.D}
				return nil
			}
			env, err := topologyEnv(b.env, "failover")
			if err != nil {
				return err
			}
			if b.params.stream == failoverLossy {
				p.Fault = NewLossyFailover(env, b.params.d.D, b.id)
			} else {
				p.Fault = NewFailover(env, infra.FailoverMode(b.params.stream))
			}
			return nil
		},
		draw: func(d *drawer, s *Spec) {},
	})
}

// failoverLossy is the failover mode that cuts replication before the kill.
const failoverLossy = "lossy"

// Failover fails a replicated topology over (infra.Env.Failover). Start
// returns once a replica is promoted; its Report dates the fault at the
// primary's loss and names the old and the new primary. Heal restarts a
// killed primary (kill, lossy); a forced failover has nothing to heal.
// A lossy failover first cuts the primary's peer link for lag, so the
// writes it acknowledges meanwhile never reach the replica promoted.
type Failover struct {
	env  TopologyEnv
	mode string // lossy, or an infra.FailoverMode
	lag  time.Duration
	cut  *linkFault // lossy: the primary's replication link, cut for lag

	mu     sync.Mutex
	res    infra.FailoverResult
	killed infra.Node // the old primary, killed and not restarted yet
}

// NewFailover returns a failover of env's topology in mode how.
func NewFailover(env TopologyEnv, how infra.FailoverMode) *Failover {
	return &Failover{env: env, mode: string(how)}
}

// NewLossyFailover returns a failover that cuts the primary's replication
// link (its peer link: replicas and Sentinels lose it, clients do not),
// waits lag, kills the primary, waits for the promotion and restores the
// link. id names the link's toxics.
func NewLossyFailover(env TopologyEnv, lag time.Duration, id string) *Failover {
	return &Failover{env: env, mode: failoverLossy, lag: lag,
		cut: newLinkFault("failover", id, "primary", env,
			infra.Toxic{Type: "timeout", Stream: "upstream", Attributes: map[string]any{"timeout": 0}},
			infra.Toxic{Type: "timeout", Stream: "downstream", Attributes: map[string]any{"timeout": 0}})}
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

// Start fails over and waits for the promotion (lossy: cuts replication,
// waits the lag, then fails over and restores the link).
func (f *Failover) Start(ctx context.Context) error {
	how := infra.FailoverMode(f.mode)
	if f.cut != nil {
		if err := f.cut.Start(ctx); err != nil {
			return errors.Join(fmt.Errorf("failover: cut replication: %w", err), f.cut.Heal(context.WithoutCancel(ctx)))
		}
		if err := clock.Sleep(ctx, f.lag); err != nil {
			return errors.Join(fmt.Errorf("failover: %w", err), f.cut.Heal(context.WithoutCancel(ctx)))
		}
		how = infra.FailoverKill
	}
	res, err := f.env.Failover(ctx, how)
	if f.cut != nil {
		// Restored once the replica is promoted: Sentinel can then turn the
		// old primary, restarted by Heal, into a replica.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = errors.Join(err, f.cut.Heal(hctx))
		cancel()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.res = res
	if how == infra.FailoverKill && res.Old != "" {
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
	r := Report{Began: f.res.Started, Attrs: map[string]string{"mode": f.mode, "old": f.res.Old, "new": f.res.New}}
	if f.cut != nil {
		r.Attrs["lag"] = f.lag.String()
	}
	if !f.res.Promoted.IsZero() {
		r.Marks = map[string]time.Time{"promoted_ns": f.res.Promoted}
	}
	return r
}
