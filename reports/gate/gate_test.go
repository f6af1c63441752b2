package gate

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
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
			var got []string
			for _, f := range rep.Failures() {
				got = append(got, f.Metric)
			}
			if strings.Join(got, ";") != strings.Join(tt.failing, ";") {
				t.Errorf("failures = %q, want %q\n%s", got, tt.failing, out)
			}
			for _, m := range tt.failing {
				if !strings.Contains(out, "FAIL "+m) {
					t.Errorf("table does not name failing metric %q:\n%s", m, out)
				}
			}
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

func TestGateBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path string
		want       []string
	}{
		{"missing file", filepath.Join(dir, "nope.json"), []string{"nope.json", "no such file"}},
		{"wrong schema", write("v2.json", `{"schema": 2, "run_id": "x"}`), []string{"v2.json", "schema 2", "expected schema 1"}},
		{"no schema", write("other.json", `{"hello": 1}`), []string{"other.json", "no \"schema\" field"}},
		{"not json", write("junk.json", `not json`), []string{"junk.json", "not a results.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadResults(tt.path)
			if !errors.Is(err, ErrBadInput) {
				t.Fatalf("err = %v, want ErrBadInput", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	good := sample()
	b, _ := json.Marshal(good)
	p := write("good.json", string(b))
	if r, err := ReadResults(p); err != nil || r.RunID != "base" {
		t.Fatalf("ReadResults(good) = %v, %v", r, err)
	}
	other := clone(t, good)
	other.Schema = 3
	if _, err := Gate(good, other, DefaultTolerance(), nil); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "schema 3") {
		t.Errorf("Gate with schema 3: err = %v, want ErrBadInput naming schema 3", err)
	}
	other = clone(t, good)
	other.Workload = "bank"
	if _, err := Gate(good, other, DefaultTolerance(), nil); !errors.Is(err, ErrBadInput) {
		t.Errorf("Gate across workloads: err = %v, want ErrBadInput", err)
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
