// Package reports turns a saved run (results.json + history.jsonl) into
// report.html — one self-contained page with inline SVG charts drawn by
// gonum.org/v1/plot, no external reference of any kind — and into a
// before/after comparison page and Go benchmark lines for benchstat.
//
// Reports read saved results only: they never touch live nodes.
package reports

import (
	"container/heap"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"sort"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// File names inside a run directory.
const (
	ResultsFile = "results.json"
	// HistoryFile is the plain history of older runs; runs now write
	// history.FileName (zstd). Load reads either.
	HistoryFile = history.PlainFileName
	ReportFile  = "report.html"
)

// Run is one saved run, ready to render: its results and a bounded summary
// of its history (never the whole history, which can hold millions of
// lines).
type Run struct {
	// Dir is where the run was loaded from (empty for in-memory runs).
	Dir     string
	Results *results.Results
	// Trace is the history summary; nil when the run has no history.
	Trace *Trace
}

// Load reads dir/results.json (required; a bad file is a
// *results.ReadError) and streams the history, dir/history.jsonl.zst or
// (older runs) dir/history.jsonl (optional: a run
// without it renders without the time charts and history excerpts; a
// corrupt one is a *history.LineError naming the file and line).
func Load(dir string) (*Run, error) {
	res, err := results.Load(filepath.Join(dir, ResultsFile))
	if err != nil {
		return nil, err
	}
	run := &Run{Dir: dir, Results: res}
	path, err := history.Find(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return run, nil
	}
	var f *history.File
	if err == nil {
		f, err = history.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("open history of run %s: %w", dir, err)
	}
	defer f.Close()
	tr, err := readTrace(f.Reader, res)
	if err != nil {
		return nil, err
	}
	run.Trace = tr
	return run, nil
}

// NewRun builds a Run from in-memory results and history (tests, or a
// runner that still holds its history).
func NewRun(res *results.Results, ops []history.Op) *Run {
	s := newSummarizer(res)
	for i := range ops {
		line, _ := json.Marshal(&ops[i])
		s.add(&ops[i], line)
	}
	return &Run{Results: res, Trace: s.finish()}
}

// ReadTrace streams a history (plain JSONL or zstd) and summarises it for rendering:
// downsampled latency points, throughput per 10 ms, fault windows and the
// history lines around every violation. Memory stays bounded whatever the
// history's length. A bad line is a *history.LineError.
func ReadTrace(r io.Reader, res *results.Results) (*Trace, error) {
	rd, done, err := history.Decompress(r)
	if err != nil {
		return nil, &history.LineError{Line: 1, Err: err}
	}
	defer done()
	return readTrace(history.NewReader(rd), res)
}

func readTrace(rd *history.Reader, res *results.Results) (*Trace, error) {
	s := newSummarizer(res)
	for {
		line, err := rd.Line()
		if errors.Is(err, io.EOF) {
			return s.finish(), nil
		}
		if err != nil {
			return nil, err
		}
		op, err := decodeOp(line)
		if err != nil {
			return nil, rd.Errorf(rd.LineNumber(), err)
		}
		s.add(&op, line)
	}
}

// decodeOp decodes the fields the summary needs; nemesis lines (rare) are
// decoded fully.
func decodeOp(line []byte) (history.Op, error) {
	var lite struct {
		Index   int64        `json:"index"`
		Time    int64        `json:"time"`
		Type    history.Type `json:"type"`
		Process int          `json:"process"`
		Impl    string       `json:"impl"`
		F       string       `json:"f"`
	}
	if err := json.Unmarshal(line, &lite); err != nil {
		return history.Op{}, err
	}
	op := history.Op{Index: lite.Index, Time: lite.Time, Type: lite.Type, Process: lite.Process, Impl: lite.Impl, F: lite.F}
	if op.Process == history.Nemesis {
		op = history.Op{}
		err := json.Unmarshal(line, &op)
		return op, err
	}
	return op, nil
}

// Trace is the bounded summary of a history that the charts need.
type Trace struct {
	Lines  int64                 // history entries read
	Impls  map[string]*ImplTrace // by implementation name
	Faults []results.FaultWindow // from the history's nemesis events
	// Excerpt holds the history lines around violations, by index.
	Excerpt map[int64]string
	// Unbucketed counts operations too late for the throughput counts
	// (past maxBuckets).
	Unbucketed int64
}

// ImplTrace is one implementation's share of the history.
type ImplTrace struct {
	// Points is a sample of completed operations: every fail and info (up
	// to a bound), a uniform sample of ok ones and the slowest ok ones.
	Points []Point
	// Completed counts completed operations by type (ok/fail/info).
	Completed map[history.Type]int64
	// OK counts ok completions per operation kind per Bucket; Errors
	// counts fail+info completions per Bucket.
	OK     map[string][]int64
	Errors []int64
	// MinT and MaxT bound invocation and completion times (ns).
	MinT, MaxT int64
}

// Bucket is the resolution of the throughput counts.
const Bucket int64 = 10e6 // 10 ms

// maxBuckets bounds the throughput counts (about 5.8 hours of run): an
// operation later than that (a run that long, or a corrupt time) is drawn
// but not counted in the throughput, and Trace.Unbucketed says how many.
const maxBuckets = 1 << 21

// Point is one completed operation.
type Point struct {
	T       int64 // invocation time, ns since run start
	Latency int64 // ns
	Type    history.Type
	F       string
}

// Sampling bounds per implementation.
const (
	keepSlowest = 200
	// pointBudget is shared by all implementations, once for ok operations
	// and once for fail/info ones (every one kept up to the budget, then a
	// uniform sample): about 130 bytes of SVG per point keeps a report
	// under ~5 MB however long the run.
	pointBudget = 12000
)

type pendingKey struct {
	impl string
	proc int
}

type pending struct {
	t int64
	f string
}

type implAcc struct {
	tr      *ImplTrace
	okCap   int
	badCap  int
	ok      []Point
	okSeen  int64
	bad     []Point
	badSeen int64
	slow    slowHeap
}

type summarizer struct {
	res     *results.Results
	rng     *rand.Rand
	impls   map[string]*implAcc
	pending map[pendingKey]pending
	faults  history.Pairer
	tr      *Trace
	want    map[int64]bool
}

func newSummarizer(res *results.Results) *summarizer {
	s := &summarizer{
		res:     res,
		rng:     rand.New(rand.NewPCG(1, 2)),
		impls:   map[string]*implAcc{},
		pending: map[pendingKey]pending{},
		tr:      &Trace{Impls: map[string]*ImplTrace{}, Excerpt: map[int64]string{}},
		want:    map[int64]bool{},
	}
	if res != nil {
		for _, v := range res.Verdicts {
			for i, vi := range v.Violations {
				if i >= maxViolationsShown {
					break
				}
				for j, idx := range vi.Indexes {
					if j >= maxIndexesPerViolation {
						break
					}
					for k := idx - excerptContext; k <= idx+excerptContext; k++ {
						s.want[k] = true
					}
				}
			}
		}
	}
	return s
}

func (s *summarizer) implName(op *history.Op) string {
	if op.Impl != "" {
		return op.Impl
	}
	if s.res != nil && len(s.res.Impls) == 1 {
		return s.res.Impls[0].Name
	}
	return "(unnamed)"
}

func (s *summarizer) acc(name string) *implAcc {
	a := s.impls[name]
	if a == nil {
		n := 1
		if s.res != nil && len(s.res.Impls) > 0 {
			n = len(s.res.Impls)
		}
		a = &implAcc{
			tr:     &ImplTrace{Completed: map[history.Type]int64{}, OK: map[string][]int64{}, MinT: -1},
			okCap:  max(1000, min(5000, pointBudget/n)),
			badCap: max(1000, min(4000, pointBudget/n)),
		}
		s.impls[name] = a
		s.tr.Impls[name] = a.tr
	}
	return a
}

func (s *summarizer) add(op *history.Op, line []byte) {
	s.tr.Lines++
	if s.want[op.Index] {
		s.tr.Excerpt[op.Index] = string(line)
	}
	switch {
	case op.Process == history.Nemesis:
		s.faults.Add(op)
		return
	case op.Process < 0:
		return
	}
	name := s.implName(op)
	key := pendingKey{name, op.Process}
	if op.Type == history.Invoke {
		s.pending[key] = pending{t: op.Time, f: op.F}
		return
	}
	inv, ok := s.pending[key]
	if !ok {
		return // completion without invocation: nothing to measure
	}
	delete(s.pending, key)
	a := s.acc(name)
	tr := a.tr
	if tr.MinT < 0 || inv.t < tr.MinT {
		tr.MinT = inv.t
	}
	tr.MaxT = max(tr.MaxT, op.Time)
	tr.Completed[op.Type]++
	b := int(min(max(op.Time, 0)/Bucket, maxBuckets))
	if b == maxBuckets {
		s.tr.Unbucketed++
		b = -1
	}
	p := Point{T: inv.t, Latency: max(op.Time-inv.t, 0), Type: op.Type, F: inv.f}
	if op.Type == history.OK {
		if b >= 0 {
			tr.OK[inv.f] = grow(tr.OK[inv.f], b)
			tr.OK[inv.f][b]++
		}
		a.okSeen++
		a.ok = reservoir(s.rng, a.ok, a.okSeen, a.okCap, p)
		if len(a.slow) < keepSlowest {
			heap.Push(&a.slow, p)
		} else if p.Latency > a.slow[0].Latency {
			a.slow[0] = p
			heap.Fix(&a.slow, 0)
		}
		return
	}
	if b >= 0 {
		tr.Errors = grow(tr.Errors, b)
		tr.Errors[b]++
	}
	a.badSeen++
	a.bad = reservoir(s.rng, a.bad, a.badSeen, a.badCap, p)
}

func (s *summarizer) finish() *Trace {
	for _, a := range s.impls {
		pts := append(a.ok, a.bad...)
		seen := map[Point]bool{}
		for _, p := range pts {
			seen[p] = true
		}
		for _, p := range a.slow {
			if !seen[p] {
				pts = append(pts, p)
			}
		}
		sort.Slice(pts, func(i, j int) bool { return pts[i].T < pts[j].T })
		a.tr.Points = pts
		if a.tr.MinT < 0 {
			a.tr.MinT = 0
		}
	}
	var last int64 // a fault never healed lasts to the end
	for _, a := range s.impls {
		last = max(last, a.tr.MaxT)
	}
	for _, w := range s.faults.Windows() {
		end := w.End
		if !w.Healed {
			end = max(last, w.Start)
		}
		s.tr.Faults = append(s.tr.Faults, results.FaultWindow{ID: w.ID, Fault: w.Fault, Kind: w.Kind, Nodes: w.Nodes, Impl: w.Impl, Start: w.Start, End: end})
	}
	return s.tr
}

func reservoir(rng *rand.Rand, kept []Point, seen int64, capacity int, p Point) []Point {
	if len(kept) < capacity {
		return append(kept, p)
	}
	if j := rng.Int64N(seen); j < int64(capacity) {
		kept[j] = p
	}
	return kept
}

func grow(s []int64, i int) []int64 {
	if i < len(s) {
		return s
	}
	return append(s, make([]int64, i+1-len(s))...)
}

// slowHeap is a min-heap on latency keeping the slowest ok operations.
type slowHeap []Point

func (h slowHeap) Len() int           { return len(h) }
func (h slowHeap) Less(i, j int) bool { return h[i].Latency < h[j].Latency }
func (h slowHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *slowHeap) Push(x any)        { *h = append(*h, x.(Point)) }
func (h *slowHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// faults returns the run's fault windows: from results.json, or from the
// history when results carry none.
func (r *Run) faults() []results.FaultWindow {
	if len(r.Results.Faults) > 0 || r.Trace == nil {
		return r.Results.Faults
	}
	return r.Trace.Faults
}
