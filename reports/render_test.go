package reports

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

var (
	hrefRe = regexp.MustCompile(`href="#([^"]+)"`)
	idRe   = regexp.MustCompile(`id="([^"]+)"`)
)

// checkPage asserts the invariants every page must hold: no URL, the
// expected number of charts, every in-page link resolving, unique ids.
func checkPage(t *testing.T, page string, minCharts int) {
	t.Helper()
	for _, bad := range []string{"http://", "https://", "<script", "@import", "url("} {
		if strings.Contains(page, bad) {
			i := strings.Index(page, bad)
			t.Errorf("page contains %q: …%s…", bad, page[max(0, i-80):min(len(page), i+80)])
		}
	}
	if n := strings.Count(page, "<svg"); n < minCharts {
		t.Errorf("page has %d <svg> charts, want at least %d", n, minCharts)
	}
	ids := map[string]int{}
	for _, m := range idRe.FindAllStringSubmatch(page, -1) {
		ids[m[1]]++
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("id %q appears %d times", id, n)
		}
	}
	for _, m := range hrefRe.FindAllStringSubmatch(page, -1) {
		if ids[m[1]] == 0 {
			t.Errorf("link #%s has no target in the page", m[1])
		}
	}
}

func TestRenderLockRun(t *testing.T) {
	dir := saveFixture(t, lockFixture())
	if err := WriteHTML(dir); err != nil {
		t.Fatalf("WriteHTML: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	run, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	// charts: a percentile chart per op kind (5), a timeline per impl (3),
	// inside/outside bars (1), lock recovery bars (1).
	checkPage(t, page, 10)
	for _, want := range []string{
		`id="verdicts"`, `id="pct-acquire"`, `id="pct-cycle"`, `id="time-redis-setnx"`, `id="time-unsafe-release"`,
		`id="inout"`, `id="lock-recovery"`, "kill:redis-2", "latency:redis-1:40ms", run.Results.Command,
		"mutant: expected", "? unknown", "99.999%", "http&#58;//127.0.0.1:8474",
	} {
		if !strings.Contains(page, want) && !strings.Contains(page, strings.ReplaceAll(want, "&#58;", ":")) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Every violation shown links to history lines present in the page,
	// and those lines are highlighted.
	var links int
	for _, v := range run.Results.Verdicts {
		for _, x := range v.Violations {
			for _, idx := range x.Indexes {
				anchor := `href="#h-` + itoa(idx) + `"`
				if !strings.Contains(page, anchor) {
					t.Errorf("violation %q: no link %s", x.Kind, anchor)
				}
				links++
			}
		}
	}
	if links == 0 {
		t.Fatal("fixture has no violation indexes: the link test proves nothing")
	}
	if n := strings.Count(page, `class="hit"`); n < links {
		t.Errorf("%d highlighted history lines, want >= %d", n, links)
	}
	if len(b) > 5<<20 {
		t.Errorf("report is %d bytes, want < 5 MB", len(b))
	}
	t.Logf("report: %d bytes, %d charts, %d history lines, %d violation links", len(b), strings.Count(page, "<svg"), run.Trace.Lines, links)
}

func TestRenderTxnRun(t *testing.T) {
	res, ops := buildFixture(txnFixture())
	var buf bytes.Buffer
	if err := Render(&buf, NewRun(res, ops)); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	checkPage(t, page, 4+2+1+2)
	for _, want := range []string{`id="txn-phases"`, `id="txn-doubt"`, "in_doubt_ms_max"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, `id="lock-recovery"`) {
		t.Error("transaction report shows the lock recovery chart")
	}
}

func TestRenderWithoutHistory(t *testing.T) {
	dir := saveFixture(t, lockFixture())
	if err := os.Remove(filepath.Join(dir, HistoryFile)); err != nil {
		t.Fatal(err)
	}
	run, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Render(&buf, run); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	checkPage(t, page, 5)
	if !strings.Contains(page, "has no history.jsonl") {
		t.Error("page does not say the history is missing")
	}
}

func TestCompare(t *testing.T) {
	spec := lockFixture()
	spec.perImpl = 3e9
	a := saveFixture(t, spec)
	spec.impls = append([]fixtureImpl(nil), spec.impls...)
	spec.impls[1].baseUS *= 1.6 // "after": redlock got slower
	b := saveFixture(t, spec)
	var buf bytes.Buffer
	if err := Compare(&buf, []string{a, b}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	// 5 percentile charts + 3 impls × 2 runs timelines.
	checkPage(t, page, 11)
	if !strings.Contains(page, `class="n worse"`) {
		t.Error("comparison does not flag redlock's slowdown as worse")
	}
	if err := Compare(&buf, []string{a}); err == nil {
		t.Error("Compare with one run: want an error")
	}
}

func TestLoadBadSchema(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ResultsFile), []byte(`{"schema": 99}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "schema 99") || !strings.Contains(err.Error(), "expected schema 1") {
		t.Fatalf("Load wrong schema: err = %v, want it to name found 99 and expected 1", err)
	}
}

func itoa(x int64) string { return strconv.FormatInt(x, 10) }

// TestTraceIsBounded feeds a history where every operation fails (a long
// partition) and checks the sample stays bounded and keeps every kind.
func TestTraceIsBounded(t *testing.T) {
	res := &results.Results{Schema: results.Schema, Impls: []results.ImplResult{{Name: "a"}, {Name: "b"}}}
	var ops []history.Op
	for i := range 60000 {
		impl := []string{"a", "b"}[i%2]
		typ := history.Fail
		if (i/2)%10 == 0 {
			typ = history.OK
		}
		ops = append(ops,
			history.Op{Index: int64(2 * i), Time: int64(i) * 1e5, Type: history.Invoke, Process: i % 8, Impl: impl, F: "acquire"},
			history.Op{Index: int64(2*i + 1), Time: int64(i)*1e5 + int64(i%97)*1e4, Type: typ, Process: i % 8, Impl: impl, F: "acquire"})
	}
	tr := NewRun(res, ops).Trace
	for _, name := range []string{"a", "b"} {
		it := tr.Impls[name]
		if it == nil {
			t.Fatalf("no trace for %s", name)
		}
		var ok, fail int
		for _, p := range it.Points {
			switch p.Type {
			case history.OK:
				ok++
			case history.Fail:
				fail++
			}
		}
		if n := len(it.Points); n > pointBudget/2*2+keepSlowest {
			t.Errorf("%s: %d points kept, want <= %d", name, n, pointBudget+keepSlowest)
		}
		if ok == 0 || fail == 0 || it.Completed[history.Fail] != 27000 {
			t.Errorf("%s: ok %d fail %d points, %d fails counted", name, ok, fail, it.Completed[history.Fail])
		}
	}
}

func TestRenderCalibration(t *testing.T) {
	res, _ := buildFixture(lockFixture())
	r := *res
	for _, tt := range []struct {
		name string
		cal  *results.Calibration
		want []string
		not  []string
	}{
		{"both tools", &results.Calibration{Node: "redis-1", Path: "direct", Requests: 3000,
			RedisBenchmarkRPS: 21000, RedisBenchmarkP50us: 31, RedisBenchmarkP99us: 150,
			GoPingRPS: 15000, GoPingP50us: 55, GoPingP99us: 230},
			[]string{`id="calibration"`, "3000 sequential PINGs", "p50 <b>55.0µs</b>", "redis-benchmark p50 <b>31.0µs</b>", "harness overhead <b>×1.77</b>"}, nil},
		{"no redis-benchmark", &results.Calibration{Node: "redis-1", Path: "proxied", Requests: 3000, GoPingP50us: 101, GoPingP99us: 300,
			GoPingRPS: 9000, Note: "redis-benchmark not run: not found on PATH"},
			[]string{`id="calibration"`, "p50 <b>101µs</b>", "note: redis-benchmark not run"}, []string{"harness overhead <b>"}},
		{"none", nil, nil, []string{`id="calibration"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r.Calibration = tt.cal
			var buf bytes.Buffer
			if err := Render(&buf, &Run{Results: &r}); err != nil {
				t.Fatal(err)
			}
			page := buf.String()
			assertPage(t, page, tt.want, tt.not)
		})
	}
}

// A corrupt history (a truncated last line, garbage) is a
// *history.LineError naming the file and the line; a long line the
// checkers accept (5 MiB) is accepted here too.
func TestLoadCorruptHistory(t *testing.T) {
	dir := saveFixture(t, lockFixture())
	path := filepath.Join(dir, HistoryFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Count(b, []byte("\n"))
	long := []byte(`{"index":999999,"time":1,"type":"info","process":-3,"f":"note","error":"` + strings.Repeat("x", 5<<20) + "\"}\n")
	if err := os.WriteFile(path, append(append([]byte(nil), b...), long...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err != nil {
		t.Fatalf("history with a 5 MiB line: %v", err)
	}
	if err := os.WriteFile(path, append(append([]byte(nil), b...), `{"index":1,"ti`...), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(dir)
	var le *history.LineError
	if !errors.As(err, &le) || le.Path != path || le.Line != lines+1 {
		t.Fatalf("truncated history: err = %v, want a *history.LineError for %s line %d", err, path, lines+1)
	}
}

// assertPage checks that page contains every string of want and none of not.
func assertPage(t *testing.T, page string, want, not []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Errorf("page lacks %q", w)
		}
	}
	for _, w := range not {
		if strings.Contains(page, w) {
			t.Errorf("page has %q", w)
		}
	}
}
