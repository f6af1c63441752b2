package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// `faultline check` judges a saved run again, offline: on a real run's
// history it gives the verdicts the run gave; after the history is edited
// so that one write landed inside another holder's critical section, the
// mutual-exclusion verdict flips to invalid, results.json and report.html
// are rewritten, and --fail-on-violation exits 1.
func TestCheckReproducesVerdictsAndFlipsOnOverlap(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers (-short)")
	}
	dir := t.TempDir()
	code, stdout, stderr := cli(t, "run", "--impl", "redis-setnx", "--clients", "4", "--duration", "2s", "--out", dir, "--seed", "7",
		"--ttl", "500ms", "--quiet", "100ms")
	if code != 0 {
		t.Fatalf("run exit %d\n%s\n%s", code, stdout, stderr)
	}
	ran, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	// --quiet shorter than the ttl: raised, said on stderr and in the results.
	if !strings.Contains(stderr, "raised to 500ms") || len(ran.Notes) == 0 || !strings.Contains(ran.Notes[0], "raised to 500ms") ||
		ran.Config["quiet"] != "500ms" {
		t.Errorf("quiet raise: stderr %q, notes %q, config quiet %v", stderr, ran.Notes, ran.Config["quiet"])
	}
	if code, out, errs := cli(t, "check", dir); code != 0 {
		t.Fatalf("check exit %d\n%s\n%s", code, out, errs)
	}
	checked, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ran.Verdicts, checked.Verdicts) {
		t.Fatalf("check changed the verdicts of an unedited run:\nrun:   %+v\ncheck: %+v", ran.Verdicts, checked.Verdicts)
	}

	// One resource write now says its writer read the value before the
	// previous write: that previous write landed inside its section.
	// The run wrote history.jsonl.zst; the edited history goes back as a
	// plain history.jsonl, the format of older runs, which check must
	// still read.
	ops, err := history.Load(filepath.Join(dir, history.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, history.FileName)); err != nil {
		t.Fatal(err)
	}
	hpath := filepath.Join(dir, history.PlainFileName)
	edited := -1
	for i, op := range ops {
		if op.F == "resource-write" && op.Attrs["current"] != "" && op.Attrs["current"] != "0" {
			cur, _ := strconv.ParseInt(op.Attrs["current"], 10, 64)
			ops[i].Attrs["expected"] = strconv.FormatInt(cur-1, 10)
			edited = i
			break
		}
	}
	if edited < 0 {
		t.Fatal("no resource write to edit")
	}
	f, err := os.Create(hpath)
	if err != nil {
		t.Fatal(err)
	}
	w := history.NewWriter(f)
	for _, op := range ops {
		if _, err := w.Write(op); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Remove(filepath.Join(dir, "report.html")); err != nil {
		t.Fatal(err)
	}

	code, out, errs := cli(t, "check", dir)
	if code != 0 {
		t.Fatalf("check of the edited history: exit %d (want 0 without --fail-on-violation)\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "INVALID") {
		t.Errorf("check output shows no invalid verdict:\n%s", out)
	}
	res, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range res.Verdicts {
		want := results.Valid
		if v.Checker == "mutual-exclusion" {
			want = results.Invalid
		}
		var orig results.Validity
		for _, o := range ran.Verdicts {
			if o.Checker == v.Checker && o.Impl == v.Impl {
				orig = o.Valid
			}
		}
		if v.Checker != "mutual-exclusion" {
			want = orig
		}
		if v.Valid != want {
			t.Errorf("%s/%s: %s after the edit, want %s (%s)", v.Impl, v.Checker, v.Valid, want, v.Summary)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "report.html")); err != nil {
		t.Errorf("report.html not re-rendered: %v", err)
	}
	if code, _, errs := cli(t, "check", dir, "--fail-on-violation"); code != 1 || !strings.Contains(errs, "--fail-on-violation") {
		t.Errorf("check --fail-on-violation: exit %d, want 1\n%s", code, errs)
	}
}

// Inputs that are not a saved run are usage errors.
func TestCheckBadInputExit2(t *testing.T) {
	empty := t.TempDir()
	corrupt := t.TempDir()
	res := &results.Results{Workload: "counter", Config: map[string]any{"ttl": "1s"}, Impls: []results.ImplResult{{Name: "redis-setnx"}}}
	if err := results.Save(filepath.Join(corrupt, results.FileName), res); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(corrupt, "history.jsonl"), []byte("{\"index\":0}\n{not json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"check"}, "give one run directory"},
		{[]string{"check", "/nonexistent"}, "/nonexistent"},
		{[]string{"check", empty}, empty},
		{[]string{"check", corrupt}, "line 2"},
	}
	for _, c := range cases {
		code, _, errs := cli(t, c.args...)
		if code != exitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, want 2 with %q:\n%s", c.args, code, c.want, errs)
		}
	}
}
