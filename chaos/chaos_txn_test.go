package chaos_test

// The transaction rows of the Chaos suite: every bank row of
// chaos/expected.md runs the bank workload through bench.RunPhase, the
// phase runner of `faultline run` — coordinator processes looping
// Client.Step (a crashed coordinator continues under a new process id),
// the row's fault specs, heal, a quiet period, Finish (Recover on a fresh
// coordinator, snapshot into the history) — and the workload's offline
// Check on the history read back, on one environment (pg-1, pg-2, redis-1)
// shared by every row. bench.Run would start an environment per row (two
// initdb each).

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench"
	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/faultline-dev/faultline/infra"
)

// Settings of the transaction rows (expected.md, "Transactions").
const (
	bankClients   = 3
	bankLoad      = 1500 * time.Millisecond
	bankOpTimeout = time.Second
	bankQuiet     = 300 * time.Millisecond
)

// bankDefaults are the bank params of every row (a row's name=value parts
// override them).
var bankDefaults = map[string]string{"accounts": "10", "readers": "1", "read-every": "3", "lock-timeout": "250ms", "inject-after": "5"}

// bankEnv is the transaction rows' environment, started by the first row.
var bankEnv struct {
	once sync.Once
	env  *infra.Env
	err  error
	took time.Duration
}

func needBankEnv(t *testing.T) *infra.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("Chaos suite: starts PostgreSQL and Redis servers (skipped with -short)")
	}
	bankEnv.once.Do(func() {
		provider := os.Getenv("FAULTLINE_PROVIDER")
		if provider == "" {
			provider = "local"
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		bankEnv.env, bankEnv.err = infra.Up(ctx, infra.Spec{Nodes: infra.Nodes(1, 2), Provider: provider})
		bankEnv.took = time.Since(start)
	})
	if bankEnv.err != nil {
		t.Fatalf("Chaos suite (transactions): environment did not start: %v", bankEnv.err)
	}
	return bankEnv.env
}

func closeBankEnv(t *testing.T) {
	if bankEnv.env == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := bankEnv.env.Close(ctx); err != nil {
		t.Errorf("closing the transaction rows' environment: %v", err)
	}
	bankEnv.env = nil
}

func bankRows(t *testing.T) []chaos.Row {
	t.Helper()
	m, err := chaos.LoadExpected("expected.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []chaos.Row
	for _, r := range m.Rows {
		if r.Workload == workload.BankName {
			out = append(out, r)
		}
	}
	return out
}

// independentRows are the bank rows on independent nodes (pg-standby rows,
// setting standby=…, run in TestChaosPGStandby).
func independentRows(rows []chaos.Row) []chaos.Row {
	var out []chaos.Row
	for _, r := range rows {
		if !topologyRow(r) {
			out = append(out, r)
		}
	}
	return out
}

// TestChaosTxn runs every transaction row of the expected-verdict matrix
// against real servers and asserts its verdict.
func TestChaosTxn(t *testing.T) {
	rows := independentRows(bankRows(t))
	env := needBankEnv(t)
	t.Cleanup(func() { closeBankEnv(t) })
	t.Logf("environment: %s (%s), started in %v", env.Provider(), env.ProviderReason(), bankEnv.took.Round(time.Millisecond))
	for _, row := range rows {
		t.Run(row.Name(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			o := runBankRow(t, ctx, env, row)
			assertBankRow(t, row, o)
		})
	}
}

// TestChaosTxnMatrixCoverage checks, without servers, that the matrix has
// what issue 5 requires: every transaction implementation without a fault
// and against participant kill, partition of one participant and latency;
// 2pc against all six coordinator crash points and a participant kill
// between prepare and decision; every mutant against the fault that
// exposes it; every row's specs and params valid.
func TestChaosTxnMatrixCoverage(t *testing.T) {
	rows := bankRows(t)
	has := func(impl, fault string) *chaos.Row {
		for i := range rows {
			if rows[i].Impl == impl && rows[i].Fault == fault {
				return &rows[i]
			}
		}
		return nil
	}
	for _, info := range txn.All() {
		if has(info.Name, "none") == nil {
			t.Errorf("%s: no row without a fault", info.Name)
		}
		if info.Mutant || info.SingleNode {
			continue
		}
		for _, f := range []string{"kill", "partition", "latency"} {
			if has(info.Name, f) == nil {
				t.Errorf("%s: no row for fault %s", info.Name, f)
			}
		}
	}
	for _, p := range txn.CrashPoints {
		r := has("2pc", "crash-"+string(p))
		if r == nil || r.Settings()["crash-at"] != string(p) {
			t.Errorf("2pc: no row crashing the coordinator at %s", p)
		}
	}
	if has("2pc", "participant-kill") == nil {
		t.Errorf("2pc: no participant kill between prepare and decision")
	}
	for _, want := range [][3]string{
		{"2pc-nolog", "crash-after-commit", checker.ConservationName},
		{"tcc-nobarrier", "late-try-debit", checker.NoFrozenLeftName},
		{"tcc-nobarrier", "dup-confirm", checker.ConservationName},
		{"outbox-no-dedup", "relay-crash", checker.OutboxDeliveryName},
	} {
		r := has(want[0], want[1])
		if r == nil || r.Expect != chaos.ViolationExpected || !slices.Contains(r.Checkers, want[2]) {
			t.Errorf("%s under %s: want a row expecting %s to catch it", want[0], want[1], want[2])
		}
	}
	wl, err := workload.Lookup(workload.BankName)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if _, err := workload.Impl(wl, r.Impl); err != nil { // exec: rows run their executable's describe
			t.Errorf("line %d: %s is not a bank implementation: %v", r.Line, r.Impl, err)
		}
		if r.Scripted() {
			t.Errorf("line %d: bank rows have no scripts", r.Line)
		}
		if _, err := chaos.ParseSchedule(r.Specs()); err != nil {
			t.Errorf("line %d: %v", r.Line, err)
		}
		info, _ := txn.Lookup(r.Impl)
		for k := range r.Settings() {
			if k == "standby" {
				continue // the row's topology (TestChaosPGStandby)
			}
			_, wl := wl.(workload.Optioner).Options().Lookup(k)
			if _, impl := info.Options.Lookup(k); !wl && !impl {
				t.Errorf("line %d: %s is neither a bank option nor an option of %s", r.Line, k, r.Impl)
			}
		}
		if r.Expect == chaos.LivenessExpected {
			t.Errorf("line %d: bank rows are safe or violation rows", r.Line)
		}
	}
	// On independent nodes; on an asynchronous pg-standby 2pc may (the
	// gate allows that row's violations only in runs on pg-standby).
	if m, _ := chaos.LoadExpected("expected.md"); !m.Allowed("2pc-nolog", checker.ConservationName) ||
		(&chaos.Expected{Rows: independentRows(m.Rows)}).Allowed("2pc", checker.ConservationName) {
		t.Errorf("Allowed: 2pc-nolog may break conservation, 2pc may not on independent nodes")
	}
}

// bankOutcome is what a row produced.
type bankOutcome struct {
	ops      []history.Op
	verdicts []results.Verdict
	counters map[string]int64
	injected []string // transfers that got the injected fault
	notes    []string
	took     time.Duration
}

func (o bankOutcome) verdict(name string) (results.Verdict, bool) {
	for _, v := range o.verdicts {
		if v.Checker == name {
			return v, true
		}
	}
	return results.Verdict{}, false
}

// runBankRow runs one row through bench.RunPhase, as `faultline run`
// runs a phase, and checks the history read back.
func runBankRow(t *testing.T, ctx context.Context, env *infra.Env, row chaos.Row) bankOutcome {
	t.Helper()
	began := time.Now()
	sched, err := chaos.ParseSchedule(row.Specs())
	if err != nil {
		t.Fatalf("row %s (line %d): %v", row.Name(), row.Line, err)
	}
	params := map[string]string{}
	for k, v := range bankDefaults {
		params[k] = v
	}
	for k, v := range row.Settings() {
		if k != "standby" { // the topology's, not the workload's
			params[k] = v
		}
	}
	cfg := bench.Config{
		Workload: row.Workload, Impls: []string{row.Impl}, Clients: bankClients, Keys: 1,
		Duration: bankLoad, TTL: bankOpTimeout, OpTimeout: bankOpTimeout, AcquireTimeout: bankOpTimeout,
		Quiet: bankQuiet, Seed: suiteSeed, LockOpts: params,
	}
	if params["kill-after-prepare"] != "" {
		cfg.Path = bench.PathProxied // the workload kills a node itself: a restarted node may come back on another port
	}
	o := newPhaseRun(t, row, cfg, sched).run(t, ctx, env)
	bo := bankOutcome{ops: o.ops, verdicts: o.verdicts, counters: o.counters, notes: o.notes, took: time.Since(began)}
	for _, op := range o.ops {
		if op.F == "transfer" && op.Type == history.Invoke && op.Attrs["inject"] != "" {
			bo.injected = append(bo.injected, op.Token)
		}
	}
	return bo
}

// bankProblems compares the outcome with the row; empty = it matches.
func bankProblems(row chaos.Row, o bankOutcome) []string {
	var out []string
	unknownOK := row.Has(chaos.FlagUnknownOK)
	for _, v := range o.verdicts {
		named := slices.Contains(row.Checkers, v.Checker)
		switch {
		case row.Expect == chaos.Safe && v.Valid == results.Invalid:
			out = append(out, fmt.Sprintf("%s is invalid (%d violations), the row expects safe", v.Checker, len(v.Violations)))
		case row.Expect == chaos.Safe && v.Valid == results.Unknown && !unknownOK:
			out = append(out, fmt.Sprintf("%s is unknown (%s), the row does not say unknown-ok", v.Checker, v.Summary))
		case row.Expect == chaos.ViolationExpected && named && (v.Valid != results.Invalid || len(v.Violations) == 0):
			out = append(out, fmt.Sprintf("%s is %s, the row expects a violation with a counterexample", v.Checker, v.Valid))
		}
	}
	for _, c := range row.Checkers {
		if _, ok := o.verdict(c); !ok {
			out = append(out, "no verdict of checker "+c)
		}
	}
	if n := len(row.Settings()); n > 0 && row.Settings()["relay-crash"] == "" && len(o.injected) == 0 {
		out = append(out, "the injected fault hit no transfer")
	}
	// A lossy failover loses every transfer pg-1 acknowledged inside the
	// cut, not only the injected one, so the counterexamples may name any
	// of them (CI saw 10 violations, none attributed to the injected p2-3).
	lossy := row.Settings()["inject-failover"] == "lossy"
	if row.Expect == chaos.ViolationExpected && len(o.injected) > 0 && !lossy && !namesInjected(row, o) {
		out = append(out, fmt.Sprintf("no counterexample of %v names the injected transfer %v", row.Checkers, o.injected))
	}
	if row.Has(chaos.FlagInDoubt) {
		v, _ := o.verdict(checker.NoPreparedLeftName)
		if o.counters["in-doubt"] == 0 {
			out = append(out, "no prepared transaction stayed in doubt, the row expects one (and its time)")
		}
		if v.Valid != results.Valid {
			out = append(out, "no-prepared-left is "+string(v.Valid)+": recovery did not resolve everything")
		}
		if every, err := time.ParseDuration(row.Settings()["recover-every"]); err == nil {
			age, _ := time.ParseDuration(row.Settings()["recover-min-age"])
			bound := age + every + time.Second
			if got := time.Duration(o.counters["in-doubt-ms-max"]) * time.Millisecond; got > bound {
				out = append(out, fmt.Sprintf("a transaction stayed in doubt %v, over recover-min-age + recover-every + 1s = %v", got, bound))
			}
		}
	}
	return out
}

// namesInjected says whether a violation of the row's checkers names an
// injected transfer (its id in the description or tokens).
func namesInjected(row chaos.Row, o bankOutcome) bool {
	for _, c := range row.Checkers {
		v, _ := o.verdict(c)
		for _, vi := range v.Violations {
			text := vi.Description + " " + strings.Join(vi.Tokens, " ")
			for _, id := range o.injected {
				if strings.Contains(text, id) {
					return true
				}
			}
		}
	}
	return false
}

func bankReport(row chaos.Row, o bankOutcome) string {
	var b strings.Builder
	fmt.Fprintf(&b, "row %s (expected.md line %d): expect %q — %s\n", row.Name(), row.Line, row.String(), row.Why)
	keys := make([]string, 0, len(o.counters))
	for k := range o.counters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var cs []string
	for _, k := range keys {
		cs = append(cs, k+"="+strconv.FormatInt(o.counters[k], 10))
	}
	fmt.Fprintf(&b, "  run: %s; %d history entries in %v; injected into %v\n  counters: %s\n", row.Run, len(o.ops),
		o.took.Round(time.Millisecond), o.injected, strings.Join(cs, " "))
	for _, v := range o.verdicts {
		fmt.Fprintf(&b, "  %-20s %-7s %s\n", v.Checker, v.Valid, v.Summary)
		for i, vi := range v.Violations {
			if i == 3 {
				fmt.Fprintf(&b, "      … %d more\n", len(v.Violations)-3)
				break
			}
			fmt.Fprintf(&b, "      counterexample [%s] keys %v tokens %v: %s\n", vi.Kind, vi.Keys, vi.Tokens, vi.Description)
		}
	}
	for _, n := range o.notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	return b.String()
}

func assertBankRow(t *testing.T, row chaos.Row, o bankOutcome) {
	t.Helper()
	probs := bankProblems(row, o)
	if len(probs) == 0 {
		t.Logf("%s", bankReport(row, o))
		return
	}
	path := ""
	if f, err := os.CreateTemp("", "faultline-chaos-"+strings.ReplaceAll(row.Name(), "/", "_")+"-*.jsonl"); err == nil {
		w := history.NewWriter(f)
		for _, op := range o.ops {
			_, _ = w.Write(op)
		}
		_ = w.Flush()
		f.Close()
		path = f.Name()
	}
	t.Errorf("%s does not match the matrix:\n  - %s\n%shistory: %s", row.Name(), strings.Join(probs, "\n  - "), bankReport(row, o), path)
}
