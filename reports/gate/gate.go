// Package gate is the CI regression gate: it compares a run's results.json
// against a committed baseline and says, metric by metric, whether latency
// or throughput regressed past a tolerance, and whether any safety violation
// appeared that the expected-verdict matrix does not allow.
//
// The CLI maps the outcome to exit codes: Report.Pass false → 1, an error
// wrapping ErrBadInput → 2, pass → 0.
package gate

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/faultline-dev/faultline/bench/results"
)

// ErrBadInput marks results that cannot be compared: another schema or
// workload, nothing to compare, implementations that differ. The CLI exits 2
// on it, as on a *results.ReadError (a file that cannot be read).
var ErrBadInput = errors.New("bad input")

// Row is one line of the gate table.
type Row struct {
	// Metric names what is compared: "redis-setnx/cycle p99" or
	// "redis-unsafe safety:mutual-exclusion".
	Metric string
	Impl   string
	Op     string // operation kind; empty for safety rows
	Stat   Stat   // empty for safety rows
	// Baseline and Now are the raw values (µs, ops/s).
	Baseline float64
	Now      float64
	// BaselineNorm and NowNorm are the machine-normalised values when the
	// report is Normalised (latency ÷ the run's Go PING p50, throughput ×
	// it, in ops per PING-time); NaN otherwise.
	BaselineNorm, NowNorm float64
	// RawChange is (Now-Baseline)/Baseline of the raw values.
	RawChange float64
	// Change is the gated change: of the normalised values when the report
	// is Normalised, else RawChange; NaN when it does not apply.
	Change float64
	Limit  string // "≤ +25%", "≥ -15%", "none allowed"…
	Pass   bool
	Note   string // why a row was not gated, or what failed
	Safety bool   // a safety (verdict) row rather than a performance row
}

// Report is the outcome of Gate.
type Report struct {
	Baseline, Current string // run ids
	Rows              []Row
	// Normalised: both runs carry a calibration and the performance rows
	// are gated on machine-normalised values. BaselineUnit and CurrentUnit
	// are each run's Go PING p50 (µs); Why says why the report is not
	// normalised.
	Normalised                bool
	BaselineUnit, CurrentUnit float64
	Why                       string
}

// Pass reports whether every row passed.
func (r Report) Pass() bool { return len(r.Failures()) == 0 }

// Failures returns the rows that failed.
func (r Report) Failures() []Row {
	var out []Row
	for _, row := range r.Rows {
		if !row.Pass {
			out = append(out, row)
		}
	}
	return out
}

// MinSamples is the fewest baseline samples an operation kind needs for its
// latency percentiles to be gated; below it the row is shown but not gated.
const MinSamples = 50

// MutantsAllowed returns the default allowed function: violations are
// allowed for implementations marked Mutant in cur (they exist to be caught)
// and for nobody else.
func MutantsAllowed(cur *results.Results) func(impl, checker string) bool {
	mutant := map[string]bool{}
	for _, ir := range cur.Impls {
		mutant[ir.Name] = ir.Mutant
	}
	return func(impl, _ string) bool { return mutant[impl] }
}

// Gate compares current against baseline. Performance rows are produced for
// every (implementation, operation kind, stat in tol) of the baseline; an
// implementation or operation missing from current fails. A verdict that is
// invalid in current fails unless allowed(impl, checker) says it is expected
// (nil allowed means MutantsAllowed(current)). Unknown verdicts are shown
// and pass. The error (wrapping ErrBadInput) is only for inputs that cannot
// be compared.
func Gate(baseline, current *results.Results, tol Tolerance, allowed func(impl, checker string) bool) (Report, error) {
	return GateOps(baseline, current, tol, allowed, nil)
}

// GateOps is Gate limited to the operation kinds in ops (nil = all): the
// other kinds' rows are shown, marked not gated. A short run on a busy
// machine gates its headline kind (cycle) only: the sub-operations' tails
// (one round trip, p99 well under a millisecond) double with one
// scheduler time slice.
func GateOps(baseline, current *results.Results, tol Tolerance, allowed func(impl, checker string) bool, ops []string) (Report, error) {
	if baseline == nil || current == nil {
		return Report{}, fmt.Errorf("%w: gate needs both a baseline and a current results file", ErrBadInput)
	}
	for _, x := range []struct {
		name string
		r    *results.Results
	}{{"baseline", baseline}, {"results", current}} {
		if x.r.Schema != results.Schema {
			return Report{}, fmt.Errorf("%w: %s (run %q) has schema %d, expected schema %d", ErrBadInput, x.name, x.r.RunID, x.r.Schema, results.Schema)
		}
	}
	if baseline.Workload != "" && current.Workload != "" && baseline.Workload != current.Workload {
		return Report{}, fmt.Errorf("%w: baseline is workload %q but results are workload %q: gate runs of the same scenario", ErrBadInput, baseline.Workload, current.Workload)
	}
	if err := comparable(baseline, current); err != nil {
		return Report{}, err
	}
	if allowed == nil {
		allowed = MutantsAllowed(current)
	}
	rep := Report{Baseline: baseline.RunID, Current: current.RunID,
		BaselineUnit: baseline.Calibration.Unit(), CurrentUnit: current.Calibration.Unit()}
	switch {
	case rep.BaselineUnit > 0 && rep.CurrentUnit > 0:
		rep.Normalised = true
	case rep.BaselineUnit <= 0 && rep.CurrentUnit <= 0:
		rep.Why = "neither run carries a calibration"
	case rep.BaselineUnit <= 0:
		rep.Why = "the baseline carries no calibration (refresh it with `make baseline`)"
	default:
		rep.Why = "the results carry no calibration (no Redis node in the run?)"
	}
	cur := map[string]results.ImplResult{}
	for _, ir := range current.Impls {
		cur[ir.Name] = ir
	}
	for _, bi := range baseline.Impls {
		ci, ok := cur[bi.Name]
		for _, op := range sortedKeys(bi.Ops) {
			bs := bi.Ops[op]
			var cs results.OpStats
			var have bool
			if ok {
				cs, have = ci.Ops[op]
			}
			for _, l := range tol {
				row := Row{
					Metric: fmt.Sprintf("%s/%s %s", bi.Name, op, l.Stat),
					Impl:   bi.Name, Op: op, Stat: l.Stat,
					Baseline: l.Stat.Of(bs), Change: math.NaN(), RawChange: math.NaN(), Limit: l.String(), Pass: true,
					BaselineNorm: math.NaN(), NowNorm: math.NaN(),
				}
				if have {
					row.Now = l.Stat.Of(cs)
				}
				if rep.Normalised {
					row.BaselineNorm = l.Stat.Normalise(row.Baseline, rep.BaselineUnit)
					row.NowNorm = l.Stat.Normalise(row.Now, rep.CurrentUnit)
				}
				switch {
				case ops != nil && !slices.Contains(ops, op):
					row.Note = "not gated: operation kind not in --ops " + strings.Join(ops, ",")
					if !have {
						row.Now, row.NowNorm = math.NaN(), math.NaN()
					}
				case !have:
					row.Pass, row.Now, row.NowNorm, row.Note = false, math.NaN(), math.NaN(), "missing from results"
				case l.Stat.IsLatency() && bs.Count < MinSamples:
					row.Note = fmt.Sprintf("not gated: baseline has %d samples (< %d)", bs.Count, MinSamples)
				case row.Baseline <= 0:
					row.Note = "not gated: baseline is 0"
				default:
					row.RawChange = (row.Now - row.Baseline) / row.Baseline
					row.Change = row.RawChange
					if rep.Normalised {
						row.Change = (row.NowNorm - row.BaselineNorm) / row.BaselineNorm
					}
					if !l.Allows(row.Change) {
						row.Pass = false
						row.Note = fmt.Sprintf("regression: %s %s by %s, limit %s", row.Metric, l.Stat.Direction(row.Change), fmtPct(row.Change), l.String())
						if rep.Normalised {
							row.Note += fmt.Sprintf(" (machine-normalised; raw %s → %s, %s)", l.Stat.Format(row.Baseline), l.Stat.Format(row.Now), fmtPct(row.RawChange))
						}
					}
				}
				rep.Rows = append(rep.Rows, row)
			}
		}
	}
	for _, v := range current.Verdicts {
		if v.Valid == results.Valid {
			continue
		}
		row := Row{
			Metric: fmt.Sprintf("%s safety:%s", v.Impl, v.Checker),
			Impl:   v.Impl, Safety: true, Pass: true, Change: math.NaN(), RawChange: math.NaN(),
			BaselineNorm: math.NaN(), NowNorm: math.NaN(),
			Baseline: math.NaN(), Now: float64(v.Found()), Limit: "none allowed",
		}
		if allowed(v.Impl, v.Checker) {
			row.Limit = "allowed"
		}
		switch v.Valid {
		case results.Invalid:
			if !allowed(v.Impl, v.Checker) {
				row.Pass = false
				row.Note = fmt.Sprintf("safety violation: %s found %d violation(s) in %s", v.Checker, v.Found(), v.Impl)
			} else {
				row.Note = "expected: violation allowed (mutant or expected-verdict matrix)"
			}
		case results.Unknown:
			row.Note = "unknown: only indeterminate operations could explain it; not failed"
		default:
			row.Note = fmt.Sprintf("unrecognised validity %q; not failed", v.Valid)
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep, nil
}

// comparable checks that baseline and current have something to compare
// (at least one implementation with at least one operation kind) and the
// same implementations; the error names what is missing on each side.
func comparable(baseline, current *results.Results) error {
	for _, x := range []struct {
		name string
		r    *results.Results
	}{{"baseline", baseline}, {"results", current}} {
		n := 0
		for _, ir := range x.r.Impls {
			n += len(ir.Ops)
		}
		if n == 0 {
			return fmt.Errorf("%w: %s (run %q) has nothing to compare: no implementation with measured operations", ErrBadInput, x.name, x.r.RunID)
		}
	}
	names := func(r *results.Results) map[string]bool {
		m := map[string]bool{}
		for _, ir := range r.Impls {
			m[ir.Name] = true
		}
		return m
	}
	b, c := names(baseline), names(current)
	var onlyBase, onlyCur []string
	for n := range b {
		if !c[n] {
			onlyBase = append(onlyBase, n)
		}
	}
	for n := range c {
		if !b[n] {
			onlyCur = append(onlyCur, n)
		}
	}
	if len(onlyBase)+len(onlyCur) == 0 {
		return nil
	}
	sort.Strings(onlyBase)
	sort.Strings(onlyCur)
	var parts []string
	if len(onlyBase) > 0 {
		parts = append(parts, "only in the baseline: "+strings.Join(onlyBase, ", "))
	}
	if len(onlyCur) > 0 {
		parts = append(parts, "only in the results: "+strings.Join(onlyCur, ", "))
	}
	return fmt.Errorf("%w: the baseline (run %q) and the results (run %q) measured different implementations (%s): gate runs of the same scenario, or refresh the baseline",
		ErrBadInput, baseline.RunID, current.RunID, strings.Join(parts, "; "))
}

// WriteTable prints the report as an aligned table (metric, baseline, now,
// change, limit, result) followed by one line per failure and a verdict
// line.
//
// A Normalised report says so first and shows, per row, the raw values and
// their change, then the normalised values and their change, which is the
// one gated.
func (r Report) WriteTable(w io.Writer) error {
	if r.Normalised {
		fmt.Fprintf(w, "gate on machine-normalised figures: latency ÷ the run's Go PING p50, throughput × it (ops per PING-time);\n"+
			"  machine reference: baseline %s, now %s (%s): a machine that is uniformly slower does not fail the gate.\n"+
			"  Raw values are shown for reference; CHANGE (normalised) is what the limit applies to.\n",
			FormatMicros(r.BaselineUnit), FormatMicros(r.CurrentUnit), fmtPct((r.CurrentUnit-r.BaselineUnit)/r.BaselineUnit))
	} else if r.Why != "" {
		fmt.Fprintf(w, "gate on raw figures (not machine-normalised: %s)\n", r.Why)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if r.Normalised {
		fmt.Fprintf(tw, "METRIC\tBASELINE\tNOW\tRAW CHANGE\tBASELINE (norm)\tNOW (norm)\tCHANGE (norm, gated)\tLIMIT\tRESULT\n")
	} else {
		fmt.Fprintf(tw, "METRIC\tBASELINE\tNOW\tCHANGE\tLIMIT\tRESULT\n")
	}
	for _, row := range r.Rows {
		res := "pass"
		if !row.Pass {
			res = "FAIL"
		}
		var base, now string
		if row.Safety {
			base, now = "-", fmt.Sprintf("%d violations", int(row.Now))
		} else {
			base, now = row.Stat.Format(row.Baseline), row.Stat.Format(row.Now)
		}
		change := "-"
		if !math.IsNaN(row.Change) {
			change = fmtPct(row.Change)
		}
		switch {
		case !row.Pass:
		case strings.HasPrefix(row.Note, "not gated"):
			res = "not gated (" + strings.TrimPrefix(row.Note, "not gated: ") + ")"
		case row.Safety && row.Limit == "allowed":
			res = "pass (expected violation)"
		case row.Safety:
			res = "pass (unknown verdict)"
		}
		if r.Normalised {
			raw, nb, nn := "-", "-", "-"
			if !row.Safety {
				raw, nb, nn = fmtPct(row.RawChange), row.Stat.FormatNorm(row.BaselineNorm), row.Stat.FormatNorm(row.NowNorm)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Metric, base, now, raw, nb, nn, change, row.Limit, res)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", row.Metric, base, now, change, row.Limit, res)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fails := r.Failures()
	for _, f := range fails {
		fmt.Fprintf(w, "FAIL %s: %s\n", f.Metric, f.Note)
	}
	var err error
	if len(fails) == 0 {
		_, err = fmt.Fprintf(w, "gate: PASS (%d checks, run %s against baseline %s)\n", len(r.Rows), r.Current, r.Baseline)
	} else {
		_, err = fmt.Fprintf(w, "gate: FAIL (%d of %d checks failed, run %s against baseline %s)\n", len(fails), len(r.Rows), r.Current, r.Baseline)
	}
	return err
}

func fmtPct(x float64) string {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%+.1f%%", x*100)
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
