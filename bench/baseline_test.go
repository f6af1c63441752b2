package bench

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
)

func TestWithBaseline(t *testing.T) {
	bank, err := workload.Lookup(workload.BankName)
	if err != nil {
		t.Fatal(err)
	}
	counter, err := workload.Lookup("counter")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		wl    workload.Workload
		impls []string
		want  []string
		added string
	}{
		{bank, []string{"2pc", "tcc"}, []string{"single-db", "2pc", "tcc"}, "single-db"},
		{bank, []string{"2pc", "single-db"}, []string{"2pc", "single-db"}, ""},
		{bank, []string{"single-db"}, []string{"single-db"}, ""},
		{counter, []string{"redis-setnx"}, []string{"redis-setnx"}, ""},
	} {
		got, added := WithBaseline(c.wl, c.impls)
		if !slices.Equal(got, c.want) || added != c.added {
			t.Errorf("WithBaseline(%s, %v) = %v, %q; want %v, %q", c.wl.Name(), c.impls, got, added, c.want, c.added)
		}
	}
}

func TestAddRatiosAndPhases(t *testing.T) {
	bank, _ := workload.Lookup(workload.BankName)
	op := func(thr, p50, p99 float64) results.OpStats {
		return results.OpStats{OK: 10, Throughput: thr, Percentiles: results.Percentiles{Count: 10, P50: p50, P99: p99, Mean: p50}}
	}
	res := &results.Results{Workload: workload.BankName, Impls: []results.ImplResult{
		{Name: "single-db", Ops: map[string]results.OpStats{"transfer": op(1000, 500, 1000), "local": op(1000, 400, 900)}},
		{Name: "2pc", Ops: map[string]results.OpStats{"transfer": op(250, 2000, 5000), "prepare": op(250, 900, 3000)},
			Counters: map[string]int64{"in-doubt": 2, "blocked": 7}},
	}, Verdicts: []results.Verdict{{Checker: "conservation", Impl: "2pc", Valid: results.Valid}}}
	AddRatios(res, bank)
	two := res.Impls[1]
	if two.Baseline != "single-db" || math.Abs(two.Ratio["throughput"]-0.25) > 1e-9 || two.Ratio["p99"] != 5 || res.Impls[0].Baseline != "" {
		t.Fatalf("ratios: %+v", res.Impls)
	}
	var b bytes.Buffer
	WritePhases(&b, res)
	out := b.String()
	for _, want := range []string{"single-db (baseline)", "0.25×", "5.00×", "prepare p99", "local p99", "2pc: conservation ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("phase summary lacks %q:\n%s", want, out)
		}
	}
}
