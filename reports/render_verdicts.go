package reports

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/faultline-dev/faultline/bench/results"
)

// The report's verdict table, fault coverage, expected-verdict matrix and
// the counterexamples' history excerpts.

// untested is why impl was not tested under faults ("" when it was, or
// when results.json does not say).
func untested(r *results.Results, impl string) string {
	if ir := r.Impl(impl); ir != nil && ir.Faults != nil {
		return ir.Faults.Untested
	}
	return ""
}

func isMutant(r *results.Results, impl string) bool {
	for _, ir := range r.Impls {
		if ir.Name == impl {
			return ir.Mutant
		}
	}
	return false
}

func buildVerdicts(pg *page, run *Run) {
	r := run.Results
	info := describe(r)
	var bad, unknown, expected int
	seenIDs := map[int64]bool{}
	for vi, v := range r.Verdicts {
		row := verdictRow{Impl: v.Impl, Checker: v.Checker, Summary: v.Summary, Mutant: isMutant(r, v.Impl), N: v.Found(), Untested: untested(r, v.Impl)}
		for _, k := range sortedKeys(v.Measures) {
			row.Measures = append(row.Measures, kv{k, fmtMeasure(info, v.Checker, k, v.Measures[k])})
		}
		switch v.Valid {
		case results.Valid:
			row.Class, row.Label = "v-ok", "✓ valid"
			if row.Untested != "" {
				// Valid, but nothing broke on this implementation's nodes:
				// not a pass under faults.
				row.Class, row.Label = "v-untested", "UNTESTED under faults (valid without them)"
			}
		case results.Invalid:
			if row.Mutant {
				row.Class, row.Label = "v-exp", "✗ violated (mutant: expected)"
				expected++
			} else {
				row.Class, row.Label = "v-bad", "✗ violated"
				bad++
			}
		default:
			row.Class, row.Label = "v-unk", "? unknown"
			unknown++
		}
		shown := min(len(v.Violations), maxViolationsShown)
		for i, x := range v.Violations[:shown] {
			id := fmt.Sprintf("v-%d-%d", vi, i)
			if i == 0 {
				row.Link = "#" + id
			}
			pg.Violations = append(pg.Violations, violationView{
				ID: id, Impl: v.Impl, Checker: v.Checker, Kind: x.Kind, Description: x.Description,
				Processes: joinInts(x.Processes), Keys: strings.Join(x.Keys, ", "), Tokens: strings.Join(x.Tokens, ", "),
				Time: x.Time, Fault: faultAt(run, x), Expected: row.Mutant,
				Indexes: indexLinks(run, x.Indexes), Lines: excerpt(run, x.Indexes, seenIDs), HaveHistory: run.Trace != nil,
			})
		}
		if shown > 0 && v.Found() > shown {
			// counterexamples past the cap, stored or only counted
			pg.Violations[len(pg.Violations)-1].More = v.Found() - shown
		}
		pg.Verdicts = append(pg.Verdicts, row)
	}
	buildMatrix(pg)
	buildCoverage(pg, r)
	var untestedImpls []string
	for _, ir := range r.Impls {
		if ir.Faults != nil && ir.Faults.Untested != "" && !ir.Mutant {
			untestedImpls = append(untestedImpls, ir.Name)
		}
	}
	switch {
	case len(r.Verdicts) == 0:
		pg.Banner, pg.BannerCls = "No checker verdicts in this run (benchmark only).", "unk"
	case bad > 0:
		pg.Banner, pg.BannerCls = fmt.Sprintf("Safety violated: %d checker verdict(s) failed on implementations that should be safe.", bad), "bad"
	case len(untestedImpls) > 0:
		pg.Banner, pg.BannerCls = fmt.Sprintf("UNTESTED under faults: %s — no fault reached the nodes they use, so their valid verdicts say nothing about failures (see Fault coverage).", strings.Join(untestedImpls, ", ")), "untested"
	case unknown > 0:
		pg.Banner, pg.BannerCls = fmt.Sprintf("No proven violation, but %d verdict(s) are unknown: only indeterminate operations could explain the anomaly.", unknown), "unk"
	case expected > 0:
		pg.Banner, pg.BannerCls = fmt.Sprintf("Every safe implementation passed; the %d failing verdict(s) are mutants being caught, as they should be.", expected), "ok"
	default:
		pg.Banner, pg.BannerCls = fmt.Sprintf("All %d checker verdicts valid.", len(r.Verdicts)), "ok"
	}
	if bad > 0 && len(untestedImpls) > 0 {
		pg.Banner += fmt.Sprintf(" Also UNTESTED under faults: %s.", strings.Join(untestedImpls, ", "))
	}
}

// buildCoverage lists, per implementation, the faults that hit its nodes
// (ImplResult.Faults; nothing for files without it).
func buildCoverage(pg *page, r *results.Results) {
	for _, ir := range r.Impls {
		fc := ir.Faults
		if fc == nil {
			continue
		}
		var per []string
		for _, n := range sortedKeys(fc.PerNode) {
			per = append(per, fmt.Sprintf("%s %d", n, fc.PerNode[n]))
		}
		pg.Coverage = append(pg.Coverage, coverageRow{Impl: ir.Name, Nodes: strings.Join(fc.Nodes, ", "), PerNode: strings.Join(per, ", "),
			OpsInside: fc.OpsInside, Untested: fc.Untested})
	}
}

// buildMatrix lays the verdicts out as implementations × checkers.
func buildMatrix(pg *page) {
	idx := map[string]int{}
	rows := map[string]int{}
	for _, v := range pg.Verdicts {
		if _, ok := idx[v.Checker]; !ok {
			idx[v.Checker] = len(pg.Checkers)
			pg.Checkers = append(pg.Checkers, v.Checker)
		}
		if _, ok := rows[v.Impl]; !ok {
			rows[v.Impl] = len(pg.Matrix)
			pg.Matrix = append(pg.Matrix, matrixRow{Impl: v.Impl, Mutant: v.Mutant, Untested: v.Untested})
		}
	}
	for i := range pg.Matrix {
		pg.Matrix[i].Cells = make([]matrixCell, len(pg.Checkers))
		for j := range pg.Matrix[i].Cells {
			pg.Matrix[i].Cells[j] = matrixCell{Class: "", Label: "–", Title: "not checked"}
		}
	}
	for _, v := range pg.Verdicts {
		c := matrixCell{Class: v.Class, Title: v.Summary, Link: v.Link}
		switch v.Class {
		case "v-ok":
			c.Label = "✓"
		case "v-untested":
			c.Label, c.Title = "UNTESTED", "valid, but untested under faults: "+v.Untested
		case "v-unk":
			c.Label = "?"
		default:
			c.Label = fmt.Sprintf("✗ %d", v.N)
		}
		pg.Matrix[rows[v.Impl]].Cells[idx[v.Checker]] = c
	}
}

func faultAt(run *Run, v results.Violation) string {
	if v.Fault != "" {
		return v.Fault
	}
	var active []string
	for _, f := range run.faults() {
		if v.Time >= f.Start && v.Time <= f.End {
			active = append(active, f.Fault)
		}
	}
	if len(active) == 0 {
		return "none"
	}
	return strings.Join(active, ", ") + " (from fault windows)"
}

func indexLinks(run *Run, idx []int64) []indexLink {
	out := make([]indexLink, 0, len(idx))
	for i, x := range idx {
		l := indexLink{Index: x}
		if run.Trace != nil && i < maxIndexesPerViolation {
			if _, ok := run.Trace.Excerpt[x]; ok {
				l.Href = fmt.Sprintf("#h-%d", x)
			}
		}
		out = append(out, l)
	}
	return out
}

// indexPrefix is the index field at the start of a history line: the
// excerpt shows it in its own column.
var indexPrefix = regexp.MustCompile(`^\{"index":-?[0-9]+,`)

// excerpt returns the history lines around idx; each line's anchor id is
// given only once per page (the first excerpt showing it).
func excerpt(run *Run, idx []int64, seen map[int64]bool) []histLine {
	if run.Trace == nil || len(idx) == 0 {
		return nil
	}
	hit := map[int64]bool{}
	want := map[int64]bool{}
	for i, x := range idx {
		if i >= maxIndexesPerViolation {
			break
		}
		hit[x] = true
		for k := x - excerptContext; k <= x+excerptContext; k++ {
			if _, ok := run.Trace.Excerpt[k]; ok {
				want[k] = true
			}
		}
	}
	keys := make([]int64, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []histLine
	for i, k := range keys {
		if i > 0 && k != keys[i-1]+1 {
			out = append(out, histLine{Gap: true, GapComment: fmt.Sprintf("… %d lines …", k-keys[i-1]-1)})
		}
		l := histLine{Index: k, Text: indexPrefix.ReplaceAllString(run.Trace.Excerpt[k], "{"), Hit: hit[k]}
		if !seen[k] {
			seen[k] = true
			l.ID = fmt.Sprintf("h-%d", k)
		}
		out = append(out, l)
	}
	return out
}
