package reports

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"path/filepath"
	"strings"

	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/reports/gate"
)

// WriteCompare loads the runs saved in dirs and writes the comparison page
// to out (a file path; "dir/compare.html" is a good choice).
func WriteCompare(out string, dirs []string) error {
	return writeFile(out, func(w io.Writer) error { return Compare(w, dirs) })
}

// Compare writes a self-contained page comparing the runs saved in dirs
// (two or more, e.g. before and after a change): verdicts side by side,
// every percentile chart with one line per run and implementation, a
// benchstat-like table of changes against the first run, and each run's
// latency-over-time chart side by side.
func Compare(w io.Writer, dirs []string) error {
	if len(dirs) < 2 {
		return fmt.Errorf("compare needs at least two run directories, got %d", len(dirs))
	}
	runs := make([]*Run, len(dirs))
	for i, d := range dirs {
		r, err := Load(d)
		if err != nil {
			return fmt.Errorf("compare: %w", err)
		}
		runs[i] = r
	}
	return CompareRuns(w, runs)
}

type cmpRun struct {
	Label, Dir string
	R          *results.Results
	Started    string
	Cls        string
}

type cmpVerdict struct {
	Impl, Checker string
	Cells         []cmpCell
}

type cmpCell struct{ Class, Label string }

type cmpStat struct {
	Impl, Op, Stat string
	Cells          []cmpStatCell
}

type cmpStatCell struct {
	Val, Delta, Class string
	ShowDelta         bool
}

type cmpTimeRow struct {
	Impl  string
	Cells []chart
}

type cmpPage struct {
	Title    string
	CSS      template.CSS
	Runs     []cmpRun
	Verdicts []cmpVerdict
	Stats    []cmpStat
	Pct      []chart
	Time     []cmpTimeRow
}

// CompareRuns is Compare on loaded runs.
func CompareRuns(w io.Writer, runs []*Run) error {
	pg := &cmpPage{CSS: css()}
	var ids []string
	var rs []*results.Results
	for i, r := range runs {
		lbl := string(rune('A'+i%26)) + ": " + r.Results.RunID
		pg.Runs = append(pg.Runs, cmpRun{Label: lbl, Dir: filepath.Base(r.Dir), R: r.Results, Started: fmtStarted(r.Results.Started)})
		ids = append(ids, r.Results.RunID)
		rs = append(rs, r.Results)
	}
	pg.Title = "faultline comparison: " + strings.Join(ids, " vs ")

	// Verdicts: rows impl×checker, a column per run.
	type vk struct{ impl, checker string }
	var order []vk
	seen := map[vk]bool{}
	for _, r := range rs {
		for _, v := range r.Verdicts {
			k := vk{v.Impl, v.Checker}
			if !seen[k] {
				seen[k] = true
				order = append(order, k)
			}
		}
	}
	for _, k := range order {
		row := cmpVerdict{Impl: k.impl, Checker: k.checker}
		for _, r := range rs {
			c := cmpCell{Class: "v-unk", Label: "not run"}
			for _, v := range r.Verdicts {
				if v.Impl == k.impl && v.Checker == k.checker {
					switch v.Valid {
					case results.Valid:
						c = cmpCell{"v-ok", "✓ valid"}
						if untested(r, v.Impl) != "" {
							c = cmpCell{"v-untested", "UNTESTED under faults"}
						}
					case results.Invalid:
						c = cmpCell{"v-bad", fmt.Sprintf("✗ %d violation(s)", v.Found())}
						if isMutant(r, v.Impl) {
							c.Class = "v-exp"
						}
					default:
						c = cmpCell{"v-unk", "? unknown"}
					}
				}
			}
			row.Cells = append(row.Cells, c)
		}
		pg.Verdicts = append(pg.Verdicts, row)
	}

	// Implementations in first-seen order, one colour each across runs.
	var impls []string
	implSeen := map[string]bool{}
	for _, r := range rs {
		for _, ir := range r.Impls {
			if !implSeen[ir.Name] {
				implSeen[ir.Name] = true
				impls = append(impls, ir.Name)
			}
		}
	}
	colorOf := map[string]int{}
	for i, n := range impls {
		colorOf[n] = i
	}

	// Stats table, benchstat style: change vs the first run.
	for _, impl := range impls {
		for _, op := range opKinds(rs...) {
			for _, stat := range []string{"p50", "p99", "ops/s"} {
				row := cmpStat{Impl: impl, Op: op, Stat: stat}
				var base float64
				var any bool
				for ri, r := range rs {
					cell := cmpStatCell{Val: "–", Delta: "–", ShowDelta: ri > 0}
					st, ok := findOp(r, impl, op)
					if ok {
						any = true
						v := map[string]float64{"p50": st.P50, "p99": st.P99, "ops/s": st.Throughput}[stat]
						if stat == "ops/s" {
							cell.Val = fmt.Sprintf("%.0f", v)
						} else {
							cell.Val = gate.FormatMicros(v)
						}
						if ri == 0 {
							base = v
						} else if base > 0 {
							ch := (v - base) / base
							cell.Delta = fmtPct(ch)
							if stat == "ops/s" {
								ch = -ch
							}
							cell.Class = deltaClass(ch)
						}
					}
					row.Cells = append(row.Cells, cell)
				}
				if any {
					pg.Stats = append(pg.Stats, row)
				}
			}
		}
	}

	// Percentile charts: one per op kind; colour = implementation, dash = run.
	for _, op := range opKinds(rs...) {
		var ss []series
		for ri, r := range rs {
			for _, ir := range r.Impls {
				st, ok := ir.Ops[op]
				if !ok {
					continue
				}
				c := colorAt(colorOf[ir.Name])
				if ri > 1 {
					c = withAlpha(c, math.Max(0.4, 1-0.25*float64(ri-1)))
				}
				ss = append(ss, series{Label: fmt.Sprintf("%c %s", 'A'+ri%26, ir.Name), Color: c, Dashed: ri > 0, XYs: quantileCurve(st)})
			}
		}
		svg, err := percentileChart("latency percentiles of "+op+" by run", ss)
		if err != nil {
			return err
		}
		if svg != "" {
			pg.Pct = append(pg.Pct, chart{ID: "pct-" + op, Title: "Latency by percentile: " + op, SVG: svg,
				Help: "Same colour = same implementation; solid is run A, dashed the later run(s). A dashed line above its solid twin got slower at that percentile."})
		}
	}

	// Latency over time, runs side by side per implementation.
	for _, impl := range impls {
		row := cmpTimeRow{Impl: impl}
		var have bool
		for ri, run := range runs {
			c := chart{Title: pg.Runs[ri].Label}
			if run.Trace != nil {
				if it, ok := run.Trace.Impls[impl]; ok {
					var ir *results.ImplResult
					for i := range run.Results.Impls {
						if run.Results.Impls[i].Name == impl {
							ir = &run.Results.Impls[i]
						}
					}
					var fs []results.FaultWindow
					for _, f := range run.faults() {
						if f.Impl == "" || f.Impl == impl {
							fs = append(fs, f)
						}
					}
					svg, err := timelineChart(fmt.Sprintf("run %s: %s over time", run.Results.RunID, impl), it, ir, fs, pctW, 340)
					if err != nil {
						return err
					}
					c.SVG, have = svg, true
				}
			}
			if c.SVG == "" {
				c.Note = "no history for this implementation in this run"
			}
			row.Cells = append(row.Cells, c)
		}
		if have {
			pg.Time = append(pg.Time, row)
		}
	}
	return execute(w, "compare.html.tmpl", pg)
}

func findOp(r *results.Results, impl, op string) (results.OpStats, bool) {
	for _, ir := range r.Impls {
		if ir.Name == impl {
			st, ok := ir.Ops[op]
			return st, ok
		}
	}
	return results.OpStats{}, false
}
