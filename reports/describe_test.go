package reports

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// tinyRun is a results.json with hand-written figures and no history.
func tinyRun(workload string, info *results.WorkloadInfo, ops []string, measures map[string]float64) *results.Results {
	st := results.OpStats{Count: 100, OK: 100, Throughput: 50, Percentiles: results.Percentiles{Count: 100, P50: 800, P90: 1200, P99: 3000, P999: 4000, Max: 5000, Mean: 900}}
	r := &results.Results{Schema: results.Schema, RunID: "tiny", Workload: workload, WorkloadInfo: info,
		Config: map[string]any{"ttl": "1s", "lease": "7s"}}
	for _, name := range []string{"a", "b"} {
		ir := results.ImplResult{Name: name, Ops: map[string]results.OpStats{}}
		for _, op := range ops {
			ir.Ops[op] = st
		}
		r.Impls = append(r.Impls, ir)
		r.Verdicts = append(r.Verdicts, results.Verdict{Checker: "liveness", Impl: name, Valid: results.Valid, Measures: measures})
	}
	return r
}

func renderString(t *testing.T, r *results.Results) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Render(&buf, NewRun(r, nil)); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// The report reads the workload's kind, phases and measures from
// results.json, never from names: a lock workload whose name says "bank"
// gets the lock charts; a saga's local/forward/compensate phases are drawn;
// a measure is charted because it is declared in ms for the chart, whatever
// its name; the TTL line comes from the "ttl" the runner writes.
func TestRenderReadsWorkloadInfo(t *testing.T) {
	lock := &results.WorkloadInfo{Kind: results.KindLock, Headline: "cycle", Ops: []string{"cycle", "acquire"},
		Measures: []results.MeasureInfo{
			{Checker: "liveness", Name: "takeover", Unit: results.UnitMS, Chart: results.ChartRecovery},
			{Checker: "liveness", Name: "recovery_ms_p50", Unit: results.UnitCount},
		}}
	saga := &results.WorkloadInfo{Kind: results.KindTxn, Headline: "transfer", Ops: []string{"transfer", "read", "local", "forward", "compensate"},
		Phases:   []string{"local", "forward", "compensate"},
		Measures: []results.MeasureInfo{{Checker: "liveness", Name: "stuck", Unit: results.UnitMS, Chart: results.ChartInDoubt}}}
	tests := []struct {
		name      string
		r         *results.Results
		want, not []string
	}{
		{"lock named like a bank", tinyRun("message-bank", lock, []string{"cycle", "acquire"}, map[string]float64{"takeover": 900, "recovery_ms_p50": 3}),
			[]string{`id="lock-recovery"`, "TTL 1s", "takeover", "900 ms"}, []string{`id="txn-phases"`, "TTL 7s", "recovery ms p50"}},
		{"saga phases", tinyRun("x", saga, []string{"transfer", "read", "local", "forward", "compensate"}, map[string]float64{"stuck": 40}),
			[]string{`id="txn-phases"`, `id="txn-doubt"`, ">local<", ">forward<", ">compensate<", "40 ms"}, []string{`id="lock-recovery"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page := renderString(t, tt.r)
			assertPage(t, page, tt.want, tt.not)
		})
	}
}

// A results.json written before workload_info existed still renders the
// same charts: the fallback (legacyInfo) reads the kind from the bank's
// "transfer" kind and units from "_ms" in measure names.
func TestRenderLegacyResults(t *testing.T) {
	tests := []struct {
		name      string
		spec      fixtureSpec
		kind      string
		want, not []string
	}{
		{"lock", lockFixture(), results.KindLock, []string{`id="lock-recovery"`, "TTL 500ms"}, []string{`id="txn-phases"`}},
		{"bank", txnFixture(), results.KindTxn, []string{`id="txn-phases"`, `id="txn-doubt"`}, []string{`id="lock-recovery"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.legacy = true
			res, ops := buildFixture(tt.spec)
			if res.WorkloadInfo != nil {
				t.Fatal("legacy fixture carries workload_info")
			}
			info := legacyInfo(res)
			if info.Kind != tt.kind || info.Headline != tt.spec.headline() {
				t.Errorf("legacyInfo kind %q headline %q, want %q %q", info.Kind, info.Headline, tt.kind, tt.spec.headline())
			}
			var buf bytes.Buffer
			if err := Render(&buf, NewRun(res, ops)); err != nil {
				t.Fatal(err)
			}
			page := buf.String()
			assertPage(t, page, tt.want, tt.not)
		})
	}
}

func TestOpKindsFollowTheWorkloadOrder(t *testing.T) {
	r := tinyRun("x", &results.WorkloadInfo{Ops: []string{"transfer", "prepare", "commit"}}, []string{"commit", "zeta", "transfer", "prepare"}, nil)
	if got, want := opKinds(r), []string{"transfer", "prepare", "commit", "zeta"}; !slices.Equal(got, want) {
		t.Errorf("opKinds = %v, want %v", got, want)
	}
}

// An implementation results.json marks untested under faults shows an
// UNTESTED badge, never a green pass, and the banner says so; a tested one
// keeps its ✓.
func TestRenderUntestedImplementation(t *testing.T) {
	r := tinyRun("counter", nil, []string{"cycle"}, nil)
	r.Impls[0].Faults = &results.FaultCoverage{Nodes: []string{"pg-1"}, PerNode: map[string]int{"pg-1": 0},
		Untested: "no fault hit pg-1, the only node it uses"}
	r.Impls[1].Faults = &results.FaultCoverage{Nodes: []string{"redis-1"}, PerNode: map[string]int{"redis-1": 3}, OpsInside: 120}
	pg, err := buildPage(NewRun(r, nil))
	if err != nil {
		t.Fatal(err)
	}
	if pg.BannerCls != "untested" || !strings.Contains(pg.Banner, "UNTESTED under faults: a") {
		t.Errorf("banner %q (%s), want it to name a as untested", pg.Banner, pg.BannerCls)
	}
	for _, row := range pg.Matrix {
		label := row.Cells[0].Label
		switch row.Impl {
		case "a":
			if label != "UNTESTED" || row.Untested == "" {
				t.Errorf("a: cell %q, untested %q; want UNTESTED", label, row.Untested)
			}
		case "b":
			if label != "✓" {
				t.Errorf("b: cell %q, want ✓", label)
			}
		}
	}
	page := renderString(t, r)
	for _, w := range []string{`id="coverage"`, "no fault hit pg-1, the only node it uses", `class="pill v-untested"`, "redis-1 3"} {
		if !strings.Contains(page, w) {
			t.Errorf("page lacks %q", w)
		}
	}
	// A real violation still leads the banner, which also names the untested one.
	r.Verdicts[1].Valid = results.Invalid
	pg, err = buildPage(NewRun(r, nil))
	if err != nil {
		t.Fatal(err)
	}
	if pg.BannerCls != "bad" || !strings.Contains(pg.Banner, "Also UNTESTED under faults: a") {
		t.Errorf("banner %q (%s)", pg.Banner, pg.BannerCls)
	}
}

// The report's fault windows come from history.Pairer: two overlapping
// faults with the same spec end at their own heals (paired by id, not by
// spec text), and a fault never healed lasts to the end of the run.
func TestTraceFaultWindowsPairByID(t *testing.T) {
	ev := func(t int64, f, id string) history.Op {
		return history.Op{Time: t, Type: history.Info, Process: history.Nemesis, Impl: "a", F: f, Fault: "pause:redis-1",
			Nodes: []string{"redis-1"}, Attrs: map[string]string{"id": id, "kind": "pause"}}
	}
	ops := []history.Op{
		{Time: 0, Type: history.Invoke, Process: 1, Impl: "a", F: "cycle"},
		ev(10, history.FaultStart, "x"),
		ev(20, history.FaultStart, "y"),
		ev(30, history.FaultHeal, "y"),
		ev(40, history.FaultHeal, "x"),
		ev(50, history.FaultStart, "z"),
		{Time: 90, Type: history.OK, Process: 1, Impl: "a", F: "cycle"},
	}
	r := tinyRun("counter", nil, []string{"cycle"}, nil)
	run := NewRun(r, ops)
	got := run.Trace.Faults
	want := []results.FaultWindow{
		{ID: "x", Start: 10, End: 40}, {ID: "y", Start: 20, End: 30}, {ID: "z", Start: 50, End: 90},
	}
	if len(got) != len(want) {
		t.Fatalf("windows %+v, want %d", got, len(want))
	}
	for i, w := range want {
		if g := got[i]; g.ID != w.ID || g.Start != w.Start || g.End != w.End || g.Kind != "pause" || g.Impl != "a" {
			t.Errorf("window %d = %+v, want %+v", i, g, w)
		}
	}
}

// The comparison page shows UNTESTED too, for the run that says so.
func TestCompareShowsUntested(t *testing.T) {
	before := tinyRun("counter", nil, []string{"cycle"}, nil)
	after := tinyRun("counter", nil, []string{"cycle"}, nil)
	after.Impls[0].Faults = &results.FaultCoverage{Nodes: []string{"pg-1"}, Untested: "no fault hit pg-1"}
	var buf bytes.Buffer
	if err := CompareRuns(&buf, []*Run{NewRun(before, nil), NewRun(after, nil)}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if n := strings.Count(page, "UNTESTED under faults"); n != 1 {
		t.Errorf("comparison shows UNTESTED %d times, want once (a in the later run)", n)
	}
}

// The header says which faults the provider made possible and which it
// refused and why; a run without capabilities (older files) has no such line.
func TestRenderCapabilities(t *testing.T) {
	r := tinyRun("counter", &results.WorkloadInfo{Kind: results.KindLock, Headline: "cycle", Ops: []string{"cycle"}}, []string{"cycle"}, nil)
	if got := renderString(t, r); strings.Contains(got, "faults possible") {
		t.Errorf("a run without capabilities shows a capabilities line")
	}
	r.Provider = "external"
	r.Capabilities = &results.Capabilities{Possible: []string{"latency", "partition"},
		Refused:   map[string]string{"kill": "faultline does not own the process of external target redis-1"},
		Targets:   []string{"redis-1=10.0.0.5:6379"},
		KeyPrefix: "faultline:r1:", Schema: "faultline_r1"}
	got := renderString(t, r)
	for _, want := range []string{"faults possible: latency, partition", "<b>kill refused</b>: faultline does not own the process of external target redis-1",
		"targets redis-1=10.0.0.5:6379", "faultline:r1:", "faultline_r1"} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
