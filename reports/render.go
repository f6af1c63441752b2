package reports

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/reports/gate"
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
