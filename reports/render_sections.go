package reports

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/bench/results"
	"gonum.org/v1/plot/plotter"
)

// The report's measurement sections: operations, percentiles, timeline,
// inside/outside faults, workload measures, topology and failovers.

func buildOps(pg *page, r *results.Results) {
	info := describe(r)
	order := opKinds(r)
	for _, ir := range r.Impls {
		var kinds []string
		for _, k := range order {
			if _, ok := ir.Ops[k]; ok {
				kinds = append(kinds, k)
			}
		}
		for i, op := range kinds {
			st := ir.Ops[op]
			row := opRow{Impl: ir.Name, Mutant: ir.Mutant, Op: op, S: st, FirstRow: i == 0, RowSpan: len(kinds)}
			var errs []string
			for _, k := range sortedKeys(st.Errors) {
				errs = append(errs, fmt.Sprintf("%s %d", k, st.Errors[k]))
			}
			row.Errors = strings.Join(errs, ", ")
			if i == 0 && ir.Baseline != "" {
				var rs []string
				for _, k := range sortedKeys(ir.Ratio) {
					rs = append(rs, fmt.Sprintf("%s ×%.2f", k, ir.Ratio[k]))
				}
				row.Ratio = "vs " + ir.Baseline + ": " + strings.Join(rs, ", ")
			}
			pg.Ops = append(pg.Ops, row)
		}
		for _, k := range sortedKeys(ir.Counters) {
			pg.Counters = append(pg.Counters, measureRow{ir.Name, k, strconv.FormatInt(ir.Counters[k], 10)})
		}
	}
	for _, v := range r.Verdicts {
		for _, k := range sortedKeys(v.Measures) {
			pg.Measures = append(pg.Measures, measureRow{v.Impl, v.Checker + " · " + k, fmtMeasure(info, v.Checker, k, v.Measures[k])})
		}
	}
}

func buildPercentiles(pg *page, r *results.Results) error {
	for _, op := range opKinds(r) {
		var ss []series
		for i, ir := range r.Impls {
			st, ok := ir.Ops[op]
			if !ok {
				continue
			}
			lbl := ir.Name
			if ir.Mutant {
				lbl += " (mutant)"
			}
			ss = append(ss, series{Label: lbl, Color: colorAt(i), Dashed: ir.Mutant, XYs: quantileCurve(st)})
		}
		svg, err := percentileChart("latency percentiles of "+op, ss)
		if err != nil {
			return err
		}
		if svg == "" {
			continue
		}
		pg.Pct = append(pg.Pct, chart{
			ID: "pct-" + op, Title: "Latency by percentile: " + op, SVG: svg,
		})
	}
	return nil
}

func buildTimeline(pg *page, run *Run) error {
	if run.Trace == nil {
		return nil
	}
	faults := run.faults()
	names := make([]string, 0, len(run.Trace.Impls))
	for _, ir := range run.Results.Impls {
		if _, ok := run.Trace.Impls[ir.Name]; ok {
			names = append(names, ir.Name)
		}
	}
	for _, n := range sortedKeys(run.Trace.Impls) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, name := range names {
		it := run.Trace.Impls[name]
		var ir *results.ImplResult
		for i := range run.Results.Impls {
			if run.Results.Impls[i].Name == name {
				ir = &run.Results.Impls[i]
			}
		}
		var fs []results.FaultWindow
		for _, f := range faults {
			if f.Impl == "" || f.Impl == name {
				fs = append(fs, f)
			}
		}
		svg, err := timelineChart("latency and throughput over time of "+name, it, ir, fs, chartW, timelineH)
		if err != nil {
			return err
		}
		var total int64
		for _, n := range it.Completed {
			total += n
		}
		note := fmt.Sprintf("%d of %d operations drawn", len(it.Points), total)
		if int64(len(it.Points)) < total {
			note += ": every fail and info (or a uniform sample when there are thousands), a uniform sample of ok ones, and the 200 slowest"
		}
		pg.Timeline = append(pg.Timeline, chart{
			ID: "time-" + name, Title: "Over time: " + name, SVG: svg, Note: note,
		})
	}
	for _, f := range faults {
		pg.Faults = append(pg.Faults, faultRow{Fault: f.Fault, Kind: f.Kind, Nodes: strings.Join(f.Nodes, ", "), Impl: f.Impl, Start: f.Start, End: f.End})
	}
	return nil
}

func buildInOut(pg *page, r *results.Results) error {
	var cats []string
	var s [4]series
	s[0] = series{Label: "p50 outside faults", Color: rgb(0xA0CBE8)}
	s[1] = series{Label: "p50 inside faults", Color: rgb(0xFFBE7D)}
	s[2] = series{Label: "p99 outside faults", Color: rgb(0x4E79A7)}
	s[3] = series{Label: "p99 inside faults", Color: rgb(0xE15759)}
	for _, ir := range r.Impls {
		for _, op := range sortedKeys(ir.InsideFaults) {
			in := ir.InsideFaults[op]
			out, hasOut := ir.OutsideFaults[op]
			row := inoutRow{Impl: ir.Name, Op: op, In: in, Out: out, HasOut: hasOut, Has: true, P99Change: math.NaN()}
			if hasOut && out.P99 > 0 {
				row.P99Change = (in.P99 - out.P99) / out.P99
			}
			pg.InOut = append(pg.InOut, row)
			cats = append(cats, ir.Name+"\n"+op)
			i := float64(len(cats) - 1)
			s[0].XYs = append(s[0].XYs, plotter.XY{X: i, Y: out.P50 / 1000})
			s[1].XYs = append(s[1].XYs, plotter.XY{X: i, Y: in.P50 / 1000})
			s[2].XYs = append(s[2].XYs, plotter.XY{X: i, Y: out.P99 / 1000})
			s[3].XYs = append(s[3].XYs, plotter.XY{X: i, Y: in.P99 / 1000})
		}
	}
	if len(cats) == 0 {
		return nil
	}
	if len(cats) > 12 { // keep the bars readable: the table has the rest
		cats = cats[:12]
	}
	svg, err := barChart("percentiles inside vs outside faults", "latency", cats, s[:], true, refLine{}, chartW, chartH)
	if err != nil {
		return err
	}
	pg.InOutChart = chart{ID: "inout", Title: "Inside vs outside faults", SVG: svg,
		Help: "Each group compares operations that started while a fault was active (warm colours) with those that did not (cool colours). A robust implementation keeps the pairs close; a big jump of the dark red bar means the fault shows up directly in the tail your users see."}
	return nil
}

// measureChart draws, per implementation, the verdict measures that
// results.json declares (WorkloadInfo.Measures) in milliseconds for the
// chart named chartID.
func measureChart(r *results.Results, chartID, id, title, help string, ref refLine) (chart, bool, error) {
	info := describe(r)
	names := map[string]bool{}
	vals := map[string]map[string]float64{}
	for _, v := range r.Verdicts {
		for k, x := range v.Measures {
			m := info.Measure(v.Checker, k)
			if m == nil || m.Chart != chartID || m.Unit != results.UnitMS {
				continue
			}
			names[k] = true
			if vals[v.Impl] == nil {
				vals[v.Impl] = map[string]float64{}
			}
			vals[v.Impl][k] = x
		}
	}
	if len(names) == 0 {
		return chart{}, false, nil
	}
	cats := sortedKeys(names)
	rank := func(k string) int {
		for i, s := range []string{"p50", "p90", "p99", "p999", "max"} {
			if strings.HasSuffix(k, s) {
				return i
			}
		}
		return 9
	}
	sort.SliceStable(cats, func(i, j int) bool { return rank(cats[i]) < rank(cats[j]) })
	var ss []series
	for i, ir := range r.Impls {
		m, ok := vals[ir.Name]
		if !ok {
			continue
		}
		s := series{Label: ir.Name, Color: colorAt(i)}
		for j, c := range cats {
			y, ok := m[c]
			if !ok {
				y = math.NaN()
			}
			s.XYs = append(s.XYs, plotter.XY{X: float64(j), Y: y})
		}
		ss = append(ss, s)
	}
	pretty := make([]string, len(cats))
	for i, c := range cats {
		pretty[i] = strings.NewReplacer("_ms_", " ", "_ms", "", "_", " ").Replace(c)
	}
	svg, err := barChart(title, "time", pretty, ss, true, ref, chartW, 230)
	if err != nil {
		return chart{}, false, err
	}
	return chart{ID: id, Title: title, Help: help, SVG: svg}, true, nil
}

func buildTxn(pg *page, r *results.Results) error {
	info := describe(r)
	if info.Kind != results.KindTxn {
		return nil
	}
	// The whole transfer, then each protocol phase some implementation ran.
	var phases []string
	for _, k := range append([]string{info.Headline}, info.Phases...) {
		for _, ir := range r.Impls {
			if _, ok := ir.Ops[k]; ok && k != "" && !slices.Contains(phases, k) {
				phases = append(phases, k)
				break
			}
		}
	}
	if len(phases) == 0 {
		return nil
	}
	var s50, s99 []series
	for i, ir := range r.Impls {
		a := series{Label: ir.Name + " p50", Color: withAlpha(colorAt(i), 0.5)}
		b := series{Label: ir.Name + " p99", Color: colorAt(i)}
		for j, ph := range phases {
			st, ok := ir.Ops[ph]
			y50, y99 := math.NaN(), math.NaN()
			if ok {
				y50, y99 = st.P50/1000, st.P99/1000
			}
			a.XYs = append(a.XYs, plotter.XY{X: float64(j), Y: y50})
			b.XYs = append(b.XYs, plotter.XY{X: float64(j), Y: y99})
		}
		s50, s99 = append(s50, a), append(s99, b)
	}
	var ss []series
	for i := range s50 {
		ss = append(ss, s50[i], s99[i])
	}
	svg, err := barChart("per-phase latency", "latency", phases, ss, true, refLine{}, chartW, chartH)
	if err != nil {
		return err
	}
	pg.Txn = append(pg.Txn, chart{ID: "txn-phases", Title: "Transactions: latency per phase", SVG: svg,
		Help: "How long each phase of a transaction takes, median (light) and p99 (dark). The phase that dominates is where a coordinator spends its time; a prepare or commit that grows under faults means participants wait on each other."})
	c, ok, err := measureChart(r, results.ChartInDoubt, "txn-doubt", "Transactions: in-doubt and blocking time",
		"How long transactions stayed in doubt (prepared but not yet decided) and how long their rows stayed locked. Long bars mean other transfers were blocked by a transaction nobody could finish — the classic cost of two-phase commit when the coordinator fails.",
		refLine{})
	if err != nil {
		return err
	}
	if ok {
		pg.Txn = append(pg.Txn, c)
	} else {
		pg.TxnNote = "No in-doubt time was measured in this run (no checker reported an in-doubt or blocking measure)."
	}
	c, ok, err = measureChart(r, results.ChartDelivery, "txn-delivery", "Messaging: commit-to-apply delay",
		"How long after its transaction committed a message was applied by the consumer (outbox). It grows with the relay's batching and with every fault that stops the relay or the stream.",
		refLine{})
	if err != nil {
		return err
	}
	if ok {
		pg.Txn = append(pg.Txn, c)
	}
	return nil
}

func buildLocks(pg *page, r *results.Results) error {
	if describe(r).Kind != results.KindLock {
		return nil
	}
	c, ok, err := measureChart(r, results.ChartRecovery, "lock-recovery", "Locks: recovery after a holder crash",
		"When a lock holder dies, how long until someone else can take the lock (measured by the liveness checker). It should sit close to the lease/TTL; far above it means the lock expires late, zero or far below it means it may be handed out while the old holder could still be working.",
		ttlLine(r))
	if err != nil {
		return err
	}
	if ok {
		pg.Locks = append(pg.Locks, c)
	} else {
		pg.LockNote = "No recovery time was measured in this run (no holder crash, or no liveness checker)."
	}
	return nil
}

// ttlLine is a reference line at the lock TTL: the "ttl" the runner writes
// in the config (a Go duration such as "1s").
func ttlLine(r *results.Results) refLine {
	x, ok := r.Config["ttl"].(string)
	if !ok {
		return refLine{}
	}
	if d, err := time.ParseDuration(x); err == nil && d > 0 {
		return refLine{Y: float64(d) / 1e6, Label: "TTL " + x}
	}
	return refLine{}
}

// ---- formatting --------------------------------------------------------------

// buildFailovers lists the topology roles over time and every failover
// (nothing for runs on independent nodes).
func buildFailovers(pg *page, r *results.Results) {
	for _, ir := range r.Impls {
		if ir.Topology == "" {
			continue
		}
		for _, rs := range ir.Roles {
			var parts []string
			for _, n := range sortedKeys(rs.Roles) {
				parts = append(parts, n+" "+rs.Roles[n])
			}
			pg.Roles = append(pg.Roles, roleRow{Impl: ir.Name + " (" + ir.Topology + ")", Time: fmtSecNS(rs.Time), Why: rs.Why, Roles: strings.Join(parts, ", ")})
		}
		for _, f := range ir.Failovers {
			row := failoverRow{Impl: ir.Name, Fault: f.Fault, Lost: fmtSecNS(f.Lost), Old: f.Old, New: f.New, Promotion: "?", Failover: "no write got through"}
			if f.Promoted > 0 {
				row.Promotion = fmt.Sprintf("%.0f ms", f.PromotionMs)
			}
			if f.FirstWrite > 0 {
				row.Failover = fmt.Sprintf("%.0f ms", f.FailoverMs)
			}
			pg.Failovers = append(pg.Failovers, row)
		}
		if len(ir.Failovers) == 0 && len(ir.Roles) > 0 {
			pg.Failovers = append(pg.Failovers, failoverRow{Impl: ir.Name, Fault: "(none)", Promotion: "-", Failover: "-"})
		}
	}
}
