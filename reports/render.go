package reports

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/reports/gate"
	"gonum.org/v1/plot/plotter"
)

//go:embed assets
var assets embed.FS

// Rendering bounds: a report of a huge run stays a few megabytes.
const (
	maxViolationsShown     = 25 // per verdict
	maxIndexesPerViolation = 12
	excerptContext         = 4 // history lines either side of each index
)

var tmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"us":    gate.FormatMicros,
	"sec":   func(ns int64) string { return fmtSecNS(ns) },
	"rate":  func(x float64) string { return strconv.FormatFloat(x, 'f', 0, 64) },
	"pct":   fmtPct,
	"join":  strings.Join,
	"ints":  joinInts[int],
	"delta": deltaClass,
	"dur":   func(f faultRow) int64 { return f.End - f.Start },
}).ParseFS(assets, "assets/*.tmpl"))

func css() template.CSS {
	b, err := assets.ReadFile("assets/style.css")
	if err != nil {
		panic(err) // embedded at build time
	}
	return template.CSS(b)
}

// WriteHTML loads the run saved in dir and writes dir/report.html.
func WriteHTML(dir string) error {
	run, err := Load(dir)
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, ReportFile), func(w io.Writer) error { return Render(w, run) })
}

// Render writes run as one self-contained HTML page: no external reference,
// charts inline as SVG.
func Render(w io.Writer, run *Run) error {
	if run == nil || run.Results == nil {
		return fmt.Errorf("render report: run has no results")
	}
	pg, err := buildPage(run)
	if err != nil {
		return err
	}
	return execute(w, "report.html.tmpl", pg)
}

func execute(w io.Writer, name string, data any) error {
	var buf bytes.Buffer
	if err := tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	// The page must work offline and carry no URL at all; user-supplied
	// text (config, errors) may contain one: neutralise it visibly-alike.
	out := bytes.ReplaceAll(buf.Bytes(), []byte("http://"), []byte("http&#58;//"))
	out = bytes.ReplaceAll(out, []byte("https://"), []byte("https&#58;//"))
	_, err := w.Write(out)
	return err
}

func writeFile(path string, fn func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := fn(&buf); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ---- view model ------------------------------------------------------------

type kv struct{ K, V string }

type chart struct {
	ID, Title, Help string
	SVG             template.HTML
	Note            string
}

type verdictRow struct {
	Impl, Checker, Summary string
	Mutant                 bool
	// Untested is why the implementation was not tested under faults
	// (ImplResult.Faults.Untested): its valid verdicts show UNTESTED.
	Untested     string
	Class, Label string
	N            int
	Link         string
	Measures     []kv
}

type histLine struct {
	Index      int64
	ID         string
	Text       string
	Hit, Gap   bool
	GapComment string
}

type violationView struct {
	ID, Impl, Checker     string
	Kind, Description     string
	Processes             string
	Keys, Tokens          string
	Time                  int64
	Fault                 string
	Indexes               []indexLink
	Lines                 []histLine
	Expected, HaveHistory bool
	More                  int
}

type indexLink struct {
	Index int64
	Href  string
}

type opRow struct {
	Impl     string
	Mutant   bool
	Op       string
	S        results.OpStats
	Errors   string
	Ratio    string
	RowSpan  int
	FirstRow bool
}

type inoutRow struct {
	Impl, Op    string
	Out, In     results.Percentiles
	P99Change   float64
	HasOut, Has bool
}

type measureRow struct {
	Impl, Name, Value string
}

// matrixRow is one implementation's verdicts, one cell per checker.
type matrixRow struct {
	Impl     string
	Mutant   bool
	Untested string
	Cells    []matrixCell
}

// coverageRow is what the faults did to one implementation's nodes.
type coverageRow struct {
	Impl, Nodes, PerNode string
	OpsInside            int
	Untested             string
}

type matrixCell struct {
	Class, Label, Title, Link string
}

type page struct {
	Checkers   []string
	Matrix     []matrixRow
	Coverage   []coverageRow
	Title      string
	CSS        template.CSS
	R          *results.Results
	Started    string
	Config     []kv
	Versions   []kv
	Banner     string
	BannerCls  string
	Verdicts   []verdictRow
	Violations []violationView
	Ops        []opRow
	Counters   []measureRow
	Pct        []chart
	Timeline   []chart
	Faults     []faultRow
	Roles      []roleRow
	Failovers  []failoverRow
	InOut      []inoutRow
	InOutChart chart
	Txn        []chart
	TxnNote    string
	Locks      []chart
	LockNote   string
	Measures   []measureRow
	Notes      []string
	Lines      int64
	Generated  string
	PathNote   string
}

// roleRow is one role sample of a replicated topology; failoverRow one
// failover (ImplResult.Roles, ImplResult.Failovers).
type roleRow struct{ Impl, Time, Why, Roles string }

type failoverRow struct{ Impl, Fault, Lost, Old, New, Promotion, Failover string }

type faultRow struct {
	Fault, Kind, Nodes, Impl string
	Start, End               int64
}

func buildPage(run *Run) (*page, error) {
	r := run.Results
	pg := &page{
		Title: "faultline run " + r.RunID, CSS: css(), R: r,
		Started: fmtStarted(r.Started), Config: flatten(r.Config), Versions: sortedKV(r.Versions),
	}
	pg.PathNote = map[string]string{
		"direct":  "clients talked to the servers directly: latencies are the servers' own",
		"proxied": "clients went through Toxiproxy: every latency includes the proxy hop",
	}[r.Path]
	if r.Interrupted {
		pg.Notes = append(pg.Notes, "This run was interrupted: it shows what was done until then.")
	}
	pg.Notes = append(pg.Notes, r.Notes...)
	if run.Trace != nil {
		pg.Lines = run.Trace.Lines
		if n := run.Trace.Unbucketed; n > 0 {
			pg.Notes = append(pg.Notes, fmt.Sprintf("%d operations completed more than %s after the start: they are drawn but not counted in the throughput charts.",
				n, time.Duration(maxBuckets*Bucket).Round(time.Minute)))
		}
	} else {
		pg.Notes = append(pg.Notes, "This run has no "+history.FileName+" or "+HistoryFile+": latency-over-time charts and history excerpts are not shown.")
	}
	buildVerdicts(pg, run)
	buildFailovers(pg, r)
	buildOps(pg, r)
	if err := buildPercentiles(pg, r); err != nil {
		return nil, err
	}
	if err := buildTimeline(pg, run); err != nil {
		return nil, err
	}
	if err := buildInOut(pg, r); err != nil {
		return nil, err
	}
	if err := buildTxn(pg, r); err != nil {
		return nil, err
	}
	if err := buildLocks(pg, r); err != nil {
		return nil, err
	}
	return pg, nil
}

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

// fmtMeasure prints a verdict measure with the unit results.json declares
// for it (none when undeclared).
func fmtMeasure(info *results.WorkloadInfo, checker, name string, x float64) string {
	switch m := info.Measure(checker, name); {
	case m == nil:
	case m.Unit == results.UnitMS:
		return fmtNum(x) + " ms"
	case m.Unit == results.UnitRatio:
		return strconv.FormatFloat(x*100, 'f', 1, 64) + "%"
	}
	return fmtNum(x)
}

func fmtSecNS(ns int64) string {
	return strconv.FormatFloat(float64(ns)/1e9, 'f', 3, 64) + " s"
}

// fmtPct prints a relative change: +12%, or ×35 when the value grew more
// than threefold (a percentage that large reads poorly).
func fmtPct(x float64) string {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		return "–"
	case x >= 2:
		return fmt.Sprintf("×%.3g", x+1)
	}
	return fmt.Sprintf("%+.0f%%", x*100)
}

func deltaClass(x float64) string {
	switch {
	case math.IsNaN(x):
		return ""
	case x > 0.1:
		return "worse"
	case x < -0.1:
		return "better"
	}
	return ""
}

func fmtNum(x float64) string {
	if x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return strconv.FormatInt(int64(x), 10)
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

func joinInts[T int | int64](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatInt(int64(x), 10)
	}
	return strings.Join(s, ", ")
}

func fmtStarted(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func flatten(m map[string]any) []kv {
	var out []kv
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, k := range sortedKeys(x) {
				walk(strings.TrimPrefix(prefix+"."+k, "."), x[k])
			}
		case string:
			out = append(out, kv{prefix, x})
		default:
			b, err := json.Marshal(x)
			if err != nil {
				b = []byte(fmt.Sprint(x))
			}
			out = append(out, kv{prefix, string(b)})
		}
	}
	walk("", m)
	return out
}

func sortedKV(m map[string]string) []kv {
	out := make([]kv, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, kv{k, m[k]})
	}
	return out
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

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
