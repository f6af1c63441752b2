package results

import (
	"errors"
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

func TestLoadRefusesOtherSchema(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, body, want string }{
		{"old.json", `{"schema": 0, "run_id": "x"}`, "schema 0, this faultline reads schema 1"},
		{"none.json", `{"run_id": "x"}`, `no "schema" field`},
		{"bad.json", `{`, "not a results file"},
	}
	for _, c := range cases {
		p := filepath.Join(dir, c.name)
		if err := os.WriteFile(p, []byte(c.body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want one naming the file and %q", c.name, err, c.want)
		}
	}
	var se *SchemaError
	if _, err := Load(filepath.Join(dir, "old.json")); !errors.As(err, &se) || se.Found != 0 || se.Expected != Schema {
		t.Errorf("want a *SchemaError{Found 0, Expected %d}, got %v", Schema, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
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
