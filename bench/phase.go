package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/infra"
	"github.com/faultline-dev/faultline/internal/clock"
)

// PhaseSpec is one implementation's phase on an environment that is
// already up: what `faultline run` does per implementation, and what the
// Chaos suite does per matrix row.
type PhaseSpec struct {
	// Config holds the settings: workload, clients, share, duration,
	// warm-up, ops, rate, keys, ttl, timeouts, quiet period, path, lock
	// options. RunPhase fills its defaults and validates it.
	Config Config
	// Impl is the implementation under test.
	Impl string
	// Seed makes the workers' choices reproducible.
	Seed int64
	// Schedule is the phase's fault schedule, times relative to the start
	// of the load (nil: no fault). Config.Faults and Config.Nemesis are not
	// read here: the caller builds the schedule (Run: the scripted faults
	// plus the nemesis).
	Schedule chaos.Schedule
	// History receives every operation and fault event; the caller owns it
	// (and closes it). RunPhase sets its implementation to Impl.
	History *recorder.History
	// Script, when set, replaces the workers' loop: the caller drives
	// processes by hand (the Chaos suite's scripted interleavings). The
	// session start, heal, quiet period, probes and Finish stay RunPhase's.
	Script func(ctx context.Context, d *Driver) error
	// BeforeProbes runs after the quiet period, before the probes (e.g. to
	// record the lock state as it is then).
	BeforeProbes func(ctx context.Context)
	// Checkpoint, when set and Config.Checkpoint > 0, is called every
	// Config.Checkpoint while the load runs with the phase's figures so
	// far (End: the checkpoint's history time) and its fault windows so
	// far (one still open ends at the checkpoint). It runs on its own
	// goroutine; the load goes on meanwhile.
	Checkpoint func(ir results.ImplResult, windows []results.FaultWindow)
}

// PhaseResult is what a phase produced.
type PhaseResult struct {
	Impl    results.ImplResult
	Windows []results.FaultWindow
}

// failPace is the least time a closed-loop iteration that did not succeed
// takes: a worker whose node is down (connection refused in microseconds)
// waits out the rest instead of spinning and flooding the history.
const failPace = 5 * time.Millisecond

// RunPhase runs one implementation's phase on env: it starts the
// workload's session (which resets the resource), opens the clients (in
// groups of Config.Share processes sharing one implementation client),
// runs the workers (or Script) for Config.Duration while the schedule's
// faults come and go, stops them (a grace period, then their calls are
// cancelled), heals everything, waits the quiet period, probes every key
// while the workers' clients are still open (Attrs probe=live), closes the
// clients, probes again (probe=final) and lets the workload append its
// final state. It does not judge the history: the caller runs the checks
// on the history read back (Run: check; the Chaos suite: per row).
//
// When ctx ends the load stops at once and no probes run (keys may still
// be held legitimately); Finish still dumps the resource.
func RunPhase(ctx context.Context, env *infra.Env, spec PhaseSpec) (PhaseResult, error) {
	cfg := spec.Config
	if len(cfg.Impls) == 0 {
		cfg.Impls = []string{spec.Impl}
	}
	if cfg.Topology == "" && env != nil {
		cfg.Topology = string(env.Topology()) // the environment's topology is the phase's
	}
	cfg = cfg.WithDefaults().RaiseQuiet().RouteOptions()
	if err := cfg.Validate(); err != nil {
		return PhaseResult{Impl: results.ImplResult{Name: spec.Impl}}, err
	}
	if spec.History == nil {
		return PhaseResult{Impl: results.ImplResult{Name: spec.Impl}}, errors.New("bench.RunPhase: no history")
	}
	if err := chaos.CheckSchedule(spec.Schedule, cfg.Duration, cfg.TTL); err != nil {
		// A schedule handed in (a suite row's) is held to the rules a
		// run's own faults are: nothing cut short or never fired silently.
		return PhaseResult{Impl: results.ImplResult{Name: spec.Impl}}, &UsageError{Msg: "bench.RunPhase: " + err.Error()}
	}
	wl, _ := workload.Lookup(cfg.Workload)
	p := &phaseRun{cfg: cfg, wl: wl, env: env, h: spec.History, sched: spec.Schedule, impl: spec.Impl,
		seed: spec.Seed, log: cfg.Logger.With("impl", spec.Impl), spec: spec}
	ir, windows, err := p.run(ctx)
	return PhaseResult{Impl: ir, Windows: windows}, err
}

// phaseRun is one implementation's phase in progress.
type phaseRun struct {
	cfg   Config
	wl    workload.Workload
	env   *infra.Env
	h     *recorder.History
	sched chaos.Schedule
	impl  string
	seed  int64
	log   *slog.Logger
	spec  PhaseSpec

	target   workload.Target
	stats    *recorder.Stats
	sessions []workload.Session // extra sessions a Script started

	iterations atomic.Int64 // measured iterations reserved (Ops limit)
	steps      atomic.Int64 // all iterations done (progress)
	nextProc   atomic.Int64 // next process id (a crashed worker's successor, a probe)

	ownersMu sync.Mutex
	owners   []workload.Client // every live process's client, closed after the live probe
}

// newProcess reserves the next process id.
func (p *phaseRun) newProcess() int { return int(p.nextProc.Add(1) - 1) }

// own registers a live process's client, closed after the live probe.
func (p *phaseRun) own(c workload.Client) {
	p.ownersMu.Lock()
	p.owners = append(p.owners, c)
	p.ownersMu.Unlock()
}

// closeOwners closes every live process's client.
func (p *phaseRun) closeOwners() {
	p.ownersMu.Lock()
	owners := p.owners
	p.owners = nil
	p.ownersMu.Unlock()
	for _, c := range owners {
		c.Close()
	}
}

// disown closes a dead process's client now (a crash: its connections go
// with it) and forgets it.
func (p *phaseRun) disown(c workload.Client) {
	p.ownersMu.Lock()
	for i, o := range p.owners {
		if o == c {
			p.owners = append(p.owners[:i], p.owners[i+1:]...)
			break
		}
	}
	p.ownersMu.Unlock()
	c.Close()
}

func (p *phaseRun) run(ctx context.Context) (results.ImplResult, []results.FaultWindow, error) {
	cfg := p.cfg
	ir := results.ImplResult{Name: p.impl, Ops: map[string]results.OpStats{}}
	p.h.SetImpl(p.impl)
	faults := workload.NewFaults()
	p.target = workload.Target{
		Impl: p.impl, Env: p.env, Direct: phasePath(cfg, p.sched, p.env) == PathDirect,
		Keys: cfg.Keys, TTL: cfg.TTL, OpTimeout: cfg.OpTimeout, AcquireTimeout: cfg.AcquireTimeout,
		Params: cfg.implParams(p.wl, p.impl), Opts: maps.Clone(cfg.Opts), Faults: faults, LogDir: cfg.Out,
	}
	if p.env != nil {
		p.target.KeyPrefix = p.env.KeyPrefix()
		p.target.RunToken = p.env.RunToken()
	}
	ph, err := p.wl.Start(ctx, p.target)
	if err != nil {
		return ir, nil, fmt.Errorf("start phase: %w", err)
	}
	defer ph.Close()
	defer func() {
		p.closeOwners() // on every path, also when a Script gives up
		for _, s := range p.sessions {
			s.Close()
		}
	}()

	// Every process's client connects before the clock starts.
	p.nextProc.Store(int64(cfg.Clients))
	var clients []workload.Client
	if p.spec.Script == nil {
		if clients, err = p.openClients(ctx, ph); err != nil {
			return ir, nil, err
		}
	} else {
		p.nextProc.Store(0) // a script opens its processes itself
	}

	start := time.Now()
	warmEnd := start.Add(cfg.Warmup)
	ir.Start = p.h.Since(warmEnd) // the measured phase starts after the warm-up
	stats := recorder.NewStats(p.h, p.wl.Kinds(), warmEnd)
	p.stats = stats

	// Soft stop: workers finish their iteration, then leave. Hard stop
	// (loadCtx): every call in flight is cancelled.
	var stop atomic.Bool
	loadCtx, cancelLoad := context.WithCancel(ctx)
	defer cancelLoad()
	var stopOnce sync.Once
	var stopAt time.Time
	stopped := make(chan struct{})
	stopNow := func() {
		stopOnce.Do(func() { stopAt = time.Now(); stop.Store(true); close(stopped) })
	}
	if p.spec.Script == nil {
		timer := time.AfterFunc(cfg.Duration, stopNow)
		defer timer.Stop()
	}
	go func() { // Ctrl-C: stop now
		select {
		case <-ctx.Done():
			stopNow()
		case <-loadCtx.Done():
		}
	}()

	// The nemesis: the schedule, relative to the phase start.
	chaosCtx, cancelChaos := context.WithCancel(ctx)
	defer cancelChaos()
	var windows []chaos.Window
	var chaosErr error
	chaosDone := make(chan struct{})
	roles := p.startRoles(ctx, &ir)
	seen := &windowLog{}
	go func() {
		defer infra.CloseAllOnPanic() // a panic in a goroutine skips Run's defers
		defer close(chaosDone)
		if len(p.sched) == 0 {
			return
		}
		windows, chaosErr = chaos.Run(chaosCtx, p.sched, p.env, faults, seen.record(roles.after(ctx, recordFault(p.h.Log))), chaos.RunOptions{
			TTL: cfg.TTL, Impl: p.impl, Origin: start, Clock: p.h.Now, Logger: p.log,
		})
	}()

	var werrMu sync.Mutex
	var werrs []error
	fail := func(err error) {
		werrMu.Lock()
		werrs = append(werrs, err)
		werrMu.Unlock()
	}
	workersDone := make(chan struct{})
	stopProgress := func() {}
	if p.spec.Script != nil {
		// On the caller's goroutine: a test's script may end it (t.Fatal).
		if err := p.spec.Script(loadCtx, &Driver{p: p, main: ph}); err != nil {
			fail(fmt.Errorf("script: %w", err))
		}
		stopNow()
		close(workersDone)
	} else {
		stopProgress = p.progress(start, &stop)
		var wg sync.WaitGroup
		for i := range cfg.Clients {
			wg.Go(func() {
				defer infra.CloseAllOnPanic()
				if err := p.worker(loadCtx, ph, clients[i], stats, i, start, warmEnd, &stop, stopNow); err != nil {
					fail(err)
				}
			})
		}
		go func() { wg.Wait(); close(workersDone) }()
	}

	stopCheckpoints := p.checkpoints(stats, ir.Start, warmEnd, seen)

	// Wait for the workers: after the soft stop each finishes its
	// iteration within its calls' deadlines; past a grace period the hard
	// stop cancels what is in flight.
	select {
	case <-workersDone:
	case <-stopped:
	}
	stopNow()
	grace := cfg.AcquireTimeout + 4*cfg.OpTimeout + time.Second
	select {
	case <-workersDone:
	case <-time.After(time.Until(stopAt.Add(grace))):
		p.log.Warn("workers still busy after the grace period: cancelling their calls", "grace", grace)
		cancelLoad()
		select {
		case <-workersDone:
		case <-time.After(10 * time.Second):
			p.log.Error("workers ignore cancellation: going on without them (their late entries are dropped)")
		}
	}
	cancelLoad()
	stopProgress()
	stopCheckpoints()
	end := stopAt
	if end.Before(warmEnd) { // stopped during the warm-up: nothing measured
		warmEnd = end
		ir.Start = p.h.Since(end)
	}
	ir.End = p.h.Since(end)

	// Heal everything, then the quiet period, then the probes and the
	// resource dump.
	cancelChaos()
	<-chaosDone
	faults.HealAll()
	roles.finish(ctx, &ir)
	probes := ctx.Err() == nil
	if probes {
		p.log.Info("quiet period", "quiet", cfg.Quiet)
		if err := clock.Sleep(ctx, cfg.Quiet); err != nil {
			probes = false // interrupted: keys may still be legitimately held, no probes
		}
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	if probes && p.spec.BeforeProbes != nil {
		p.spec.BeforeProbes(fctx)
	}
	var perr error
	if lp, ok := ph.(workload.LiveProber); ok && probes {
		// Every worker's client is still open: a key held now is held by a
		// live session that no worker uses any more (a leak that the close
		// below would hide).
		perr = lp.ProbeLive(fctx, p.h, p.newProcess())
	}
	p.closeOwners()
	probe := -1
	if probes {
		probe = p.newProcess()
	}
	ferr := ph.Finish(fctx, p.h, probe)

	// Statistics of the measured span.
	setStats(&ir, stats, end.Sub(warmEnd), len(windows) > 0)
	sort.SliceStable(windows, func(i, j int) bool { return windows[i].Start < windows[j].Start })
	errs := append(werrs, perr, ferr)
	if chaosErr != nil {
		errs = append(errs, fmt.Errorf("faults: %w", chaosErr))
	}
	return ir, FaultWindows(windows), errors.Join(errs...)
}

// setStats fills ir's per-kind figures from stats over the measured span,
// with the inside/outside-fault split when the phase had faults.
func setStats(ir *results.ImplResult, stats *recorder.Stats, span time.Duration, faulted bool) {
	for kind, ks := range stats.Merge() {
		ir.Ops[kind] = recorder.OpStats(ks, span)
		if faulted {
			if ir.InsideFaults == nil {
				ir.InsideFaults, ir.OutsideFaults = map[string]results.Percentiles{}, map[string]results.Percentiles{}
			}
			ir.InsideFaults[kind] = recorder.Percentiles(ks.Inside)
			ir.OutsideFaults[kind] = recorder.Percentiles(ks.Outside)
		}
	}
}

// checkpoints calls spec.Checkpoint every cfg.Checkpoint with the
// phase's figures so far, until the returned func is called (which waits
// for a checkpoint in progress).
func (p *phaseRun) checkpoints(stats *recorder.Stats, start int64, warmEnd time.Time, seen *windowLog) func() {
	every, save := p.cfg.Checkpoint, p.spec.Checkpoint
	if every <= 0 || save == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer infra.CloseAllOnPanic()
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				ir := results.ImplResult{Name: p.impl, Start: start, End: p.h.Since(now), Ops: map[string]results.OpStats{}}
				if now.Before(warmEnd) {
					ir.End = start // still warming up: nothing measured yet
				}
				ws := seen.windows(ir.End)
				setStats(&ir, stats, max(now.Sub(warmEnd), 0), len(ws) > 0)
				save(ir, ws)
			}
		}
	}()
	return func() { close(done); <-finished }
}

// windowLog keeps the fault windows of a phase as their events arrive,
// for checkpoints (the fault runner returns its windows only at the end).
type windowLog struct {
	mu    sync.Mutex
	order []string
	byID  map[string]*results.FaultWindow
}

// record passes every event on to next, noting it first.
func (l *windowLog) record(next func(chaos.Event)) func(chaos.Event) {
	return func(ev chaos.Event) {
		l.mu.Lock()
		if l.byID == nil {
			l.byID = map[string]*results.FaultWindow{}
		}
		w, ok := l.byID[ev.ID]
		if !ok {
			w = &results.FaultWindow{ID: ev.ID, Fault: ev.Fault, Kind: ev.Kind, Nodes: ev.Nodes, Impl: ev.Impl, Start: ev.Time, End: -1}
			l.byID[ev.ID] = w
			l.order = append(l.order, ev.ID)
		}
		if ev.Heal {
			w.End = ev.Time
		}
		l.mu.Unlock()
		next(ev)
	}
}

// windows are the windows seen so far, one still open ending at now.
func (l *windowLog) windows(now int64) []results.FaultWindow {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]results.FaultWindow, 0, len(l.order))
	for _, id := range l.order {
		w := *l.byID[id]
		if w.End < 0 {
			w.End = now
		}
		out = append(out, w)
	}
	return out
}

// openClients opens the clients of processes 0..Clients-1, a few at a
// time (connection set-up, e.g. PostgreSQL's SCRAM, is CPU-heavy). With
// Share > 1, processes i*Share … i*Share+Share-1 share one implementation
// client (the last group may be smaller).
func (p *phaseRun) openClients(ctx context.Context, ph workload.Session) ([]workload.Client, error) {
	n, share := p.cfg.Clients, max(p.cfg.Share, 1)
	clients := make([]workload.Client, n)
	groups := (n + share - 1) / share
	errs := make([]error, groups)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for g := range groups {
		wg.Go(func() {
			defer infra.CloseAllOnPanic()
			sem <- struct{}{}
			defer func() { <-sem }()
			lo, hi := g*share, min(g*share+share, n)
			if share == 1 {
				clients[lo], errs[g] = ph.Client(ctx, lo, p.seed)
				return
			}
			sp, ok := ph.(workload.SharedSession)
			if !ok {
				errs[g] = fmt.Errorf("workload %s cannot share a client between processes (--share %d)", p.wl.Name(), share)
				return
			}
			procs := make([]int, 0, hi-lo)
			for i := lo; i < hi; i++ {
				procs = append(procs, i)
			}
			var cs []workload.Client
			if cs, errs[g] = sp.SharedClients(ctx, procs, p.seed); errs[g] == nil {
				copy(clients[lo:hi], cs)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
		return nil, fmt.Errorf("open clients: %w", err)
	}
	for _, c := range clients {
		p.own(c)
	}
	return clients, nil
}

// worker runs process id's client in a loop until the stop, then its
// successors' after crashes (each a client of its own, never shared). The
// client stays open after the stop: the phase closes it after the live
// probe.
func (p *phaseRun) worker(ctx context.Context, ph workload.Session, client workload.Client, stats *recorder.Stats, id int,
	start, warmEnd time.Time, stop *atomic.Bool, stopNow func()) error {
	cfg := p.cfg
	w := stats.Worker(id, p.impl)

	// Open loop: this worker's share of the rate, staggered.
	var interval time.Duration
	var next time.Time
	if cfg.Rate > 0 {
		interval = time.Duration(float64(cfg.Clients) / cfg.Rate * float64(time.Second))
		next = start.Add(interval * time.Duration(id) / time.Duration(cfg.Clients))
	}
	for !stop.Load() && ctx.Err() == nil {
		var m recorder.Mark
		if interval > 0 {
			if err := clock.Sleep(ctx, time.Until(next)); err != nil || stop.Load() {
				return nil
			}
			m = w.MarkAt(next)
			next = next.Add(interval)
		} else {
			m = w.Mark()
		}
		if cfg.Ops > 0 && !m.At.Before(warmEnd) {
			if p.iterations.Add(1) > cfg.Ops {
				stopNow()
				return nil
			}
		}
		out := client.Step(ctx, w)
		w.Done(0, m, out.Type, out.Err)
		p.steps.Add(1)
		if out.Crashed {
			p.disown(client)
			proc := p.newProcess()
			w.Process = proc
			var err error
			if client, err = ph.Client(ctx, proc, p.seed); err != nil {
				return fmt.Errorf("process %d (after the crash of a predecessor): %w", proc, err)
			}
			p.own(client)
		}
		if out.Type != history.OK && interval == 0 {
			_ = clock.Sleep(ctx, time.Until(m.At.Add(failPace)))
		}
	}
	return nil
}

// Driver is what a PhaseSpec.Script may use of its phase: the environment,
// the history, more sessions of the implementation, and processes.
type Driver struct {
	p    *phaseRun
	main workload.Session
}

// Env is the phase's environment.
func (d *Driver) Env() *infra.Env { return d.p.env }

// History is the phase's history (for the script's own fault events).
func (d *Driver) History() *recorder.History { return d.p.h }

// Main is the phase's session.
func (d *Driver) Main() workload.Session { return d.main }

// Session starts another session of the implementation with params added
// to the lock options (e.g. a test hook for one process). It resets the
// resource: start it before the first step. The phase closes it.
func (d *Driver) Session(ctx context.Context, params map[string]string) (workload.Session, error) {
	t := d.p.target
	t.Params = maps.Clone(t.Params)
	if t.Params == nil {
		t.Params = map[string]string{}
	}
	maps.Copy(t.Params, params)
	s, err := d.p.wl.Start(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("start another session of %s: %w", t.Impl, err)
	}
	d.p.sessions = append(d.p.sessions, s)
	return s, nil
}

// Open opens the next process on s (nil: the main session) and its worker
// (which logs under the process's id). The phase closes the client after
// the live probe, as it does the workers'.
func (d *Driver) Open(ctx context.Context, s workload.Session) (workload.Client, *recorder.Worker, error) {
	if s == nil {
		s = d.main
	}
	proc := d.p.newProcess()
	c, err := s.Client(ctx, proc, int64(proc))
	if err != nil {
		return nil, nil, fmt.Errorf("open process %d: %w", proc, err)
	}
	d.p.own(c)
	return c, d.p.stats.Worker(proc, d.p.impl), nil
}

// phasePath is the path a phase's clients use: Config.Path, or for auto
// proxied when the schedule holds a fault that needs it (a node or
// network fault: chaos.NeedsProxy asks each kind).
func phasePath(c Config, sched chaos.Schedule, env *infra.Env) string {
	if c.Path != PathAuto {
		return c.Path
	}
	var nodes []string
	if env != nil {
		for _, n := range env.Nodes() {
			nodes = append(nodes, n.Name())
		}
	}
	if chaos.NeedsProxy(sched, nodes) {
		return PathProxied
	}
	return PathDirect
}
