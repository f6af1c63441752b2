package chaos_test

// The Chaos suite's harness: one environment per test binary (5 Redis
// masters, pg-1, and the two resource nodes), the expected-verdict matrix,
// a small phase driver that runs a lock workload under a fault schedule on
// that environment, and the assertions of a matrix row.
//
// The phase driver mirrors bench's phaseRun (workers looping Client.Step,
// chaos.Run for the schedule, heal, quiet period, Finish, Check) because
// bench.Run starts an environment of its own per run, which would cost a
// PostgreSQL initdb per row.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench"
	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
	"github.com/faultline-dev/faultline/chaos"
	_ "github.com/faultline-dev/faultline/impl/lock" // registers the lock implementations
	"github.com/faultline-dev/faultline/infra"
)

// Suite settings (the matrix's "run" specs are written against them).
const (
	suiteTTL     = 400 * time.Millisecond
	suiteClients = 3
	suiteKeys    = 1
	suiteLoad    = 1600 * time.Millisecond
	matrixFile   = "expected.md"
	// suiteOpTimeout bounds reads, writes and releases. It is longer than
	// the runner's default (min(ttl, 1s)) so that a loaded machine does not
	// turn the one stale write a row hinges on (a fenced write after a
	// holder pause) into an indeterminate one: a 1.2 s stall of one
	// PostgreSQL write was seen at load average 9.
	suiteOpTimeout = 2 * time.Second
)

// suiteEnv is the environment every Chaos test shares, started on first
// use and closed by TestMain.
var suiteEnv struct {
	once sync.Once
	env  *infra.Env
	err  error
	took time.Duration
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if suiteEnv.env != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := suiteEnv.env.Close(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "chaos suite: closing the environment:", err)
			if code == 0 {
				code = 1
			}
		}
		cancel()
	}
	os.Exit(code)
}

// suiteNodes are the nodes of the shared environment: what every lock
// implementation needs plus both workloads' resources.
func suiteNodes() []infra.NodeSpec {
	return append(infra.Nodes(5, 1),
		infra.NodeSpec{Name: "resource", Kind: infra.Redis},
		infra.NodeSpec{Name: "resource-pg", Kind: infra.Postgres})
}

// needEnv skips in -short mode and returns the shared environment.
func needEnv(t *testing.T) *infra.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("Chaos suite: starts Redis and PostgreSQL servers (skipped with -short)")
	}
	suiteEnv.once.Do(func() {
		provider := os.Getenv("FAULTLINE_PROVIDER")
		if provider == "" {
			provider = "local"
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		suiteEnv.env, suiteEnv.err = infra.Up(ctx, infra.Spec{Nodes: suiteNodes(), Provider: provider})
		suiteEnv.took = time.Since(start)
	})
	if suiteEnv.err != nil {
		t.Fatalf("Chaos suite environment did not start: %v", suiteEnv.err)
	}
	return suiteEnv.env
}

// loadMatrix loads chaos/expected.md.
func loadMatrix(t *testing.T) *chaos.Expected {
	t.Helper()
	e, err := chaos.LoadExpected(matrixFile)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return e
}

// outcome is what a row produced: the checkers' verdicts on its history,
// the workload's counters and the availability inside fault windows.
type outcome struct {
	ttl      time.Duration
	ops      []history.Op
	verdicts []results.Verdict
	counters map[string]int64
	// acquires invoked inside a fault window, and how many did not succeed
	inWindow, failedInWindow int
	notes                    []string
}

// phaseSetup is one implementation's phase on the shared environment.
type phaseSetup struct {
	wl     workload.Workload
	h      *recorder.History
	buf    *bytes.Buffer
	faults *workload.Faults
	target workload.Target
	start  time.Time
}

func newPhaseSetup(t *testing.T, env *infra.Env, row chaos.Row, ttl time.Duration) *phaseSetup {
	t.Helper()
	wl, err := workload.Lookup(row.Workload)
	if err != nil {
		t.Fatalf("row %s: %v", row.Name(), err)
	}
	buf := &bytes.Buffer{}
	start := time.Now()
	h := recorder.NewHistory(buf, start)
	h.SetImpl(row.Impl)
	faults := workload.NewFaults()
	return &phaseSetup{wl: wl, h: h, buf: buf, faults: faults, start: start, target: workload.Target{
		Impl: row.Impl, Env: env, Keys: suiteKeys, TTL: ttl,
		OpTimeout: suiteOpTimeout, AcquireTimeout: 2 * ttl,
		Params: map[string]string{}, Faults: faults,
	}}
}

// startPhase starts a phase of the workload with extra implementation
// params (it resets the resource and the lock nodes: call before any step).
func (p *phaseSetup) startPhase(t *testing.T, ctx context.Context, params map[string]string) workload.Session {
	t.Helper()
	tg := p.target
	tg.Params = map[string]string{}
	for k, v := range params {
		tg.Params[k] = v
	}
	ph, err := p.wl.Start(ctx, tg)
	if err != nil {
		t.Fatalf("start %s phase of %s: %v", p.wl.Name(), tg.Impl, err)
	}
	return ph
}

// finish runs the quiet period, the final probes and resource dump, reads
// the history back and runs the workload's checks.
func (p *phaseSetup) finish(t *testing.T, ctx context.Context, ph workload.Session, probe int, before func()) outcome {
	t.Helper()
	p.faults.HealAll()
	// The quiet period: leases of dead holders, and keys whose release was
	// indeterminate, run out (2×ttl as the runner's default, capped at
	// ttl+1s for the long-ttl scripts).
	elapse(ctx, min(2*p.target.TTL, p.target.TTL+time.Second))
	if before != nil {
		before()
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	perr := p.probe(t, fctx, ph, probe)
	ferr := ph.Finish(fctx, p.h, -1) // the resource dump; the probes ran above
	cancel()
	if err := p.h.Close(); err != nil {
		t.Fatalf("history: %v", err)
	}
	ops, err := history.ReadAll(bytes.NewReader(p.buf.Bytes()))
	if err != nil {
		t.Fatalf("read history back: %v", err)
	}
	ops = history.ForImpl(ops, p.target.Impl)
	rep := p.wl.Check(ops, workload.CheckConfig{Impl: p.target.Impl, TTL: p.target.TTL})
	o := outcome{ttl: p.target.TTL, ops: ops, verdicts: rep.Verdicts, counters: rep.Counters}
	if ferr != nil {
		o.notes = append(o.notes, "finish: "+ferr.Error())
	}
	if perr != nil {
		o.notes = append(o.notes, "probe: "+perr.Error())
	}
	o.inWindow, o.failedInWindow = availability(ops)
	return o
}

// rowTTL is the row's ttl setting, or def. ttl is the only setting the
// suite knows.
func rowTTL(row chaos.Row, def time.Duration) (time.Duration, error) {
	ttl := def
	for k, v := range row.Settings() {
		if k != "ttl" {
			return 0, fmt.Errorf("row %s (line %d): unknown setting %s=%s (known: ttl)", row.Name(), row.Line, k, v)
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("row %s (line %d): ttl=%s: want a positive duration", row.Name(), row.Line, v)
		}
		ttl = d
	}
	return ttl, nil
}

// probe is Finish's final probe of every key, by a fresh process whose
// connections are warmed first (one unlogged acquire and release of another
// key): a cold client's dial must not race the lock's per-node timeout
// (redsync's is 0.05×ttl = 20 ms at ttl 400 ms), or a probe that timed out
// reads as a key still held.
func (p *phaseSetup) probe(t *testing.T, ctx context.Context, ph workload.Session, proc int) error {
	t.Helper()
	c, err := ph.Client(ctx, proc, 0)
	if err != nil {
		return fmt.Errorf("probe client: %w", err)
	}
	defer c.Close()
	w := recorder.NewStats(p.h, p.wl.Kinds(), time.Now().Add(24*time.Hour)).Worker(proc, p.target.Impl)
	st, err := workload.NewSteps(c, w)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if l, err := st.Locker().Acquire(wctx, "faultline-probe-warmup", p.target.TTL); err == nil {
		_ = st.Locker().Release(wctx, l)
	}
	cancel()
	for _, k := range workload.Keys(p.target.Keys) {
		st.Probe(ctx, k)
	}
	return nil
}

// runWorkload runs a row's workload with its fault specs: suiteClients
// workers for suiteLoad, then heal, quiet period, probes and checks.
func runWorkload(t *testing.T, ctx context.Context, env *infra.Env, row chaos.Row) outcome {
	t.Helper()
	ttl, err := rowTTL(row, suiteTTL)
	if err != nil {
		t.Fatalf("%v", err)
	}
	p := newPhaseSetup(t, env, row, ttl)
	sched, err := chaos.ParseSchedule(row.Specs())
	if err != nil {
		t.Fatalf("row %s (line %d): %v", row.Name(), row.Line, err)
	}
	ph := p.startPhase(t, ctx, nil)
	defer ph.Close()
	const seed = 7
	clients := make([]workload.Client, suiteClients)
	for i := range clients {
		c, err := ph.Client(ctx, i, seed)
		if err != nil {
			t.Fatalf("open client %d: %v", i, err)
		}
		clients[i] = c
	}
	stats := recorder.NewStats(p.h, p.wl.Kinds(), time.Now())
	var nextProc atomic.Int64
	nextProc.Store(suiteClients)

	start := time.Now()
	loadCtx, cancelLoad := context.WithCancel(ctx)
	defer cancelLoad()
	var stop atomic.Bool
	stopTimer := time.AfterFunc(suiteLoad, func() { stop.Store(true) })
	defer stopTimer.Stop()

	chaosCtx, cancelChaos := context.WithCancel(ctx)
	defer cancelChaos()
	chaosDone := make(chan struct{})
	var chaosErr error
	go func() {
		defer close(chaosDone)
		if len(sched) == 0 {
			return
		}
		_, chaosErr = chaos.Run(chaosCtx, sched, env, p.faults, func(ev chaos.Event) { p.h.Log(bench.FaultOp(ev)) }, chaos.RunOptions{
			TTL: p.target.TTL, Impl: row.Impl, Origin: start, Clock: p.h.Now,
		})
	}()

	var wg sync.WaitGroup
	var werrMu sync.Mutex
	var werrs []string
	for i := range clients {
		wg.Go(func() {
			c := clients[i]
			w := stats.Worker(i, row.Impl)
			defer func() { c.Close() }()
			for !stop.Load() && loadCtx.Err() == nil {
				out := c.Step(loadCtx, w)
				if err := afterStep(ctx, loadCtx, ph, seed, &nextProc, &c, w, out); err != nil {
					werrMu.Lock()
					werrs = append(werrs, err.Error())
					werrMu.Unlock()
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	grace := suiteLoad + p.target.AcquireTimeout + 4*p.target.OpTimeout + 3*p.target.TTL + time.Second
	select {
	case <-done:
	case <-time.After(grace):
		t.Logf("workers still busy %v after the start: cancelling their calls", grace)
		cancelLoad()
		<-done
	}
	cancelChaos()
	<-chaosDone
	probe := int(nextProc.Add(1) - 1)
	o := p.finish(t, ctx, ph, probe, nil)
	if chaosErr != nil {
		o.notes = append(o.notes, "faults: "+chaosErr.Error())
	}
	for _, e := range werrs {
		o.notes = append(o.notes, "worker: "+e)
	}
	return o
}

// afterStep is what a suite worker does after each Step, as the runner
// does: a crashed process continues as a new one (new id, new client), and
// a step that did not succeed is paced so a worker whose node is down does
// not spin. It fails only when the new process's client cannot be opened;
// *c is then a client that does nothing.
func afterStep(ctx, loadCtx context.Context, ph workload.Session, seed int64, nextProc *atomic.Int64, c *workload.Client, w *recorder.Worker, out workload.StepResult) error {
	if out.Crashed {
		(*c).Close()
		proc := int(nextProc.Add(1) - 1)
		w.Process = proc
		nc, err := ph.Client(ctx, proc, seed)
		if err != nil {
			*c = nopClient{}
			return fmt.Errorf("process %d: %w", proc, err)
		}
		*c = nc
	}
	if out.Type != history.OK {
		elapse(loadCtx, 5*time.Millisecond) // pace a worker whose node is down
	}
	return nil
}

type nopClient struct{}

func (nopClient) Step(context.Context, *recorder.Worker) workload.StepResult {
	return workload.StepResult{}
}
func (nopClient) Close() error { return nil }

// availability counts the acquires (final probes excluded) in flight during
// a node or network fault window, and those among them that did not succeed
// (failed or indeterminate): how much the fault cost the lock's users.
func availability(ops []history.Op) (inside, failed int) {
	ws := checker.Windows(ops)
	for _, o := range checker.Operations(ops) {
		if o.F != "acquire" || o.Invoke.Attrs["probe"] != "" {
			continue
		}
		for _, w := range ws {
			if w.Kind == "holder-pause" || w.Kind == "holder-crash" || w.Kind == "delayed-write" {
				continue // client faults hit one holder, not the service
			}
			if o.Invoke.Time <= w.End && o.End() >= w.Start {
				inside++
				if !o.OK() {
					failed++
				}
				break
			}
		}
	}
	return inside, failed
}

// elapse lets d pass (a fixed period: quiet time, pacing), or until ctx ends.
func elapse(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
}

// verdictOf finds a checker's verdict.
func (o outcome) verdictOf(name string) (results.Verdict, bool) {
	for _, v := range o.verdicts {
		if v.Checker == name {
			return v, true
		}
	}
	return results.Verdict{}, false
}

// problems compares the outcome with the row's expectation; empty = pass.
func (o outcome) problems(row chaos.Row) []string {
	var out []string
	unknownOK := row.Has(chaos.FlagUnknownOK)
	for _, v := range o.verdicts {
		named := contains(row.Checkers, v.Checker)
		switch row.Expect {
		case chaos.Safe:
			if v.Valid == results.Invalid {
				out = append(out, fmt.Sprintf("%s is invalid (%d violations), the row expects safe", v.Checker, len(v.Violations)))
			} else if v.Valid == results.Unknown && !unknownOK {
				out = append(out, fmt.Sprintf("%s is unknown (%s), the row does not say unknown-ok", v.Checker, v.Summary))
			}
		case chaos.ViolationExpected:
			if named && (v.Valid != results.Invalid || len(v.Violations) == 0) {
				out = append(out, fmt.Sprintf("%s is %s, the row expects a violation with a counterexample", v.Checker, v.Valid))
			}
			if named && v.Checker == checker.MutualExclusionName && len(v.Violations) > 0 && !namesTwo(v.Violations) {
				out = append(out, "no mutual-exclusion counterexample names both processes")
			}
		case chaos.LivenessExpected:
			if named && v.Valid != results.Invalid {
				out = append(out, fmt.Sprintf("%s is %s, the row expects it to fail", v.Checker, v.Valid))
			}
			if !chaos.IsLivenessCheck(v.Checker) {
				if v.Valid == results.Invalid {
					out = append(out, fmt.Sprintf("safety checker %s is invalid, the row expects liveness errors only", v.Checker))
				} else if v.Valid == results.Unknown && !unknownOK {
					out = append(out, fmt.Sprintf("safety checker %s is unknown (%s), the row does not say unknown-ok", v.Checker, v.Summary))
				}
			}
		}
	}
	for _, c := range row.Checkers {
		if c == chaos.Availability {
			if o.failedInWindow == 0 {
				out = append(out, fmt.Sprintf("availability: all %d acquires inside the fault windows succeeded, the row expects the fault to make some fail", o.inWindow))
			}
			continue
		}
		if _, ok := o.verdictOf(c); !ok {
			out = append(out, fmt.Sprintf("no verdict of checker %s in this run", c))
		}
	}
	if row.Has(chaos.FlagFenced) && o.counters["fenced"] == 0 {
		out = append(out, "no write was fenced, the row expects the resource to reject a stale write")
	}
	if row.Has(chaos.FlagRecovered) {
		v, _ := o.verdictOf(checker.LivenessName)
		bound := float64((o.ttl + max(o.ttl/2, 200*time.Millisecond)).Milliseconds())
		switch {
		case v.Valid != results.Valid:
			out = append(out, fmt.Sprintf("liveness is %s, the row expects every crashed holder's key to recover", v.Valid))
		case v.Measures["crashes"] == 0:
			out = append(out, "no holder crashed: the fault never hit")
		case v.Measures["recovered"] != v.Measures["crashes"]:
			out = append(out, fmt.Sprintf("%v of %v crashed holders' keys recovered", v.Measures["recovered"], v.Measures["crashes"]))
		case v.Measures["recovery_ms_max"] > bound:
			out = append(out, fmt.Sprintf("recovery took %.0f ms, over ttl+slack = %.0f ms", v.Measures["recovery_ms_max"], bound))
		}
	}
	return out
}

// namesTwo says whether some violation names two distinct processes (the
// writer and a holder it overlapped).
func namesTwo(vs []results.Violation) bool {
	for _, v := range vs {
		for _, p := range v.Processes {
			if p != v.Processes[0] {
				return true
			}
		}
	}
	return false
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// report renders the outcome: every verdict with its counterexamples.
func (o outcome) report(row chaos.Row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "row %s (expected.md line %d): expect %q — %s\n", row.Name(), row.Line, row.String(), row.Why)
	fmt.Fprintf(&b, "  run: %s; %d history entries; counters %v; acquires in fault windows: %d, failed %d\n",
		row.Run, len(o.ops), o.counters, o.inWindow, o.failedInWindow)
	for _, v := range o.verdicts {
		fmt.Fprintf(&b, "  %-16s %-7s %s\n", v.Checker, v.Valid, v.Summary)
		for i, vi := range v.Violations {
			if i == 3 {
				fmt.Fprintf(&b, "      … %d more\n", len(v.Violations)-3)
				break
			}
			fmt.Fprintf(&b, "      counterexample [%s] processes %v keys %v: %s\n", vi.Kind, vi.Processes, vi.Keys, vi.Description)
		}
	}
	for _, n := range o.notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	return b.String()
}

// saveHistory writes a failed row's history for inspection and returns
// the path ("" if it could not).
func (o outcome) saveHistory(row chaos.Row) string {
	dir, err := os.MkdirTemp("", "faultline-chaos-")
	if err != nil {
		return ""
	}
	path := filepath.Join(dir, strings.ReplaceAll(row.Name(), "/", "_")+".jsonl")
	var buf bytes.Buffer
	w := history.NewWriter(&buf)
	for _, op := range o.ops {
		if _, err := w.Write(op); err != nil {
			return ""
		}
	}
	if err := w.Flush(); err != nil || os.WriteFile(path, buf.Bytes(), 0o644) != nil {
		return ""
	}
	return path
}

// assertRow fails t with the full report when the outcome does not match.
func assertRow(t *testing.T, row chaos.Row, o outcome) {
	t.Helper()
	probs := o.problems(row)
	if len(probs) == 0 {
		t.Logf("%s", o.report(row))
		return
	}
	path := o.saveHistory(row)
	t.Errorf("%s does not match the matrix:\n  - %s\n%shistory: %s",
		row.Name(), strings.Join(probs, "\n  - "), o.report(row), path)
}
