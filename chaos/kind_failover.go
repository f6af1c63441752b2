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
			"killing. Heal restarts a killed primary, which rejoins as a replica (Redis: empty; PostgreSQL: rewound with " +
			"pg_rewind, losing what its replica never got). Without +duration it heals when the next failover is due " +
			"(--fault failover@2s --fault failover@6s fails over and back), else at the run's end. On a lock workload a " +
			"lossy failover keeps a holder working across it: the first lock granted inside the lossy window, on a key " +
			"nobody held when the link was cut, stays held until the promotion and another client's write of that key (or " +
			"until just before its lease expires), and from the kill every client's next cycle asks for that key; " +
			"--opt failover-holder=false turns that off",
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
				f := NewLossyFailover(env, b.params.d.D, b.id)
				f.keeper, _ = b.clients.(HolderKeeper)
				p.Fault = f
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
// killed primary (kill, lossy; pg-standby's force stops it, so there too),
// which rejoins as a replica; a forced Sentinel failover has nothing to
// heal. Several failovers in a schedule run one after the other (see
// chainFailovers).
// A lossy failover first cuts the primary's peer link for lag, so the
// writes it acknowledges meanwhile never reach the replica promoted.
type Failover struct {
	env  TopologyEnv
	mode string // lossy, or an infra.FailoverMode
	lag  time.Duration
	cut  *linkFault // lossy: the primary's replication link, cut for lag
	// keeper, when the workload has one, keeps the first holder granted
	// inside the lossy window working across the failover (lossy only).
	keeper HolderKeeper

	// after is the failover before this one in the schedule: Start waits
	// until it healed (its old primary back, the replica to promote).
	after  *Failover
	healed chan struct{} // closed once Heal succeeded and was recorded (HealRecorded)
	healOK bool          // Heal succeeded

	mu     sync.Mutex
	res    infra.FailoverResult
	killed infra.Node // the old primary, killed (or stopped) and not restarted yet
	keep   keepState
}

// keepState is what a lossy failover's holder keep did.
type keepState struct {
	armed  bool   // a keep was armed (the workload keeps holders)
	off    bool   // the workload can keep holders but was told not to
	holder Holder // the holder kept across the failover
	ok     bool   // one was kept
}

// healedCh is f's healed channel, made on first use.
func (f *Failover) healedCh() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.healed == nil {
		f.healed = make(chan struct{})
	}
	return f.healed
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
	if f.after != nil {
		select {
		case <-f.after.healedCh():
		case <-ctx.Done():
			return fmt.Errorf("failover: the failover before it has not healed (its old primary is not back as a replica): %w", ctx.Err())
		}
	}
	how := infra.FailoverMode(f.mode)
	var keep Keep
	if f.cut != nil {
		// Armed before the cut (a lock released from now on may have its
		// release lost), open once the link is cut (a lock granted from
		// then on never reaches a replica).
		if f.keeper != nil {
			keep = f.keeper.KeepHolder()
			f.mu.Lock()
			f.keep.off, f.keep.armed = keep == nil, keep != nil
			f.mu.Unlock()
		}
		if keep != nil {
			defer keep.Release() // once promoted (or failed): the holder goes on
			defer func() {
				if h, ok := keep.Close(); ok { // nothing is taken after the first Close
					f.mu.Lock()
					f.keep.holder, f.keep.ok = h, true
					f.mu.Unlock()
				}
			}()
		}
		if err := f.cut.Start(ctx); err != nil {
			return errors.Join(fmt.Errorf("failover: cut replication: %w", err), f.cut.Heal(context.WithoutCancel(ctx)))
		}
		if keep != nil {
			keep.Open()
		}
		if err := clock.Sleep(ctx, f.lag); err != nil {
			return errors.Join(fmt.Errorf("failover: %w", err), f.cut.Heal(context.WithoutCancel(ctx)))
		}
		if keep != nil { // the lossy window ends with the kill: no holder is taken after it
			h, ok := keep.Close()
			f.mu.Lock()
			f.keep.holder, f.keep.ok = h, ok
			f.mu.Unlock()
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
	if (how == infra.FailoverKill || res.OldStopped) && res.Old != "" {
		if n, ok := f.env.Node(res.Old); ok {
			f.killed = n // killed, or maybe killed: Heal restarts it either way
		}
	}
	if err != nil {
		return fmt.Errorf("failover: %w", err)
	}
	return nil
}

// Heal restarts the killed (or stopped) primary and waits (SettleTimeout
// at most) until the roles have settled: it is back as a replica of the
// new primary (Redis: Sentinel re-pointed it; it restarts as a master of
// its own), and every Sentinel names the new primary. A failover chained
// after this one starts only once the runner recorded this heal
// (HealRecorded): what the record function does for the heal (the roles
// sample) happens before the next failover's kill.
func (f *Failover) Heal(ctx context.Context) error {
	f.mu.Lock()
	killed, env := f.killed, f.env
	f.mu.Unlock()
	if killed != nil {
		if err := killed.Start(ctx); err != nil {
			return fmt.Errorf("failover: restart the old primary %s: %w", killed.Name(), err)
		}
		f.mu.Lock()
		f.killed = nil
		f.mu.Unlock()
	}
	if env != nil {
		sctx, cancel := context.WithTimeout(ctx, SettleTimeout)
		err := env.WaitSettled(sctx)
		cancel()
		if err != nil {
			return fmt.Errorf("failover: heal: %w", err)
		}
	}
	f.mu.Lock()
	f.healOK = true
	f.mu.Unlock()
	return nil
}

// SettleTimeout bounds a failover heal's wait for the roles to settle.
const SettleTimeout = 30 * time.Second

// HealRecorded implements HealRecorder: once the heal succeeded and was
// recorded, a failover chained after this one may start.
func (f *Failover) HealRecorded() {
	healed := f.healedCh()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.healOK {
		return
	}
	select {
	case <-healed:
	default:
		close(healed)
	}
}

// Holder is the holder kept across a lossy failover (HolderFault): the
// start event records its process, key and token.
func (f *Failover) Holder() (Holder, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keep.holder, f.keep.ok
}

// AttrHeld is the failover start event's account of the holder kept across
// it: "p3 k5" (process and key), or why there is none.
const AttrHeld = "held"

// Report dates the fault at the primary's loss and names both primaries;
// mark promoted_ns is when the new one was seen promoted; attr held the
// holder kept across a lossy failover.
func (f *Failover) Report() Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := Report{Began: f.res.Started, Attrs: map[string]string{"mode": f.mode, "old": f.res.Old, "new": f.res.New}}
	if f.cut != nil {
		r.Attrs["lag"] = f.lag.String()
		switch {
		case f.keep.ok:
			r.Attrs[AttrHeld] = fmt.Sprintf("p%d %s", f.keep.holder.Process, f.keep.holder.Key)
		case f.keep.armed:
			r.Attrs[AttrHeld] = "none: no lock was granted inside the lossy window on a key free when the link was cut"
		case f.keep.off:
			r.Attrs[AttrHeld] = "off (--opt failover-holder=false)"
		}
	}
	if !f.res.Promoted.IsZero() {
		r.Marks = map[string]time.Time{"promoted_ns": f.res.Promoted}
	}
	return r
}
