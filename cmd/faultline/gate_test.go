package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/bench/results"
)

// The gate acceptance, through the CLI, on the committed baseline:
// the baseline itself passes (0); a copy whose p99 is doubled, calibration
// unchanged, fails (1) and names the metric; a copy where everything,
// calibration included, is 2× slower passes (a slower machine, not slower
// code); a wrong schema is bad input (2).
func TestGateCLIOnCommittedBaseline(t *testing.T) {
	basePath := filepath.Join("..", "..", "bench", "baseline.json")
	b, err := os.ReadFile(basePath)
	if err != nil {
		t.Skipf("no committed baseline (make baseline): %v", err)
	}
	var base results.Results
	if err := json.Unmarshal(b, &base); err != nil {
		t.Fatal(err)
	}
	if base.Calibration.Unit() <= 0 {
		t.Fatalf("committed baseline carries no calibration: refresh it with make baseline")
	}
	dir := t.TempDir()
	write := func(name string, r *results.Results) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := results.Save(p, r); err != nil {
			t.Fatal(err)
		}
		return p
	}
	load := func() *results.Results {
		var r results.Results
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	headline := "redis-setnx"
	if base.Impl(headline) == nil {
		headline = base.Impls[0].Name
	}

	p99x2 := load()
	st := p99x2.Impl(headline).Ops["cycle"]
	st.P99 *= 2
	p99x2.Impl(headline).Ops["cycle"] = st

	slower := load()
	for i := range slower.Impls {
		for op, st := range slower.Impls[i].Ops {
			st.P50, st.P90, st.P99, st.P999, st.Max, st.Mean = 2*st.P50, 2*st.P90, 2*st.P99, 2*st.P999, 2*st.Max, 2*st.Mean
			st.Throughput /= 2
			slower.Impls[i].Ops[op] = st
		}
	}
	c := *slower.Calibration
	c.GoPingP50us *= 2
	slower.Calibration = &c

	wrongSchema := filepath.Join(dir, "schema.json")
	if err := os.WriteFile(wrongSchema, []byte(strings.Replace(string(b), `"schema": 1`, `"schema": 99`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(empty, []byte(`{"schema":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	renamed := load()
	renamed.Impls[0].Name = "not-in-baseline"
	missing := base.Impls[0].Name

	expected := filepath.Join("..", "..", "chaos", "expected.md")
	tests := []struct {
		name    string
		results string
		args    []string
		code    int
		stdout  []string
		stderr  []string
	}{
		{"baseline itself", basePath, nil, 0, []string{"gate: PASS", "machine-normalised"}, nil},
		{"baseline itself, expected matrix", basePath, []string{"--expected", expected}, 0, []string{"gate: PASS", "expected-verdict matrix"}, nil},
		{"p99 doubled", write("p99x2.json", p99x2), nil, 1, []string{"FAIL " + headline + "/cycle p99", "gate: FAIL"}, nil},
		{"p99 doubled, make gate tolerance", write("p99x2b.json", p99x2), []string{"--tolerance", "p99=+90%,throughput=-45%"}, 1, []string{"FAIL " + headline + "/cycle p99"}, nil},
		{"machine 2x slower", write("slower.json", slower), nil, 0, []string{"gate: PASS", "+100.0%"}, nil},
		{"wrong schema", wrongSchema, nil, 2, nil, []string{"schema 99", "expected schema 1"}},
		{"nothing to compare", empty, nil, 2, nil, []string{"nothing to compare"}},
		{"implementations differ", write("renamed.json", renamed), nil, 2, nil, []string{"different implementations", "only in the baseline: " + missing, "only in the results: not-in-baseline"}},
		{"bad matrix", basePath, []string{"--expected", filepath.Join(dir, "none.md")}, 2, nil, []string{"expected-verdict matrix"}},
	}
	// An empty baseline is bad input too.
	if code, _, stderr := cli(t, "gate", "--baseline", empty, basePath); code != 2 || !strings.Contains(stderr, "baseline") || !strings.Contains(stderr, "nothing to compare") {
		t.Errorf("empty baseline: exit %d, stderr %q; want 2 naming the baseline", code, stderr)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"gate", "--baseline", basePath}, tt.args...)
			code, stdout, stderr := cli(t, append(args, tt.results)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			for _, w := range tt.stdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// The gate's allowance matches the implementation and the fault, through
// the CLI and the committed matrix: redis-sentinel-wait's mutual-exclusion
// violation is allowed under its failover-unacked row's faults
// (partition-pair and failover) and fails the gate under any other fault.
func TestGateAllowanceMatchesFault(t *testing.T) {
	dir := t.TempDir()
	expected := filepath.Join("..", "..", "chaos", "expected.md")
	op := results.OpStats{Count: 1000, OK: 1000, Throughput: 1000, Percentiles: results.Percentiles{Count: 1000, P50: 100, P90: 150, P99: 300, P999: 400, Max: 500, Mean: 110}}
	mk := func(impl string, kinds ...string) *results.Results {
		r := &results.Results{Schema: results.Schema, RunID: "r", Workload: "counter",
			Impls: []results.ImplResult{{Name: impl, Topology: "redis-sentinel", Ops: map[string]results.OpStats{"cycle": op}}}}
		for i, k := range kinds {
			r.Faults = append(r.Faults, results.FaultWindow{ID: fmt.Sprint("f", i), Fault: k + "@1s", Kind: k, Impl: impl, Start: 1e9, End: 2e9})
		}
		if len(kinds) > 0 {
			r.Verdicts = []results.Verdict{{Checker: "mutual-exclusion", Impl: impl, Valid: results.Invalid, Violations: []results.Violation{{Kind: "overlap"}}}}
		}
		return r
	}
	save := func(name string, r *results.Results) string {
		t.Helper()
		p := filepath.Join(dir, name+".json")
		if err := results.Save(p, r); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const wait, setnx = "redis-sentinel-wait", "redis-sentinel-setnx"
	tests := []struct {
		name  string
		impl  string
		kinds []string
		code  int
	}{
		{"wait: the failover-unacked row's faults", wait, []string{"partition-pair", "failover"}, exitOK},
		{"wait: latency", wait, []string{"latency"}, exitFail},
		{"wait: kill", wait, []string{"kill"}, exitFail},
		{"wait: failover alone", wait, []string{"failover"}, exitFail}, // its failover rows expect availability only
		{"setnx: failover", setnx, []string{"failover"}, exitOK},       // failover-held
		{"setnx: latency", setnx, []string{"latency"}, exitFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := save(tt.impl+"-base", mk(tt.impl))
			cur := save(strings.NewReplacer(" ", "", ":", "-", ",", "").Replace(tt.name), mk(tt.impl, tt.kinds...))
			code, stdout, stderr := cli(t, "gate", "--baseline", base, "--expected", expected, cur)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			want := "pass (expected violation)"
			if tt.code == exitFail {
				want = "FAIL " + tt.impl + " safety:mutual-exclusion"
			}
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, stdout)
			}
		})
	}
}
