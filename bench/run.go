package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
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

// HistoryFile is the name of the history in a run directory.
const HistoryFile = "history.jsonl"

// Run runs the scenario cfg: one environment for every implementation,
// each implementation's phase in turn, then the checks. It writes
// cfg.Out/results.json and cfg.Out/history.jsonl and returns the results.
//
// When ctx ends (Ctrl-C), the current phase stops at once, its resource is
// still dumped, the checks run on what was done, the files are written,
// and Run returns the results with an error wrapping context.Canceled.
// The environment is always closed, also on panic.
func Run(ctx context.Context, cfg Config) (res *results.Results, err error) {
	cfg = cfg.WithDefaults().RaiseQuiet()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	wl, _ := workload.Lookup(cfg.Workload)
	sched, _ := chaos.ParseSchedule(cfg.Faults)
	cfg.Impls, _ = WithBaseline(wl, cfg.Impls) // the bank's single-db, for ratios (baseline.go)
	nodes, _ := wl.Nodes(cfg.Impls)

	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	hf, err := os.Create(filepath.Join(cfg.Out, HistoryFile))
	if err != nil {
		return nil, fmt.Errorf("history file: %w", err)
	}
	defer hf.Close()

	started := time.Now()
	log.Info("starting environment", "nodes", len(nodes), "provider", cfg.Provider)
	env, err := infra.Up(ctx, infra.Spec{Nodes: nodes, Provider: cfg.Provider})
	if err != nil {
		return nil, fmt.Errorf("start environment: %w", err)
	}
	defer func() {
		p := recover()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		defer cancel()
		if cerr := env.Close(cctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if p != nil {
			panic(p)
		}
	}()
	log.Info("environment up", "provider", env.Provider(), "reason", env.ProviderReason(), "took", time.Since(started).Round(time.Millisecond))

	if len(cfg.Nemesis) > 0 {
		nem, err := chaos.Nemesis(cfg.Nemesis, cfg.NemesisInterval, cfg.Duration, cfg.Seed, env)
		if err != nil {
			return nil, &UsageError{Msg: err.Error()}
		}
		sched = append(sched, nem...)
	}
	// Resolve every fault's targets now: a bad target is a usage error, not
	// a phase that silently runs without its fault.
	if _, err := chaos.Plan(sched, env, workload.NewFaults(), cfg.TTL); err != nil {
		return nil, &UsageError{Msg: err.Error()}
	}

	h := recorder.NewHistory(hf, time.Now())
	res = &results.Results{
		Schema:         results.Schema,
		RunID:          cfg.RunID,
		Started:        started.UTC().Format(time.RFC3339),
		Seed:           cfg.Seed,
		Command:        cfg.CommandLine(),
		Workload:       wl.Name(),
		Config:         cfg.Map(),
		Versions:       map[string]string{"faultline": Version, "go": runtime.Version()},
		Provider:       env.Provider(),
		ProviderReason: env.ProviderReason(),
		Path:           cfg.ResolvedPath(),
		Verdicts:       []results.Verdict{},
		Notes:          append([]string(nil), cfg.Notes...),
	}
	info := workload.DescribeWorkload(wl)
	res.WorkloadInfo = &info
	res.Config["gomaxprocs"] = runtime.GOMAXPROCS(0)
	if len(sched) > 0 {
		res.Config["schedule"] = sched.Strings()
	}
	for k, v := range env.Versions() {
		res.Versions[k] = v
	}

	// The machine reference, on the same server and path: sampled before
	// each phase and after the last (no load running), pooled.
	var cal *Calibrator
	if n := calibrationNode(env); n != nil {
		cal = NewCalibrator(n, CalibrateOptions{Path: res.Path})
	}

	var errs []error
	infos := map[string]workload.ImplInfo{}
	for _, i := range wl.Impls() {
		infos[i.Name] = i
	}
	for i, impl := range cfg.Impls {
		if ctx.Err() != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("skipped %v: interrupted", cfg.Impls[i:]))
			break
		}
		if cal != nil {
			cal.Sample(ctx)
		}
		pr := &phaseRun{cfg: cfg, wl: wl, env: env, h: h, sched: sched, impl: impl, seed: cfg.Seed + int64(i)*1_000_003, log: log.With("impl", impl)}
		ir, windows, err := pr.run(ctx)
		if info, ok := infos[impl]; ok {
			ir.Mutant = info.Mutant
		} else if info, err := workload.Impl(wl, impl); err == nil {
			ir.Mutant = info.Mutant
		}
		res.Impls = append(res.Impls, ir)
		res.Faults = append(res.Faults, windows...)
		res.Duration += float64(ir.End-ir.Start) / 1e9
		if err != nil {
			errs = append(errs, &PhaseError{Impl: impl, Mutant: infos[impl].Mutant, Err: err})
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %v", impl, err))
		}
	}

	if cal != nil {
		if ctx.Err() == nil {
			cal.Sample(ctx)
		}
		res.Calibration = cal.Result()
		log.Info("calibration", "line", CalibrationLine(res.Calibration))
	}
	if err := h.Close(); err != nil {
		return res, errors.Join(append(errs, err)...)
	}
	if n := h.Dropped(); n > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d history entries arrived after the history was closed (hung workers) and are missing", n))
	}
	if err := check(res, wl, cfg, filepath.Join(cfg.Out, HistoryFile)); err != nil {
		errs = append(errs, err)
	}
	AddRatios(res, wl)
	if ctx.Err() != nil {
		res.Interrupted = true
		errs = append(errs, fmt.Errorf("%w: %w", errInterrupted, ctx.Err()))
	}
	if err := results.Save(filepath.Join(cfg.Out, results.FileName), res); err != nil {
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

// check reads the saved history back (what a later offline check reads)
// and runs the workload's checks per implementation. Every verdict must
// come from here: `faultline check` (Check, check.go) re-runs exactly this
// on a saved run.
func check(res *results.Results, wl workload.Workload, cfg Config, path string) error {
	ops, err := history.Load(path)
	if err != nil {
		return fmt.Errorf("read history back for the checks: %w", err)
	}
	for i := range res.Impls {
		ir := &res.Impls[i]
		rep := wl.Check(history.ForImpl(ops, ir.Name), workload.CheckConfig{Impl: ir.Name, TTL: cfg.TTL})
		res.Verdicts = append(res.Verdicts, rep.Verdicts...)
		if len(rep.Counters) > 0 {
			if ir.Counters == nil {
				ir.Counters = map[string]int64{}
			}
			for k, v := range rep.Counters {
				ir.Counters[k] = v
			}
		}
	}
	return nil
}

// phaseRun is one implementation's phase.
type phaseRun struct {
	cfg   Config
	wl    workload.Workload
	env   *infra.Env
	h     *recorder.History
	sched chaos.Schedule
	impl  string
	seed  int64
	log   *slog.Logger

	iterations atomic.Int64 // measured iterations reserved (Ops limit)
	steps      atomic.Int64 // all iterations done (progress)
	nextProc   atomic.Int64 // next process id for a crashed worker's successor
}

func (p *phaseRun) run(ctx context.Context) (results.ImplResult, []results.FaultWindow, error) {
	cfg := p.cfg
	ir := results.ImplResult{Name: p.impl, Ops: map[string]results.OpStats{}}
	p.h.SetImpl(p.impl)
	faults := workload.NewFaults()
	target := workload.Target{
		Impl: p.impl, Env: p.env, Direct: cfg.ResolvedPath() == PathDirect,
		Keys: cfg.Keys, TTL: cfg.TTL, OpTimeout: cfg.OpTimeout, AcquireTimeout: cfg.AcquireTimeout,
		Params: cfg.LockOpts, Faults: faults, LogDir: cfg.Out,
	}
	ph, err := p.wl.Start(ctx, target)
	if err != nil {
		return ir, nil, fmt.Errorf("start phase: %w", err)
	}
	defer ph.Close()

	// Every process's client connects before the clock starts.
	clients, err := p.openClients(ctx, ph)
	if err != nil {
		return ir, nil, err
	}

	start := time.Now()
	warmEnd := start.Add(cfg.Warmup)
	ir.Start = p.h.Since(warmEnd) // the measured phase starts after the warm-up
	stats := recorder.NewStats(p.h, p.wl.Kinds(), warmEnd)
	p.nextProc.Store(int64(cfg.Clients))

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
	timer := time.AfterFunc(cfg.Duration, stopNow)
	defer timer.Stop()
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
	go func() {
		defer infra.CloseAllOnPanic() // a panic in a goroutine skips Run's defers
		defer close(chaosDone)
		if len(p.sched) == 0 {
			return
		}
		windows, chaosErr = chaos.Run(chaosCtx, p.sched, p.env, faults, recordFault(p.h.Log), chaos.RunOptions{
			TTL: cfg.TTL, Impl: p.impl, Origin: start, Clock: p.h.Now, Logger: p.log,
		})
	}()

	stopProgress := p.progress(start, &stop)
	var wg sync.WaitGroup
	var werrMu sync.Mutex
	var werrs []error
	for i := range cfg.Clients {
		wg.Go(func() {
			defer infra.CloseAllOnPanic()
			if err := p.worker(loadCtx, ph, clients[i], stats, i, start, warmEnd, &stop, stopNow); err != nil {
				werrMu.Lock()
				werrs = append(werrs, err)
				werrMu.Unlock()
			}
		})
	}
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()

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
	end := stopAt
	if end.Before(warmEnd) { // stopped during the warm-up: nothing measured
		warmEnd = end
		ir.Start = p.h.Since(end)
	}
	ir.End = p.h.Since(end)

	// Heal everything, then the quiet period, then the final probes and the
	// resource dump.
	cancelChaos()
	<-chaosDone
	faults.HealAll()
	probe := int(p.nextProc.Add(1) - 1)
	if ctx.Err() == nil {
		p.log.Info("quiet period", "quiet", cfg.Quiet)
		if err := clock.Sleep(ctx, cfg.Quiet); err != nil {
			probe = -1 // interrupted: keys may still be legitimately held, no probes
		}
	} else {
		probe = -1
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	ferr := ph.Finish(fctx, p.h, probe)
	cancel()

	// Statistics of the measured span.
	span := end.Sub(warmEnd)
	for kind, ks := range stats.Merge() {
		ir.Ops[kind] = recorder.OpStats(ks, span)
		if len(windows) > 0 {
			if ir.InsideFaults == nil {
				ir.InsideFaults, ir.OutsideFaults = map[string]results.Percentiles{}, map[string]results.Percentiles{}
			}
			ir.InsideFaults[kind] = recorder.Percentiles(ks.Inside)
			ir.OutsideFaults[kind] = recorder.Percentiles(ks.Outside)
		}
	}
	sort.SliceStable(windows, func(i, j int) bool { return windows[i].Start < windows[j].Start })
	errs := append(werrs, ferr)
	if chaosErr != nil {
		errs = append(errs, fmt.Errorf("faults: %w", chaosErr))
	}
	return ir, FaultWindows(windows), errors.Join(errs...)
}

// worker is one goroutine: process id, then its successors after crashes.
// openClients opens the clients of processes 0..Clients-1, a few at a
// time (connection set-up, e.g. PostgreSQL's SCRAM, is CPU-heavy).
func (p *phaseRun) openClients(ctx context.Context, ph workload.Session) ([]workload.Client, error) {
	clients := make([]workload.Client, p.cfg.Clients)
	errs := make([]error, p.cfg.Clients)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			defer infra.CloseAllOnPanic()
			sem <- struct{}{}
			defer func() { <-sem }()
			clients[i], errs[i] = ph.Client(ctx, i, p.seed)
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
	return clients, nil
}

// worker runs process id's client in a loop until the stop, then its
// successors' after crashes.
func (p *phaseRun) worker(ctx context.Context, ph workload.Session, client workload.Client, stats *recorder.Stats, id int,
	start, warmEnd time.Time, stop *atomic.Bool, stopNow func()) error {
	cfg := p.cfg
	w := stats.Worker(id, p.impl)
	defer func() { client.Close() }()

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
			client.Close()
			proc := int(p.nextProc.Add(1) - 1)
			w.Process = proc
			var err error
			if client, err = ph.Client(ctx, proc, p.seed); err != nil {
				client = nopClient{}
				return fmt.Errorf("process %d (after the crash of a predecessor): %w", proc, err)
			}
		}
	}
	return nil
}

type nopClient struct{}

func (nopClient) Step(context.Context, *recorder.Worker) workload.StepResult {
	return workload.StepResult{}
}
func (nopClient) Close() error { return nil }
