package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/infra"
)

// HistoryFile is the name of the history a run writes in its directory:
// zstd-compressed JSONL (`zstdcat` reads it). Offline readers also accept
// the plain history.jsonl of older runs (history.Find).
const HistoryFile = history.FileName

// Run runs the scenario cfg: one environment for every implementation,
// each implementation's phase in turn, then the checks. It writes
// cfg.Out/results.json and cfg.Out/history.jsonl and returns the results.
//
// When ctx ends (Ctrl-C), the current phase stops at once, its resource is
// still dumped, the checks run on what was done, the files are written,
// and Run returns the results with an error wrapping context.Canceled.
// The environment is always closed, also on panic.
func Run(ctx context.Context, cfg Config) (res *results.Results, err error) {
	cfg = cfg.WithDefaults().RaiseQuiet().RouteOptions()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	wl, _ := workload.Lookup(cfg.Workload)
	if !cfg.consumesTopology() {
		cfg.Impls, _ = WithBaseline(wl, cfg.Impls) // the bank's single-db, for ratios (baseline.go)
	}
	topo := infra.Topology(cfg.Topology)
	nodes, extra, _ := workload.RunNodes(wl, cfg.Impls, topo)

	// Each phase's schedule (phasefaults.go), its targets resolved against
	// the nodes before any server starts: a bad target is a usage error,
	// not a phase that silently runs without its fault.
	scheds := map[string]chaos.Schedule{}
	for _, impl := range cfg.Impls {
		sched, err := PhaseSchedule(cfg, wl, impl)
		if err == nil {
			err = chaos.CheckTargets(sched, nodes, cfg.TTL)
		}
		if err != nil {
			return nil, &UsageError{Msg: fmt.Sprintf("%s: %v", impl, err)}
		}
		scheds[impl] = sched
	}
	if err := cfg.checkExternal(nodes, scheds); err != nil {
		return nil, err
	}

	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	unlock, err := lockRunDir(cfg.Out)
	if err != nil {
		return nil, err
	}
	defer unlock()
	hpath := filepath.Join(cfg.Out, HistoryFile)
	hf, err := os.Create(hpath)
	if err != nil {
		return nil, fmt.Errorf("history file: %w", err)
	}
	defer hf.Close()
	// A plain history.jsonl left by an earlier run in the same directory
	// would be shadowed by the new one; remove it so the two cannot disagree.
	if err := os.Remove(filepath.Join(cfg.Out, history.PlainFileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("history file: %w", err)
	}
	hz, err := history.NewCompressor(hf)
	if err != nil {
		return nil, err
	}
	defer hz.Close() // idempotent: closed below once the history is written

	started := time.Now()
	log.Info("starting environment", "nodes", len(nodes), "provider", cfg.Provider)
	env, err := infra.Up(ctx, cfg.envSpec(extra))
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
	for _, impl := range cfg.Impls { // --provider auto chose (paircut.go)
		if err := checkPairCut(env.Provider(), scheds[impl], nil, env.CanCutPairs); err != nil {
			return nil, err
		}
	}
	log.Info("environment up", "provider", env.Provider(), "reason", env.ProviderReason(), "took", time.Since(started).Round(time.Millisecond))

	h := recorder.NewHistory(hz, time.Now())
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
		Capabilities:   cfg.Capabilities(nodes),
		Path:           cfg.ResolvedPath(),
		Verdicts:       []results.Verdict{},
		Notes:          append([]string(nil), cfg.Notes...),
	}
	info := workload.DescribeWorkload(wl)
	res.WorkloadInfo = &info
	res.Config["gomaxprocs"] = runtime.GOMAXPROCS(0)
	if len(cfg.Faults) > 0 || len(cfg.Nemesis) > 0 {
		all := map[string][]string{}
		for impl, sched := range scheds {
			all[impl] = sched.Strings()
		}
		res.Config["schedules"] = all // per implementation: scripted, then drawn
	}
	for k, v := range env.Versions() {
		res.Versions[k] = v
	}

	// The machine reference, on the same server and path: sampled before
	// each phase and after the last (no load running), pooled.
	var cal *Calibrator
	if n := calibrationNode(env); n != nil {
		cal = NewCalibrator(n, CalibrateOptions{Path: res.Path, SecretPassword: cfg.Provider == ProviderExternal})
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
		if err := saveCheckpoint(cfg, res, impl, nil, nil); err != nil {
			log.Warn("checkpoint", "err", err)
		}
		pcfg := cfg.forImpl(wl, impl)
		checkpoint := func(ir results.ImplResult, windows []results.FaultWindow) {
			ir.Mutant = infos[impl].Mutant
			if err := saveCheckpoint(cfg, res, impl, &ir, windows); err != nil {
				log.Warn("checkpoint", "err", err)
			}
		}
		pr, err := RunPhase(ctx, env, PhaseSpec{Config: pcfg, Impl: impl, Seed: cfg.Seed + int64(i)*1_000_003, Schedule: scheds[impl], History: h, Checkpoint: checkpoint})
		ir, windows := pr.Impl, pr.Windows
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
	if err := errors.Join(h.Close(), hz.Close()); err != nil {
		return res, errors.Join(append(errs, err)...)
	}
	if n := h.Dropped(); n > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d history entries arrived after the history was closed (hung workers) and are missing", n))
	}
	if err := check(res, wl, cfg, hpath); err != nil {
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
// and runs the workload's checks per implementation, and says what the
// faults of each phase hit (Coverage). Every verdict must come from here:
// `faultline check` (Check, check.go) re-runs exactly this on a saved run.
func check(res *results.Results, wl workload.Workload, cfg Config, path string) error {
	// While the checkers run, one phase's decoded history is most of the
	// heap, and Go's default GOGC=100 lets the heap grow to twice what is
	// live before collecting: collect at +25% instead (on a 1.48M-entry
	// counter history: peak RSS 890 -> 552 MiB, user CPU +10%, the
	// collections being of a heap that is mostly live). A GOGC the user set
	// is left alone. Once done, the histories are garbage: collect them and
	// give their memory back, or what comes next (the report streams the
	// history once more) would grow the heap up to twice their size (GOGC
	// 100 again) before the first collection.
	if os.Getenv("GOGC") == "" {
		defer checkGC()()
	}
	// One implementation's phase in memory at a time: the file is streamed
	// once per implementation.
	names := make([]string, len(res.Impls))
	for i, ir := range res.Impls {
		names[i] = ir.Name
	}
	i := 0
	var cutNotes []string
	if pc, ok := wl.(workload.PhaseChecker); ok {
		// The lock workloads' checks read a compact Phase, built as the
		// file streams: the entries themselves are never all in memory.
		truncated := false
		for i := range res.Impls {
			ir := &res.Impls[i]
			// What the load phase (or the previous phase's checks) left is
			// garbage now: collect it and give its pages back before the
			// phase's slices are allocated, so that the check's heap is
			// not added on top of it (a heap freed by the collector stays
			// resident until the background scavenger gets to it).
			debug.FreeOSMemory()
			// The phase's operations and resource writes, counted first
			// (a pass that decodes nothing), are allocated once: grown by
			// copies they would hold two copies at each growth.
			n, err := history.CountMatching(path, ir.Name, []byte(`"type":"invoke"`), []byte(`"f":"`+checker.ResourceWrite+`"`))
			if err != nil {
				return fmt.Errorf("read history back for the checks: %w", err)
			}
			var b checker.PhaseBuilder
			b.Grow(n[0])
			b.GrowWrites(n[1])
			cut, err := history.StreamImpl(path, ir.Name, i == 0, b.Add)
			truncated = truncated || cut
			if err != nil {
				return fmt.Errorf("read history back for the checks: %w", err)
			}
			p := b.Phase()
			if res.Checkpoint != nil && res.Checkpoint.Phase == ir.Name {
				if n := dropCutPhase(p, cfg.AcquireTimeout+cfg.OpTimeout); n > 0 {
					cutNotes = append(cutNotes, cutNote(ir.Name, n, cfg))
				}
			}
			if nodes, err := workload.PhaseNodesOn(wl, ir.Name, infra.Topology(cfg.Topology)); err == nil {
				sched, _ := PhaseSchedule(cfg, wl, ir.Name)
				ir.Faults = CoverageOf(nodes, len(sched), implWindows(res, ir.Name), p)
			}
			ir.Failovers = checker.FailoversOf(p)
			addReport(res, ir, pc.CheckPhase(p, workload.CheckConfig{Impl: ir.Name, TTL: cfg.TTL}))
		}
		addNotes(res, cutNotes, truncated, path)
		return nil
	}
	if sw, ok := wl.(workload.StreamChecker); ok {
		// The bank's checks take the file as it streams into compact
		// records: the entries themselves are never all in memory.
		truncated := false
		for i := range res.Impls {
			ir := &res.Impls[i]
			debug.FreeOSMemory() // as for a Phase: the check's heap not on top of garbage
			n, err := history.CountInvocations(path, ir.Name)
			if err != nil {
				return fmt.Errorf("read history back for the checks: %w", err)
			}
			sc := sw.NewStreamCheck()
			sc.Grow(n)
			cut, err := history.StreamImpl(path, ir.Name, i == 0, sc.Add)
			truncated = truncated || cut
			if err != nil {
				return fmt.Errorf("read history back for the checks: %w", err)
			}
			if res.Checkpoint != nil && res.Checkpoint.Phase == ir.Name {
				if n := sc.DropCut(cfg.AcquireTimeout + cfg.OpTimeout); n > 0 {
					cutNotes = append(cutNotes, cutNote(ir.Name, n, cfg))
				}
			}
			if nodes, err := workload.PhaseNodesOn(wl, ir.Name, infra.Topology(cfg.Topology)); err == nil {
				sched, _ := PhaseSchedule(cfg, wl, ir.Name)
				ir.Faults = CoverageSpans(nodes, len(sched), implWindows(res, ir.Name), sc.Spans())
			}
			ir.Failovers = sc.Failovers()
			addReport(res, ir, sc.Report(workload.CheckConfig{Impl: ir.Name, TTL: cfg.TTL}))
		}
		addNotes(res, cutNotes, truncated, path)
		return nil
	}
	truncated, err := history.EachImpl(path, names, func(_ string, mine []history.Op) error {
		ir := &res.Impls[i]
		i++
		if res.Checkpoint != nil && res.Checkpoint.Phase == ir.Name {
			// The run died in this phase: what was in flight then was cut,
			// not timed out (the availability check would call it stalled).
			var n int
			if mine, n = dropCut(mine, cfg.AcquireTimeout+cfg.OpTimeout); n > 0 {
				cutNotes = append(cutNotes, cutNote(ir.Name, n, cfg))
			}
		}
		if nodes, err := workload.PhaseNodesOn(wl, ir.Name, infra.Topology(cfg.Topology)); err == nil {
			sched, _ := PhaseSchedule(cfg, wl, ir.Name) // what Run ran: the same seed draws the same
			ir.Faults = Coverage(nodes, len(sched), implWindows(res, ir.Name), mine)
		}
		ir.Failovers = checker.Failovers(mine)
		addReport(res, ir, wl.Check(mine, workload.CheckConfig{Impl: ir.Name, TTL: cfg.TTL}))
		return nil
	})
	if err != nil {
		return fmt.Errorf("read history back for the checks: %w", err)
	}
	addNotes(res, cutNotes, truncated, path)
	return nil
}

// implWindows are the fault windows of impl's phase.
func implWindows(res *results.Results, impl string) []results.FaultWindow {
	var windows []results.FaultWindow
	for _, w := range res.Faults {
		if w.Impl == impl {
			windows = append(windows, w)
		}
	}
	return windows
}

// addReport adds a phase's checks to the results.
func addReport(res *results.Results, ir *results.ImplResult, rep workload.Report) {
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

// cutNote says what dropCut left out of impl's phase.
func cutNote(impl string, n int, cfg Config) string {
	return fmt.Sprintf("%s: %d operations in flight when the run died (invoked within %v of its history's end, no completion) are left out of the checks: their outcome was cut, not timed out", impl, n, cfg.AcquireTimeout+cfg.OpTimeout)
}

// addNotes adds the checks' notes (cut operations, a truncated history)
// to the results, each once.
func addNotes(res *results.Results, cutNotes []string, truncated bool, path string) {
	for _, note := range cutNotes {
		if !slices.Contains(res.Notes, note) {
			res.Notes = append(res.Notes, note)
		}
	}
	if note := fmt.Sprintf("%s stops inside its last compressed frame: the run died before closing it; checked what it holds up to there", filepath.Base(path)); truncated && !slices.Contains(res.Notes, note) {
		res.Notes = append(res.Notes, note)
	}
}

// checkGCPercent is the GOGC of the checks (see check).
const checkGCPercent = 25

// checkGCState counts the checks running (tests run several at once): the
// first sets checkGCPercent, the last puts back the GOGC from before.
var checkGCState struct {
	sync.Mutex
	running int
	old     int
}

// checkGC sets the checks' GOGC and returns what restores it.
func checkGC() (restore func()) {
	st := &checkGCState
	st.Lock()
	if st.running == 0 {
		st.old = debug.SetGCPercent(checkGCPercent)
	}
	st.running++
	st.Unlock()
	return func() {
		st.Lock()
		st.running--
		last := st.running == 0
		if last {
			debug.SetGCPercent(st.old)
		}
		st.Unlock()
		if last {
			debug.FreeOSMemory()
		}
	}
}

// dropCutPhase is dropCut of a Phase: it leaves out of p.Ops each
// process's last operation when it never completed and was invoked within
// window of the phase's last entry, and says how many.
func dropCutPhase(p *checker.Phase, window time.Duration) int {
	last := map[int32]int{} // process → index in p.Ops of its last operation
	for i := range p.Ops {
		last[p.Ops[i].Process] = i
	}
	cut := map[int]bool{}
	for _, i := range last {
		if o := &p.Ops[i]; !o.Completed() && p.Last-o.Invoke.Time <= int64(window) {
			cut[i] = true
		}
	}
	if len(cut) == 0 {
		return 0
	}
	kept := p.Ops[:0]
	for i := range p.Ops {
		if !cut[i] {
			kept = append(kept, p.Ops[i])
		}
	}
	p.Ops = kept
	return len(cut)
}

// dropCut leaves out of a phase's history (in order) the invocations of
// the processes whose last entry is an invocation made within window of
// the phase's last entry: the run died while they were in flight, so no
// completion could be recorded. An older one without completion stays (a
// call that outlived its deadline is the workload's to judge).
func dropCut(ops []history.Op, window time.Duration) ([]history.Op, int) {
	if len(ops) == 0 {
		return ops, 0
	}
	end := ops[len(ops)-1].Time
	last := map[int]int{} // process → index of its last entry
	for i, op := range ops {
		if op.Process != history.Nemesis {
			last[op.Process] = i
		}
	}
	cut := map[int]bool{}
	for _, i := range last {
		if ops[i].Type == history.Invoke && end-ops[i].Time <= int64(window) {
			cut[i] = true
		}
	}
	if len(cut) == 0 {
		return ops, 0
	}
	kept := make([]history.Op, 0, len(ops)-len(cut))
	for i, op := range ops {
		if !cut[i] {
			kept = append(kept, op)
		}
	}
	return kept, len(cut)
}

// saveCheckpoint writes results.json as it stands during the phase of
// impl: the phases done, then impl's figures so far (running; nil: the
// phase is about to start, no figures) and its fault windows so far,
// marked interrupted with a note and Checkpoint saying where the run
// stood. results.Save writes a temporary file and renames it: a reader
// (or a crash) sees the previous checkpoint or this one, never half of
// one. The run's final save replaces it. If the process dies (OOM, kill
// -9, a crashed machine) the directory is still a saved run: `faultline
// check DIR` judges every phase's history up to the last flush (the history
// trails the run by at most 200 ms), the finished phases keep their
// figures, and the running phase keeps those of its last checkpoint.
func saveCheckpoint(cfg Config, res *results.Results, impl string, running *results.ImplResult, windows []results.FaultWindow) error {
	cp := *res
	ir := results.ImplResult{Name: impl}
	if running != nil {
		ir = *running
	}
	cp.Impls = append(append([]results.ImplResult(nil), res.Impls...), ir)
	cp.Faults = append(append([]results.FaultWindow(nil), res.Faults...), windows...)
	cp.Interrupted = true
	at := time.Now().UTC()
	cp.Checkpoint = &results.Checkpoint{Phase: impl, At: at.Format(time.RFC3339), Done: len(res.Impls), Phases: len(cfg.Impls)}
	if cfg.Checkpoint > 0 {
		cp.Checkpoint.Interval = cfg.Checkpoint.String()
	}
	figures := fmt.Sprintf("%s's figures are missing", impl)
	if running != nil {
		cp.Checkpoint.Time = ir.End
		cp.Duration += float64(ir.End-ir.Start) / 1e9
		figures = fmt.Sprintf("%s's figures cover its first %.1f s (measured span)", impl, float64(ir.End-ir.Start)/1e9)
	}
	cp.Notes = append(append([]string(nil), res.Notes...), fmt.Sprintf(
		"checkpoint at %s: phase %s running, %d of %d done; if this note remains, the run stopped without finishing — its history up to then is checked, %s",
		at.Format(time.RFC3339), impl, len(res.Impls), len(cfg.Impls), figures))
	return results.Save(filepath.Join(cfg.Out, results.FileName), &cp)
}
