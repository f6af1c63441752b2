package chaos_test

// The Chaos suite's harness: one environment per test binary (5 Redis
// masters, pg-1, and the two resource nodes), the expected-verdict matrix,
// and the assertions of a matrix row. Every row runs through bench.RunPhase
// on that environment — the very phase runner of `faultline run` (workers,
// faults, heal, quiet period, live and final probes, Finish) — and the
// workload's checks on the history read back, as bench.Run does.
// bench.Run itself would start an environment per row (a PostgreSQL initdb
// each).

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
	for _, env := range []*infra.Env{suiteEnv.env, failoverEnv.env, pairEnv.env} {
		if env == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := env.Close(ctx); err != nil {
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

// outcome is what a row produced: the checkers' verdicts on its history
// (availability among them: bench/checker.Availability) and the
// workload's counters.
type outcome struct {
	ttl      time.Duration
	ops      []history.Op
	verdicts []results.Verdict
	counters map[string]int64
	notes    []string
}

// rowSettings are the row's ttl and share settings, or the defaults
// (def, 1). ttl and share are the only settings of lock rows.
func rowSettings(row chaos.Row, def time.Duration) (ttl time.Duration, share int, err error) {
	ttl, share = def, 1
	for k, v := range row.Settings() {
		switch k {
		case "ttl":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return 0, 0, fmt.Errorf("row %s (line %d): ttl=%s: want a positive duration", row.Name(), row.Line, v)
			}
			ttl = d
		case "share":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > bench.MaxShare {
				return 0, 0, fmt.Errorf("row %s (line %d): share=%s: want 1 to %d", row.Name(), row.Line, v, bench.MaxShare)
			}
			share = n
		case "standby": // the row's topology (rowTopology), not a phase setting
			if v != "async" && v != "sync" {
				return 0, 0, fmt.Errorf("row %s (line %d): standby=%s: want async or sync", row.Name(), row.Line, v)
			}
		case chaos.SettingFaults: // what the gate matches (chaos.Row.FaultKinds, validated by ParseExpected), not a phase setting
		case "provider": // the row's environment (dockerRow, chaos_pairs_test.go), not a phase setting
			if v != "docker" {
				return 0, 0, fmt.Errorf("row %s (line %d): provider=%s: want docker", row.Name(), row.Line, v)
			}
		case "keys", "load", "failover-holder": // phaseSettings
			var err error
			switch k {
			case "keys":
				var n int
				if n, err = strconv.Atoi(v); err == nil && (n < 1 || n > 64) {
					err = errors.New("want 1 to 64")
				}
			case "load":
				var d time.Duration
				if d, err = time.ParseDuration(v); err == nil && (d <= 0 || d > 30*time.Second) {
					err = errors.New("want a duration in (0, 30s]")
				}
			default:
				_, err = strconv.ParseBool(v)
			}
			if err != nil {
				return 0, 0, fmt.Errorf("row %s (line %d): %s=%s: %w", row.Name(), row.Line, k, v, err)
			}
		default:
			return 0, 0, fmt.Errorf("row %s (line %d): unknown setting %s=%s (known: ttl, share, standby, provider, faults, keys, load, failover-holder)", row.Name(), row.Line, k, v)
		}
	}
	return ttl, share, nil
}

// lockConfig is the phase configuration of a lock row at ttl: suiteClients
// workers on suiteKeys keys for suiteLoad, then a quiet period of 2×ttl
// (capped at ttl+1s for the long-ttl scripts).
func lockConfig(row chaos.Row, ttl time.Duration, share int) bench.Config {
	return bench.Config{
		Workload: row.Workload, Impls: []string{row.Impl}, Clients: suiteClients, Share: share, Keys: suiteKeys,
		Duration: suiteLoad, TTL: ttl, OpTimeout: suiteOpTimeout, AcquireTimeout: 2 * ttl,
		Quiet: min(2*ttl, ttl+time.Second), Seed: suiteSeed,
	}
}

// phaseSettings applies a row's settings that change the phase itself
// (validated by rowSettings): keys=N lock keys instead of suiteKeys,
// load=DUR of load instead of suiteLoad, and failover-holder=BOOL (the lock
// workloads' --opt failover-holder).
func phaseSettings(cfg *bench.Config, row chaos.Row) {
	for k, v := range row.Settings() {
		switch k {
		case "keys":
			cfg.Keys, _ = strconv.Atoi(v)
		case "load":
			cfg.Duration, _ = time.ParseDuration(v)
		case "failover-holder":
			if cfg.Opts == nil {
				cfg.Opts = map[string]string{}
			}
			cfg.Opts[k] = v
		}
	}
}

// suiteSeed is every row's seed.
const suiteSeed = 7

// phaseRun is one row's run of bench.RunPhase.
type phaseRun struct {
	row  chaos.Row
	spec bench.PhaseSpec
	buf  bytes.Buffer
	wl   workload.Workload
	ttl  time.Duration
}

// newPhaseRun prepares a row's phase with cfg (history on a buffer).
func newPhaseRun(t *testing.T, row chaos.Row, cfg bench.Config, sched chaos.Schedule) *phaseRun {
	t.Helper()
	wl, err := workload.Lookup(cfg.Workload)
	if err != nil {
		t.Fatalf("row %s: %v", row.Name(), err)
	}
	if cfg.Out == "" {
		cfg.Out = t.TempDir() // per-process logs of exec: implementations land here, not in the tree
	}
	r := &phaseRun{row: row, wl: wl, ttl: cfg.TTL}
	r.spec = bench.PhaseSpec{Config: cfg, Impl: row.Impl, Seed: cfg.Seed, Schedule: sched, History: recorder.NewHistory(&r.buf, time.Now())}
	return r
}

// run runs the phase on env, reads the history back and runs the
// workload's checks on it.
func (r *phaseRun) run(t *testing.T, ctx context.Context, env *infra.Env) outcome {
	t.Helper()
	_, perr := bench.RunPhase(ctx, env, r.spec)
	if err := r.spec.History.Close(); err != nil {
		t.Fatalf("history: %v", err)
	}
	ops, err := history.ReadAll(bytes.NewReader(r.buf.Bytes()))
	if err != nil {
		t.Fatalf("read history back: %v", err)
	}
	ops = history.ForImpl(ops, r.row.Impl)
	rep := r.wl.Check(ops, workload.CheckConfig{Impl: r.row.Impl, TTL: r.ttl})
	o := outcome{ttl: r.ttl, ops: ops, verdicts: rep.Verdicts, counters: rep.Counters}
	if perr != nil {
		o.notes = append(o.notes, "phase: "+perr.Error())
	}
	return o
}

// runWorkload runs a row's workload with its fault specs through
// bench.RunPhase (see lockConfig).
func runWorkload(t *testing.T, ctx context.Context, env *infra.Env, row chaos.Row) outcome {
	t.Helper()
	ttl, share, err := rowSettings(row, suiteTTL)
	if err != nil {
		t.Fatalf("%v", err)
	}
	sched, err := chaos.ParseSchedule(row.Specs())
	if err != nil {
		t.Fatalf("row %s (line %d): %v", row.Name(), row.Line, err)
	}
	cfg := lockConfig(row, ttl, share)
	phaseSettings(&cfg, row)
	return newPhaseRun(t, row, cfg, sched).run(t, ctx, env)
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
	fmt.Fprintf(&b, "  run: %s; %d history entries; counters %v\n", row.Run, len(o.ops), o.counters)
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
