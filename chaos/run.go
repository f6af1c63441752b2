package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/internal/clock"
)

// RunOptions tune Run.
type RunOptions struct {
	// TTL resolves ttl-relative durations (2xttl).
	TTL time.Duration
	// Impl is the implementation under test, copied into events and windows.
	Impl string
	// Origin is the run's time zero: spec start times and history times are
	// relative to it. Zero means the moment Run is called.
	Origin time.Time
	// Clock returns history time (ns since run start); nil = time since Origin.
	Clock func() int64
	// HealTimeout bounds each heal (and each node start/stop of a fault);
	// default 30s.
	HealTimeout time.Duration
	Logger      *slog.Logger
}

// Run applies the schedule against env: each fault starts at its time and
// heals after its length, by timers. Every start and heal is reported to
// record (one call at a time) as an Event: the spec, the nodes hit, the
// holder a client fault hit, an ID pairing the start with its heal; a failed
// start carries Error. record must be safe to call from another goroutine.
//
// Run returns when every fault has healed, or when ctx ends: then it heals
// everything still active (restarts killed nodes, resumes paused ones,
// removes toxics, re-enables proxies) with a fresh deadline, records those
// heals and returns. Faults not yet started when ctx ends never start. The
// returned windows are sorted by start; the error joins every start or heal
// failure (the run goes on after a failed start).
func Run(ctx context.Context, s Schedule, env Env, clients Clients, record func(Event), opt RunOptions) ([]Window, error) {
	plan, err := Plan(s, env, clients, opt.TTL)
	if err != nil {
		return nil, err
	}
	return RunPlanned(ctx, plan, record, opt)
}

// RunPlanned is Run on an already resolved plan.
func RunPlanned(ctx context.Context, plan []Planned, record func(Event), opt RunOptions) ([]Window, error) {
	if opt.Origin.IsZero() {
		opt.Origin = time.Now()
	}
	if opt.Clock == nil {
		origin := opt.Origin
		opt.Clock = func() int64 { return int64(time.Since(origin)) }
	}
	if opt.HealTimeout <= 0 {
		opt.HealTimeout = 30 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if record == nil {
		record = func(Event) {}
	}
	r := &runner{opt: opt, record: record}
	var wg sync.WaitGroup
	for _, p := range plan {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.one(ctx, p)
		}()
	}
	wg.Wait()
	r.resetProxies(ctx, plan)
	sort.SliceStable(r.windows, func(i, j int) bool { return r.windows[i].Start < r.windows[j].Start })
	return r.windows, errors.Join(r.errs...)
}

type runner struct {
	opt    RunOptions
	record func(Event)

	mu      sync.Mutex
	windows []Window
	errs    []error
}

func (r *runner) fail(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

// waitUntil blocks until at or until ctx ends; false when ctx ended.
func (r *runner) waitUntil(ctx context.Context, at time.Time) bool {
	return clock.Sleep(ctx, time.Until(at)) == nil
}

func (r *runner) one(ctx context.Context, p Planned) {
	if !r.waitUntil(ctx, r.opt.Origin.Add(p.Start)) {
		return
	}
	log := r.opt.Logger.With("fault", p.Spec.What(), "id", p.ID)
	startCtx, cancel := context.WithTimeout(ctx, r.opt.HealTimeout)
	if _, client := p.Fault.(HolderFault); client {
		// A client fault waits for a holder: bounded by the run, not by
		// the heal timeout.
		cancel()
		startCtx, cancel = context.WithCancel(ctx)
	}
	startErr := p.Fault.Start(startCtx)
	cancel()
	started := time.Now()
	if rf, ok := p.Fault.(Reporter); ok && startErr == nil {
		if b := rf.Report().Began; !b.IsZero() && b.Before(started) {
			started = b // a failover's length counts from the primary's loss
		}
	}
	ev := r.event(p, false)
	if startErr != nil {
		ev.Error = "start failed: " + startErr.Error()
		r.fail(fmt.Errorf("fault %s: %w", p.Spec.String(), startErr))
		log.Warn("fault start failed", "err", startErr)
	}
	if startErr != nil && ctx.Err() != nil {
		// The run ended while a client fault waited for a holder: it never
		// hit anyone, so there is no window; undo anything partial.
		r.heal(ctx, p, log)
		healRecorded(p)
		return
	}
	r.emit(ev)
	if startErr != nil {
		// Undo whatever part applied; a failed fault makes no window.
		r.heal(ctx, p, log)
		r.emit(r.event(p, true))
		healRecorded(p)
		return
	}
	win := Window{ID: p.ID, Fault: p.Spec.What(), Kind: p.Fault.Kind(), Nodes: nodesOf(p), Impl: r.opt.Impl, Start: ev.Time}
	if !p.Instant {
		if p.Length > 0 {
			r.waitUntil(ctx, started.Add(p.Length))
		} else {
			<-ctx.Done()
		}
	}
	r.heal(ctx, p, log)
	heal := r.event(p, true)
	r.emit(heal)
	healRecorded(p)
	win.End = heal.Time
	r.mu.Lock()
	r.windows = append(r.windows, win)
	r.mu.Unlock()
}

// healRecorded tells a HealRecorder its heal was recorded.
func healRecorded(p Planned) {
	if hr, ok := p.Fault.(HealRecorder); ok {
		hr.HealRecorded()
	}
}

// heal undoes p with a fresh deadline (ctx may be over), trying twice.
func (r *runner) heal(ctx context.Context, p Planned, log *slog.Logger) {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opt.HealTimeout)
		err = p.Fault.Heal(hctx)
		cancel()
		if err == nil {
			return
		}
		log.Warn("fault heal failed", "attempt", attempt+1, "err", err)
	}
	if pf, ok := p.Fault.(ProxyFault); ok && err != nil {
		// Last resort for network faults: reset the proxies.
		for _, n := range pf.Nodes() {
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opt.HealTimeout)
			if rerr := n.Proxy().Reset(hctx); rerr == nil {
				err = nil
			}
			cancel()
		}
	}
	if err != nil {
		r.fail(fmt.Errorf("heal %s: %w", p.Spec.String(), err))
	}
}

// resetProxies resets, once every fault has healed, the proxy of every
// node a network fault touched: a toxic or a disabled listener left behind
// by a failed heal must not outlive the run.
func (r *runner) resetProxies(ctx context.Context, plan []Planned) {
	seen := map[string]bool{}
	for _, p := range plan {
		pf, ok := p.Fault.(ProxyFault)
		if !ok {
			continue
		}
		for _, n := range pf.Nodes() {
			if seen[n.Name()] {
				continue
			}
			seen[n.Name()] = true
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opt.HealTimeout)
			if err := n.Proxy().Reset(hctx); err != nil {
				r.fail(fmt.Errorf("reset proxy of %s: %w", n.Name(), err))
			}
			cancel()
		}
	}
}

func (r *runner) emit(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record(ev)
}

func (r *runner) event(p Planned, heal bool) Event {
	ev := Event{
		Time: r.opt.Clock(), Heal: heal, ID: p.ID, Kind: p.Fault.Kind(),
		Fault: p.Spec.What(), Nodes: nodesOf(p), Impl: r.opt.Impl,
		Length: int64(p.Length),
	}
	if hf, ok := p.Fault.(HolderFault); ok {
		ev.Holder, ev.HolderHit = hf.Holder()
	}
	if rf, ok := p.Fault.(Reporter); ok && !heal {
		rep := rf.Report()
		now := time.Now()
		base := ev.Time
		at := func(t time.Time) int64 { return base - int64(now.Sub(t)) }
		if !rep.Began.IsZero() && rep.Began.Before(now) {
			ev.Time = max(at(rep.Began), 0)
		}
		if len(rep.Attrs)+len(rep.Marks) > 0 {
			ev.Attrs = map[string]string{}
		}
		for k, v := range rep.Attrs {
			ev.Attrs[k] = v
		}
		for k, t := range rep.Marks {
			ev.Attrs[k] = strconv.FormatInt(at(t), 10)
		}
	}
	return ev
}

// nodesOf is the names of the nodes p hits (nil for client faults).
func nodesOf(p Planned) []string {
	if nf, ok := p.Fault.(NodeFault); ok {
		return names(nf.Nodes())
	}
	return nil
}
