package results

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	in := &Results{RunID: "r1", Seed: 7, Impls: []ImplResult{{Name: "a", Ops: map[string]OpStats{"cycle": {Count: 3, OK: 2}}}},
		Verdicts: []Verdict{{Checker: "mutual-exclusion", Impl: "a", Valid: Invalid}, {Checker: "x", Impl: "a", Valid: Unknown}}}
	if err := Save(dir, in); err != nil {
		t.Fatal(err)
	}
	out, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if out.Schema != Schema || out.RunID != "r1" || out.Impl("a").Ops["cycle"].OK != 2 || out.Impl("b") != nil {
		t.Fatalf("round trip lost data: %+v", out)
	}
	if n := out.Violations(""); n != 1 {
		t.Fatalf("Violations = %d, want 1 (one invalid verdict without listed violations)", n)
	}
}

// Every read failure is a *ReadError naming the file and what was wrong.
func TestLoadRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, body, want string }{
		{"old.json", `{"schema": 0, "run_id": "x"}`, "results schema 0, expected schema 1"},
		{"none.json", `{"run_id": "x"}`, `no "schema" field`},
		{"bad.json", `{`, "not a results file"},
		{"junk.json", `not json`, "not a results file"},
		{"types.json", `{"schema": 1, "impls": "x"}`, "does not match results schema 1"},
		{"missing.json", "", "cannot read it"},
	}
	for _, c := range cases {
		p := filepath.Join(dir, c.name)
		if c.name != "missing.json" {
			if err := os.WriteFile(p, []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, err := Load(p)
		var re *ReadError
		if !errors.As(err, &re) || re.Path != p {
			t.Errorf("%s: error %v, want a *ReadError with Path %s", c.name, err, p)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want one naming the file and %q", c.name, err, c.want)
		}
	}
	var re *ReadError
	if _, err := Load(filepath.Join(dir, "old.json")); !errors.As(err, &re) || re.Found != 0 || re.Expected != Schema {
		t.Errorf("want a *ReadError{Found 0, Expected %d}, got %v", Schema, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestDecode(t *testing.T) {
	r, err := Decode(strings.NewReader(`{"schema":1}`))
	if err != nil || r.Schema != 1 || len(r.Impls) != 0 {
		t.Fatalf("Decode({schema:1}) = %+v, %v", r, err)
	}
	_, err = Decode(strings.NewReader(`{"schema":2}`))
	var re *ReadError
	if !errors.As(err, &re) || re.Path != "" || re.Found != 2 || !strings.HasPrefix(err.Error(), "results: results schema 2") {
		t.Errorf("Decode(schema 2) = %v", err)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	xs := []float64{15, 20, 35, 40, 50}
	tests := []struct {
		p, want float64
	}{
		{0, 15}, {5, 15}, {20, 15}, {30, 20}, {40, 20}, {50, 35}, {99, 50}, {100, 50}, {150, 50}, {-1, 15},
	}
	for _, tt := range tests {
		if got := Percentile(xs, tt.p); got != tt.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", xs, tt.p, got, tt.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil) = %v", got)
	}
	if got := Percentile(xs, math.NaN()); got != 15 {
		t.Errorf("Percentile(NaN) = %v", got)
	}
	if got := Percentile(xs, math.Inf(1)); got != 50 {
		t.Errorf("Percentile(+Inf) = %v", got)
	}
}

func TestVerdictFoundCountsViolationsNotExamples(t *testing.T) {
	tests := []struct {
		name string
		v    Verdict
		want int
	}{
		{"count beyond stored examples", Verdict{Valid: Invalid, Count: 1669, Violations: make([]Violation, 20)}, 1669},
		{"file before count existed", Verdict{Valid: Invalid, Violations: make([]Violation, 3)}, 3},
		{"valid", Verdict{Valid: Valid}, 0},
	}
	for _, tt := range tests {
		if got := tt.v.Found(); got != tt.want {
			t.Errorf("%s: Found() = %d, want %d", tt.name, got, tt.want)
		}
	}
	r := &Results{Verdicts: []Verdict{tests[0].v, {Impl: "b", Valid: Invalid}}}
	if n := r.Violations(""); n != 1670 {
		t.Errorf("Violations = %d, want 1670", n)
	}
}

func TestSaveKeepsNumberArraysOnOneLine(t *testing.T) {
	dir := t.TempDir()
	in := &Results{RunID: "r", Impls: []ImplResult{{Name: "a", Ops: map[string]OpStats{"cycle": {
		Histogram: &Histogram{LowestTrackableValue: 1, HighestTrackableValue: 60000000, SignificantFigures: 3, Counts: []int64{0, 5, -1, 12}}}}}},
		Notes: []string{"x [1, 2]"}}
	if err := Save(dir, in); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"counts": [0,5,-1,12]`) {
		t.Errorf("counts not compacted:\n%s", b)
	}
	out, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Impls[0].Ops["cycle"].Histogram.Counts; len(got) != 4 || got[3] != 12 || out.Notes[0] != "x [1, 2]" {
		t.Errorf("round trip: counts %v notes %q", got, out.Notes)
	}
}
