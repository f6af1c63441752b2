package gate

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/bench/results"
)

func sample() *results.Results {
	op := func(p50, p99, tput float64) results.OpStats {
		return results.OpStats{Count: 5000, OK: 4990, Throughput: tput,
			Percentiles: results.Percentiles{Count: 4990, P50: p50, P90: p50 * 1.5, P99: p99, P999: p99 * 2, Max: p99 * 4, Mean: p50 * 1.1}}
	}
	return &results.Results{
		Schema: results.Schema, RunID: "base", Workload: "counter",
		Impls: []results.ImplResult{
			{Name: "redis-setnx", Ops: map[string]results.OpStats{"cycle": op(300, 900, 3000), "acquire": op(120, 400, 3000)}},
			{Name: "unsafe-release", Mutant: true, Ops: map[string]results.OpStats{"cycle": op(280, 850, 3100)}},
		},
		Verdicts: []results.Verdict{
			{Checker: "mutual-exclusion", Impl: "redis-setnx", Valid: results.Valid},
			{Checker: "mutual-exclusion", Impl: "unsafe-release", Valid: results.Invalid, Violations: []results.Violation{{Kind: "overlap"}}},
		},
	}
}

// clone deep-copies through JSON, as a saved file would be.
func clone(t *testing.T, r *results.Results) *results.Results {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var out results.Results
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func table(t *testing.T, rep Report) string {
	t.Helper()
	var buf bytes.Buffer
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestGateBaselineAgainstItselfPasses(t *testing.T) {
	base := sample()
	rep, err := Gate(base, clone(t, base), DefaultTolerance(), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := table(t, rep)
	if !rep.Pass() {
		t.Fatalf("baseline vs itself failed:\n%s", out)
	}
	for _, want := range []string{"METRIC", "BASELINE", "NOW", "CHANGE", "LIMIT", "RESULT", "redis-setnx/cycle p99", "+0.0%", "≤ +25.0%", "≥ -15.0%", "gate: PASS", "unsafe-release safety:mutual-exclusion"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestGateRegressions(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(r *results.Results)
		failing []string // metrics that must fail
	}{
		{"p99 2x worse", func(r *results.Results) {
			st := r.Impls[0].Ops["cycle"]
			st.P99 *= 2
			r.Impls[0].Ops["cycle"] = st
		}, []string{"redis-setnx/cycle p99"}},
		{"p99 +20% within tolerance", func(r *results.Results) {
			st := r.Impls[0].Ops["cycle"]
			st.P99 *= 1.2
			r.Impls[0].Ops["cycle"] = st
		}, nil},
		{"throughput -30%", func(r *results.Results) {
			st := r.Impls[0].Ops["acquire"]
			st.Throughput *= 0.7
			r.Impls[0].Ops["acquire"] = st
		}, []string{"redis-setnx/acquire throughput"}},
		{"faster is fine", func(r *results.Results) {
			st := r.Impls[0].Ops["cycle"]
			st.P99 /= 3
			st.Throughput *= 2
			r.Impls[0].Ops["cycle"] = st
		}, nil},
		{"op missing", func(r *results.Results) {
			delete(r.Impls[0].Ops, "acquire")
		}, []string{"redis-setnx/acquire p99", "redis-setnx/acquire throughput"}},
		{"op missing from a mutant", func(r *results.Results) {
			r.Impls[1].Ops = map[string]results.OpStats{}
		}, []string{"unsafe-release/cycle p99", "unsafe-release/cycle throughput"}},
		{"safe impl violates", func(r *results.Results) {
			r.Verdicts[0].Valid = results.Invalid
			r.Verdicts[0].Violations = []results.Violation{{Kind: "overlap"}}
		}, []string{"redis-setnx safety:mutual-exclusion"}},
		{"unknown verdict passes", func(r *results.Results) {
			r.Verdicts[0].Valid = results.Unknown
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := sample()
			cur := clone(t, base)
			tt.mutate(cur)
			rep, err := Gate(base, cur, DefaultTolerance(), nil)
			if err != nil {
				t.Fatal(err)
			}
			out := table(t, rep)
			assertFailing(t, rep, out, tt.failing)
			if rep.Pass() != (len(tt.failing) == 0) {
				t.Errorf("Pass() = %v", rep.Pass())
			}
		})
	}
}

func TestGateAllowedIsPluggable(t *testing.T) {
	base := sample()
	cur := clone(t, base)
	// The expected-verdict matrix says the mutant must be caught by
	// mutual-exclusion only: a lost-update violation is not expected.
	cur.Verdicts = append(cur.Verdicts, results.Verdict{Checker: "lost-update", Impl: "unsafe-release", Valid: results.Invalid})
	allowed := func(impl, checker string) bool { return impl == "unsafe-release" && checker == "mutual-exclusion" }
	rep, err := Gate(base, cur, DefaultTolerance(), allowed)
	if err != nil {
		t.Fatal(err)
	}
	f := rep.Failures()
	if len(f) != 1 || f[0].Metric != "unsafe-release safety:lost-update" {
		t.Fatalf("failures = %+v, want only the lost-update violation", f)
	}
}

// Results that cannot be compared are bad input (exit 2 in the CLI), with
// a message naming what is wrong: another schema or workload, nothing to
// compare (e.g. a file holding only {"schema":1}), implementations that
// differ between baseline and results.
func TestGateBadInput(t *testing.T) {
	empty, err := results.Decode(strings.NewReader(`{"schema":1}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(base, cur *results.Results) (*results.Results, *results.Results)
		want   []string
	}{
		{"schema 3", func(b, c *results.Results) (*results.Results, *results.Results) { c.Schema = 3; return b, c },
			[]string{"schema 3", "expected schema 1"}},
		{"workloads differ", func(b, c *results.Results) (*results.Results, *results.Results) { c.Workload = "bank"; return b, c },
			[]string{`workload "counter"`, `workload "bank"`}},
		{"empty baseline", func(_, c *results.Results) (*results.Results, *results.Results) { return empty, c },
			[]string{"baseline", "nothing to compare"}},
		{"empty results", func(b, _ *results.Results) (*results.Results, *results.Results) { return b, empty },
			[]string{"results", "nothing to compare"}},
		{"implementations without operations", func(b, c *results.Results) (*results.Results, *results.Results) {
			for i := range c.Impls {
				c.Impls[i].Ops = nil
			}
			return b, c
		}, []string{"results", "nothing to compare"}},
		{"implementation missing from results", func(b, c *results.Results) (*results.Results, *results.Results) {
			c.Impls = c.Impls[:1]
			return b, c
		}, []string{"different implementations", "only in the baseline: unsafe-release"}},
		{"implementations differ both ways", func(b, c *results.Results) (*results.Results, *results.Results) {
			c.Impls[1].Name = "redlock"
			return b, c
		}, []string{"only in the baseline: unsafe-release", "only in the results: redlock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, cur := tt.mutate(sample(), sample())
			rep, err := Gate(base, cur, DefaultTolerance(), nil)
			if !errors.Is(err, ErrBadInput) {
				t.Fatalf("err = %v (report %+v), want ErrBadInput", err, rep)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// The safety rows count the violations the checker found (Count), not the
// counterexamples stored.
func TestGateCountsViolationsNotExamples(t *testing.T) {
	base := sample()
	cur := clone(t, base)
	cur.Verdicts[0].Valid = results.Invalid
	cur.Verdicts[0].Count = 1669
	cur.Verdicts[0].Violations = make([]results.Violation, 20)
	rep, err := Gate(base, cur, DefaultTolerance(), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := table(t, rep)
	if !strings.Contains(out, "1669 violations") || !strings.Contains(out, "found 1669 violation(s)") {
		t.Errorf("table does not show the violation count 1669:\n%s", out)
	}
}

func TestParseTolerance(t *testing.T) {
	tests := []struct {
		in      string
		want    Tolerance
		wantErr string
	}{
		{"", DefaultTolerance(), ""},
		{"p99=+25%,throughput=-15%", Tolerance{{P99, 0.25}, {Throughput, -0.15}}, ""},
		{" p50 = 10% , p99.9=+50% ", Tolerance{{P50, 0.10}, {P999, 0.50}}, ""},
		{"throughput=15%", Tolerance{{Throughput, -0.15}}, ""},
		{"max=+100%,mean=+5.5%", Tolerance{{Max, 1}, {Mean, 0.055}}, ""},
		{"p99=-25%", nil, "may grow"},
		{"throughput=+15%", nil, "may drop"},
		{"p99=25", nil, "percent sign"},
		{"p98=+25%", nil, "unknown stat"},
		{"p99=+25%,p99=+30%", nil, "twice"},
		{"p99", nil, "stat=±N%"},
		{"p99=abc%", nil, "not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTolerance(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i].Stat != tt.want[i].Stat || math.Abs(got[i].Change-tt.want[i].Change) > 1e-9 {
					t.Errorf("limit %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
			if back, err := ParseTolerance(got.String()); err != nil || back.String() != got.String() {
				t.Errorf("round trip %q: %v %v", got.String(), back, err)
			}
		})
	}
}

func calibrated(r *results.Results, pingP50 float64) *results.Results {
	r.Calibration = &results.Calibration{Node: "redis-1", Path: "direct", Requests: 3000,
		GoPingP50us: pingP50, GoPingP99us: pingP50 * 4, GoPingRPS: 1e6 / (pingP50 * 1.2),
		RedisBenchmarkP50us: pingP50 * 0.6, RedisBenchmarkRPS: 1e6 / (pingP50 * 0.7)}
	return r
}

// scale makes every latency of r f times slower and every throughput f
// times lower.
func scale(r *results.Results, f float64) {
	for i := range r.Impls {
		for op, st := range r.Impls[i].Ops {
			st.P50, st.P90, st.P99, st.P999, st.Max, st.Mean = st.P50*f, st.P90*f, st.P99*f, st.P999*f, st.Max*f, st.Mean*f
			st.Throughput /= f
			r.Impls[i].Ops[op] = st
		}
	}
}

func TestGateNormalised(t *testing.T) {
	tests := []struct {
		name        string
		basePing    float64 // baseline Go PING p50 (0 = no calibration)
		curPing     float64
		mutate      func(r *results.Results)
		failing     []string
		normalised  bool
		tableWants  []string
		noteContain string
	}{
		{"p99 2x worse, same calibration", 45, 45, func(r *results.Results) {
			st := r.Impls[0].Ops["cycle"]
			st.P99 *= 2
			r.Impls[0].Ops["cycle"] = st
		}, []string{"redis-setnx/cycle p99"}, true,
			[]string{"machine-normalised", "CHANGE (norm, gated)", "RAW CHANGE", "20.0×ping", "40.0×ping", "+100.0%"},
			"machine-normalised; raw 900µs → 1.80ms"},
		{"everything 2x slower, calibration too: machine slower, not the code", 45, 90, func(r *results.Results) { scale(r, 2) },
			nil, true, []string{"gate: PASS", "baseline 45.0µs, now 90.0µs (+100.0%)", "+100.0%", "+0.0%", "-50.0%"}, ""},
		{"machine 2x slower, code 2x slower on top", 45, 90, func(r *results.Results) {
			scale(r, 2)
			st := r.Impls[0].Ops["cycle"]
			st.P99 *= 2
			r.Impls[0].Ops["cycle"] = st
		}, []string{"redis-setnx/cycle p99"}, true, nil, ""},
		{"machine 2x faster hides nothing: code 2x slower", 45, 22.5, func(r *results.Results) {}, // raw equal, normalised 2x worse
			[]string{"redis-setnx/acquire p99", "redis-setnx/acquire throughput", "redis-setnx/cycle p99", "redis-setnx/cycle throughput", "unsafe-release/cycle p99", "unsafe-release/cycle throughput"}, true, nil, ""},
		{"baseline without calibration: raw gate", 0, 90, func(r *results.Results) { scale(r, 2) },
			[]string{"redis-setnx/acquire p99", "redis-setnx/acquire throughput", "redis-setnx/cycle p99", "redis-setnx/cycle throughput", "unsafe-release/cycle p99", "unsafe-release/cycle throughput"}, false,
			[]string{"gate on raw figures", "baseline carries no calibration"}, ""},
		{"current without calibration: raw gate", 45, 0, func(r *results.Results) {}, nil, false,
			[]string{"gate on raw figures", "results carry no calibration"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := sample()
			if tt.basePing > 0 {
				calibrated(base, tt.basePing)
			}
			cur := clone(t, sample())
			cur.RunID = "now"
			if tt.curPing > 0 {
				calibrated(cur, tt.curPing)
			}
			tt.mutate(cur)
			rep, err := Gate(base, cur, DefaultTolerance(), nil)
			if err != nil {
				t.Fatal(err)
			}
			out := table(t, rep)
			t.Logf("\n%s", out)
			if rep.Normalised != tt.normalised {
				t.Errorf("Normalised = %v, want %v", rep.Normalised, tt.normalised)
			}
			assertFailing(t, rep, out, tt.failing)
			for _, w := range tt.tableWants {
				if !strings.Contains(out, w) {
					t.Errorf("table lacks %q:\n%s", w, out)
				}
			}
			if tt.noteContain != "" && !strings.Contains(out, tt.noteContain) {
				t.Errorf("table lacks %q:\n%s", tt.noteContain, out)
			}
		})
	}
}

func TestNormalise(t *testing.T) {
	if got := P99.Normalise(900, 45); math.Abs(got-20) > 1e-9 {
		t.Errorf("p99 900µs / 45µs = %v, want 20", got)
	}
	// 3000 ops/s × 45 µs = 0.135 ops per PING-time.
	if got := Throughput.Normalise(3000, 45); math.Abs(got-0.135) > 1e-9 {
		t.Errorf("throughput = %v, want 0.135", got)
	}
	if got := P99.Normalise(900, 0); !math.IsNaN(got) {
		t.Errorf("no unit: %v, want NaN", got)
	}
	if P99.FormatNorm(20) != "20.0×ping" || Throughput.FormatNorm(0.135) != "0.135/ping" || P99.FormatNorm(math.NaN()) != "-" {
		t.Errorf("FormatNorm: %q %q", P99.FormatNorm(20), Throughput.FormatNorm(0.135))
	}
}

func TestMatrixAllowed(t *testing.T) {
	rows := []Expectation{
		{Impl: "redis-setnx", Workload: "counter", NoFault: true},
		{Impl: "redis-setnx", Workload: "counter", Failing: []string{"mutual-exclusion"}, Faults: []string{"holder-pause"}},
		{Impl: "redis-setnx", Workload: "counter", Failing: []string{"availability"}, Faults: []string{"holder-pause"}},
		{Impl: "unsafe-release", Workload: "counter", Failing: []string{"mutual-exclusion"}, Faults: []string{"holder-pause"}},
		{Impl: "racy-mutant", Workload: "counter", NoFault: true, Failing: []string{"lost-update"}},
		{Impl: "pg-lease", Workload: "counter", NoFault: true},
		{Impl: "pg-lease", Workload: "counter", Failing: []string{"availability"}, Faults: []string{"holder-pause"}},
		{Impl: "pg-lease", Workload: "counter", Failing: []string{"mutual-exclusion"}, Topology: "pg-standby", Faults: []string{"holder-pause"}}, // async failover
	}
	noFault := &results.Results{Workload: "counter", Impls: []results.ImplResult{{Name: "redis-setnx"}, {Name: "unsafe-release", Mutant: true}, {Name: "racy-mutant", Mutant: true}, {Name: "stranger", Mutant: true}}}
	noFault.Impls = append(noFault.Impls, results.ImplResult{Name: "pg-lease"})
	faulted := clone(t, noFault)
	faulted.Faults = []results.FaultWindow{{Fault: "holder-pause:k0=2xttl@1s", Kind: "holder-pause"}}
	onStandby := clone(t, faulted)
	onStandby.Impls[len(onStandby.Impls)-1].Topology = "pg-standby"
	tests := []struct {
		run           *results.Results
		impl, checker string
		want          bool
	}{
		{noFault, "redis-setnx", "mutual-exclusion", false}, // no fault: the safe baseline row decides
		{faulted, "redis-setnx", "mutual-exclusion", true},  // a fault that breaks it ran
		{faulted, "redis-setnx", "lost-update", false},
		{noFault, "unsafe-release", "mutual-exclusion", true}, // mutant without a no-fault row: its fault rows
		{noFault, "unsafe-release", "lost-update", false},
		{noFault, "racy-mutant", "lost-update", true},
		{noFault, "racy-mutant", "mutual-exclusion", false},
		{noFault, "stranger", "mutual-exclusion", false}, // not in the matrix: nothing allowed
		{faulted, "stranger", "mutual-exclusion", false},
		{faulted, "pg-lease", "availability", true},
		{faulted, "pg-lease", "mutual-exclusion", false}, // only a pg-standby row allows it
		{onStandby, "pg-lease", "mutual-exclusion", true},
	}
	for _, tt := range tests {
		allowed := MatrixAllowed(rows, tt.run)
		if got := allowed(tt.impl, tt.checker); got != tt.want {
			t.Errorf("faults=%d %s %s: allowed = %v, want %v", len(tt.run.Faults), tt.impl, tt.checker, got, tt.want)
		}
	}
}

// An allowance matches the implementation and the fault: a row allows its
// checkers in a faulted run only when every fault kind of the row ran in
// that implementation's phase. redis-sentinel-wait loses mutual exclusion
// when a replica is cut from the primary and the primary fails over
// (failover-unacked): the same violation under a latency fault, under a
// failover alone, or under faults of another implementation's phase fails.
func TestMatrixAllowedMatchesFault(t *testing.T) {
	rows := []Expectation{
		{Impl: "redis-sentinel-wait", Workload: "counter", NoFault: true},
		{Impl: "redis-sentinel-wait", Workload: "counter", Failing: []string{"availability"}, Faults: []string{"failover"}},
		{Impl: "redis-sentinel-wait", Workload: "counter", Failing: []string{"mutual-exclusion", "lost-update"}, Faults: []string{"failover", "partition-pair"}},
		{Impl: "redis-sentinel-wait", Workload: "counter", Failing: []string{"mutual-exclusion"}},              // a script that declares no faults
		{Impl: "redis-fence-per-client", Workload: "counter", NoFault: true, Failing: []string{"fence-order"}}, // breaks with no fault at all
	}
	run := func(impl string, windows ...results.FaultWindow) *results.Results {
		return &results.Results{Workload: "counter", Faults: windows,
			Impls: []results.ImplResult{{Name: impl}, {Name: "other"}}}
	}
	w := func(kind, impl string) results.FaultWindow {
		return results.FaultWindow{Fault: kind + "@1s", Kind: kind, Impl: impl}
	}
	const wait = "redis-sentinel-wait"
	tests := []struct {
		name          string
		run           *results.Results
		impl, checker string
		want          bool
	}{
		{"the allowed row: partition-pair and failover", run(wait, w("partition-pair", wait), w("failover", wait)), wait, "mutual-exclusion", true},
		{"the allowed row, faults on every phase", run(wait, w("partition-pair", ""), w("failover", "")), wait, "mutual-exclusion", true},
		{"the allowed row plus a latency fault", run(wait, w("latency", wait), w("partition-pair", wait), w("failover", wait)), wait, "lost-update", true},
		{"a different fault: latency", run(wait, w("latency", wait)), wait, "mutual-exclusion", false},
		{"a different fault: kill", run(wait, w("kill", wait)), wait, "mutual-exclusion", false},
		{"half the row: failover alone", run(wait, w("failover", wait)), wait, "mutual-exclusion", false},
		{"failover alone allows its liveness row", run(wait, w("failover", wait)), wait, "availability", true},
		{"availability under a different fault", run(wait, w("latency", wait)), wait, "availability", false},
		{"the row's faults hit another phase", run(wait, w("partition-pair", "other"), w("failover", "other")), wait, "mutual-exclusion", false},
		{"no fault: the safe no-fault row decides", run(wait), wait, "mutual-exclusion", false},
		{"a no-fault violation row holds under any fault", run("redis-fence-per-client", w("latency", "")), "redis-fence-per-client", "fence-order", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MatrixAllowed(rows, tt.run)(tt.impl, tt.checker); got != tt.want {
				t.Errorf("%s %s under %v: allowed = %v, want %v", tt.impl, tt.checker, tt.run.Faults, got, tt.want)
			}
		})
	}
}

func TestGateOps(t *testing.T) {
	base := sample()
	cur := clone(t, base)
	st := cur.Impls[0].Ops["acquire"]
	st.P99 *= 3
	cur.Impls[0].Ops["acquire"] = st
	if rep, _ := GateOps(base, cur, DefaultTolerance(), nil, nil); rep.Pass() {
		t.Fatal("acquire p99 3x worse passed with every kind gated")
	}
	rep, err := GateOps(base, cur, DefaultTolerance(), nil, []string{"cycle"})
	if err != nil {
		t.Fatal(err)
	}
	out := table(t, rep)
	if !rep.Pass() || !strings.Contains(out, "not gated (operation kind not in --ops cycle)") {
		t.Errorf("acquire should be shown, not gated:\n%s", out)
	}
	st = cur.Impls[0].Ops["cycle"]
	st.P99 *= 3
	cur.Impls[0].Ops["cycle"] = st
	if rep, _ := GateOps(base, cur, DefaultTolerance(), nil, []string{"cycle"}); rep.Pass() {
		t.Error("cycle p99 3x worse passed with --ops cycle")
	}
}

// assertFailing checks that exactly the metrics failing fail, in order,
// and that the rendered table names each of them.
func assertFailing(t *testing.T, rep Report, table string, failing []string) {
	t.Helper()
	var got []string
	for _, f := range rep.Failures() {
		got = append(got, f.Metric)
	}
	if strings.Join(got, ";") != strings.Join(failing, ";") {
		t.Errorf("failures = %q, want %q\n%s", got, failing, table)
	}
	for _, m := range failing {
		if !strings.Contains(table, "FAIL "+m) {
			t.Errorf("table does not name failing metric %q:\n%s", m, table)
		}
	}
}
