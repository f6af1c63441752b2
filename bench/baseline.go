package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
)

// WithBaseline returns impls with the baseline implementation of the
// workload (workload.Baseliner: the bank's single-db) first when some
// implementation names one the run does not list, so that every protocol's
// cost is a ratio measured in the same run on the same servers. added is
// the implementation added ("" if none).
func WithBaseline(wl workload.Workload, impls []string) (out []string, added string) {
	b, ok := wl.(workload.Baseliner)
	if !ok {
		return impls, ""
	}
	for _, impl := range impls {
		base := b.Baseline(impl)
		if base != "" && !slices.Contains(impls, base) && slices.Contains(workload.ImplNames(wl), base) {
			return append([]string{base}, impls...), base
		}
	}
	return impls, ""
}

// consumesTopology says whether the run's faults may leave its replicated
// topology changed for the next phase (a failover swaps the roles; the old
// primary rejoins only once healed): no baseline phase is added before the
// implementations asked for, so their phases meet the topology as started.
func (c Config) consumesTopology() bool {
	return c.Topology != "" && (len(c.Faults) > 0 || len(c.Nemesis) > 0 || c.Opts["inject-failover"] != "")
}

// AddRatios fills ImplResult.Baseline and Ratio for every implementation
// whose baseline ran in the same run, on the headline kind: "throughput"
// (impl ÷ baseline: below 1 is slower) and "p50", "p99", "mean" latency
// (impl ÷ baseline: above 1 is slower).
func AddRatios(res *results.Results, wl workload.Workload) {
	b, ok := wl.(workload.Baseliner)
	if !ok || len(wl.Kinds()) == 0 {
		return
	}
	kind := wl.Kinds()[0]
	byName := map[string]results.ImplResult{}
	for _, ir := range res.Impls {
		byName[ir.Name] = ir
	}
	for i := range res.Impls {
		ir := &res.Impls[i]
		base, ok := byName[b.Baseline(ir.Name)]
		if !ok || base.Name == ir.Name {
			continue
		}
		ir.Baseline = base.Name
		ir.Ratio = map[string]float64{}
		s, bs := ir.Ops[kind], base.Ops[kind]
		for name, pair := range map[string][2]float64{
			"throughput": {s.Throughput, bs.Throughput},
			"p50":        {s.P50, bs.P50},
			"p99":        {s.P99, bs.P99},
			"mean":       {s.Mean, bs.Mean},
		} {
			if pair[1] > 0 {
				ir.Ratio[name] = pair[0] / pair[1]
			}
		}
	}
}

// WritePhases prints, for a workload with a baseline (the bank), one line
// per implementation: headline throughput and latency with their ratios
// against the baseline, the p99 of every phase kind that has data, the
// in-doubt and blocked counts, and every verdict. Other workloads print
// nothing.
func WritePhases(w io.Writer, r *results.Results) {
	wl, err := workload.Lookup(r.Workload)
	if err != nil {
		return
	}
	if _, ok := wl.(workload.Baseliner); !ok || len(wl.Kinds()) < 2 {
		return
	}
	kind := wl.Kinds()[0]
	var phases []string
	for _, k := range wl.Kinds()[1:] {
		for _, ir := range r.Impls {
			if ir.Ops[k].OK > 0 {
				phases = append(phases, k)
				break
			}
		}
	}
	ratio := func(ir results.ImplResult, k string) string {
		if v, ok := ir.Ratio[k]; ok {
			return fmt.Sprintf("%.2f×", v)
		}
		return "-"
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "implementation\t" + kind + "s/s\tvs base\tp50\tp99\tvs base\t"
	for _, p := range phases {
		head += p + " p99\t"
	}
	head += "in-doubt\tblocked\t"
	fmt.Fprintln(tw, head)
	for _, ir := range r.Impls {
		st := ir.Ops[kind]
		name := ir.Name
		if ir.Baseline == "" && slices.ContainsFunc(r.Impls, func(o results.ImplResult) bool { return o.Baseline == ir.Name }) {
			name += " (baseline)"
		}
		line := fmt.Sprintf("%s\t%.0f\t%s\t%s\t%s\t%s\t", name, st.Throughput, ratio(ir, "throughput"),
			FormatMicros(st.P50), FormatMicros(st.P99), ratio(ir, "p99"))
		for _, p := range phases {
			line += FormatMicros(ir.Ops[p].P99) + "\t"
		}
		line += fmt.Sprintf("%d\t%d\t", ir.Counters["in-doubt"], ir.Counters["blocked"])
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	for _, ir := range r.Impls {
		var vs []string
		for _, v := range r.Verdicts {
			if v.Impl == ir.Name {
				vs = append(vs, v.Checker+" "+validityWord(v.Valid))
			}
		}
		if len(vs) > 0 {
			fmt.Fprintf(w, "  %s: %s\n", ir.Name, strings.Join(vs, ", "))
		}
	}
}
