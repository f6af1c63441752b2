package recorder

import (
	"context"
	"errors"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// Histogram range: 1 µs to 60 s, 3 significant digits. Values are µs.
const (
	lowestUS  = 1
	highestUS = 60_000_000
	sigFigs   = 3
)

// NewHistogram returns an empty histogram with faultline's range (µs).
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(lowestUS, highestUS, sigFigs)
}

// Stats collects one implementation phase's latencies and outcomes, per
// operation kind. Kinds are small integers: the index in the kinds slice
// given to NewStats (no map lookup on the hot path).
type Stats struct {
	kinds  []string
	h      *History
	warmup time.Time // operations that start before it are not counted

	mu      sync.Mutex
	workers []*Worker

	// The latency histograms are shared by the workers, a few shards of
	// them (worker i records into shard i % len), each made on its first
	// value: a 1 µs–60 s histogram at 3 significant figures is 139 KB, and
	// one set per worker (50 clients × 5 kinds × inside/outside faults) was
	// 70 MB whatever the run's length.
	shards [histShards]histShard
}

// histShards is how many sets of histograms the workers share. Recording
// holds a shard's lock for one RecordValue (tens of ns), against
// operations of tens of µs at least: a few shards keep it uncontended.
const histShards = 4

// histShard is one set of histograms: per kind, [0] outside faults, [1]
// inside; nil until its first value.
type histShard struct {
	mu   sync.Mutex
	hist [][2]*hdrhistogram.Histogram
	ok   []int64 // per kind, what hist holds: a Merge sees them agree
}

// NewStats makes a Stats for the given operation kinds. Operations that
// start before warmupEnd are recorded in the history but not in the stats.
func NewStats(h *History, kinds []string, warmupEnd time.Time) *Stats {
	return &Stats{kinds: kinds, h: h, warmup: warmupEnd}
}

// Kinds are the operation kinds, in index order.
func (s *Stats) Kinds() []string { return s.kinds }

// Worker is one goroutine's recorder: its error counts (one goroutine
// records; Stats.Merge may read them meanwhile, under mu), its shard of the
// shared latency histograms, and its process id and implementation for the
// history.
type Worker struct {
	s       *Stats
	h       *History
	Process int
	Impl    string
	shard   *histShard // its latency histograms and ok counts, shared (Stats.shards)
	// mu guards what follows against a Merge during the load (a
	// checkpoint): the recording goroutine is its only other user, so it
	// is uncontended but for one Merge per checkpoint interval.
	mu   sync.Mutex
	errs []map[string]int64
	// examples keeps the first full message of each error kind.
	examples []map[string]string
}

// Worker makes the recorder of one goroutine, starting as process.
func (s *Stats) Worker(process int, impl string) *Worker {
	w := &Worker{
		s: s, h: s.h, Process: process, Impl: impl,
		errs: make([]map[string]int64, len(s.kinds)),

		examples: make([]map[string]string, len(s.kinds)),
	}
	w.shard = &s.shards[uint(process)%histShards]
	for i := range w.errs {
		w.errs[i] = map[string]int64{}
		w.examples[i] = map[string]string{}
	}
	s.mu.Lock()
	s.workers = append(s.workers, w)
	s.mu.Unlock()
	return w
}

// Mark is the start of a timed operation.
type Mark struct {
	At     time.Time
	Inside bool // a fault was active when it started
}

// Mark starts timing now.
func (w *Worker) Mark() Mark { return Mark{At: time.Now(), Inside: w.h.FaultActive()} }

// MarkAt starts timing at an intended start (open loop: latency counts from
// when the operation should have started, correcting coordinated omission).
func (w *Worker) MarkAt(t time.Time) Mark { return Mark{At: t, Inside: w.h.FaultActive()} }

// Observe records the latency d of an ok operation of kind that started at
// m. It is the hot path: no allocation but a kind's first histogram in
// its shard, one lock (the shard's, shared by a few workers).
func (w *Worker) Observe(kind int, m Mark, d time.Duration) {
	if m.At.Before(w.s.warmup) {
		return
	}
	us := d.Microseconds()
	if us < lowestUS {
		us = lowestUS
	} else if us > highestUS {
		us = highestUS
	}
	in := 0
	if m.Inside {
		in = 1
	}
	sh := w.shard
	sh.mu.Lock()
	if sh.hist == nil {
		sh.hist = make([][2]*hdrhistogram.Histogram, len(w.s.kinds))
		sh.ok = make([]int64, len(w.s.kinds))
	}
	h := sh.hist[kind][in]
	if h == nil {
		h = NewHistogram()
		sh.hist[kind][in] = h
	}
	_ = h.RecordValue(us)
	sh.ok[kind]++
	sh.mu.Unlock()
}

// Count records a failed or indeterminate operation of kind, by error
// kind: the message normalised (NormalizeError), the first message of each
// kind kept as its example.
func (w *Worker) Count(kind int, m Mark, errMsg string) {
	if m.At.Before(w.s.warmup) {
		return
	}
	k := NormalizeError(errMsg)
	w.mu.Lock()
	if _, ok := w.examples[kind][k]; !ok && k != errMsg {
		w.examples[kind][k] = errMsg
	}
	w.errs[kind][k]++
	w.mu.Unlock()
}

// Done ends the operation started at m: ok operations are observed,
// others counted under errKind ("info" if empty for Info, "fail" for Fail).
// It returns the latency.
func (w *Worker) Done(kind int, m Mark, typ history.Type, errKind string) time.Duration {
	d := time.Since(m.At)
	w.record(kind, m, d, typ, errKind)
	return d
}

// record observes an ok operation or counts another under errKind.
func (w *Worker) record(kind int, m Mark, d time.Duration, typ history.Type, errKind string) {
	switch typ {
	case history.OK:
		w.Observe(kind, m, d)
	case history.Info:
		if errKind == "" {
			errKind = "info"
		}
		w.Count(kind, m, errKind)
	default:
		if errKind == "" {
			errKind = "fail"
		}
		w.Count(kind, m, errKind)
	}
}

// Call is an invoked operation waiting for its completion.
type Call struct {
	Kind int
	Mark
	t      int64  // Mark.At in history time (History.Now)
	f, key string // the invocation's, defaults of the completion
}

// Invoke logs op as an invocation by this worker's process and starts its
// timer. One clock read serves both the entry's time and the timer's start
// (the latency then includes the log's append, tens of ns against a round
// trip's tens of µs); only if the log had to wait for the writer (a full
// batch) is the timer started after it, so the wait is not counted. The
// clock read is History.Now's, monotonic only (one vDSO call where
// time.Now makes two, for the wall clock too): Mark.At is the run's start
// plus it.
func (w *Worker) Invoke(kind int, op history.Op) Call {
	t := w.h.Now()
	op.Type = history.Invoke
	op.Process = w.Process
	op.Impl = w.Impl
	op.Time = t
	if w.h.log(&op) {
		t = w.h.Now()
	}
	return Call{Kind: kind, Mark: Mark{At: w.h.start.Add(time.Duration(t)), Inside: w.h.FaultActive()}, t: t, f: op.F, key: op.Key}
}

// Complete logs the completion of c (typ OK, Fail or Info; op carries the
// result fields — F and Key default to the invocation's) and records its
// latency. The stats error kind is op.Error. One clock read (History.Now)
// gives both the latency and the entry's time.
func (w *Worker) Complete(c Call, typ history.Type, op history.Op) time.Duration {
	t := w.h.Now()
	d := time.Duration(t - c.t)
	w.record(c.Kind, c.Mark, d, typ, op.Error)
	if op.F == "" {
		op.F = c.f
	}
	if op.Key == "" {
		op.Key = c.key
	}
	op.Type = typ
	op.Process = w.Process
	op.Impl = w.Impl
	op.Time = t
	w.h.log(&op)
	return d
}

// ErrorKind names an error for the history and the stats: "timeout" for a
// deadline, "canceled" for a cancelled context, else the error's text
// (truncated to 200 bytes).
func ErrorKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// KindStats is one operation kind's merged measurements.
type KindStats struct {
	All, Inside, Outside *hdrhistogram.Histogram
	OK                   int64
	Errors               map[string]int64
	// Examples maps an error kind to one full message of that kind (only
	// kinds that differ from their message).
	Examples map[string]string
}

// Merge adds up every worker's histograms and counts, per kind name. It
// may run while the workers record (a checkpoint: each worker is paused
// only while its own figures are merged) or after they have returned (the
// phase's final figures).
func (s *Stats) Merge() map[string]*KindStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	ks := make([]*KindStats, len(s.kinds))
	for i := range ks {
		ks[i] = &KindStats{All: NewHistogram(), Inside: NewHistogram(), Outside: NewHistogram(), Errors: map[string]int64{}, Examples: map[string]string{}}
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for kind, hs := range sh.hist {
			if hs[0] != nil {
				ks[kind].Outside.Merge(hs[0])
			}
			if hs[1] != nil {
				ks[kind].Inside.Merge(hs[1])
			}
			ks[kind].OK += sh.ok[kind]
		}
		sh.mu.Unlock()
	}
	for _, w := range s.workers {
		w.mu.Lock()
		for i, k := range ks {
			for e, n := range w.errs[i] {
				k.Errors[e] += n
			}
			for e, msg := range w.examples[i] {
				if _, ok := k.Examples[e]; !ok {
					k.Examples[e] = msg
				}
			}
		}
		w.mu.Unlock()
	}
	out := make(map[string]*KindStats, len(s.kinds))
	for i, name := range s.kinds {
		k := ks[i]
		k.All.Merge(k.Outside)
		k.All.Merge(k.Inside)
		out[name] = k
	}
	return out
}

// Percentiles summarises h (µs).
func Percentiles(h *hdrhistogram.Histogram) results.Percentiles {
	if h.TotalCount() == 0 {
		return results.Percentiles{}
	}
	return results.Percentiles{
		Count: h.TotalCount(),
		P50:   float64(h.ValueAtQuantile(50)),
		P90:   float64(h.ValueAtQuantile(90)),
		P99:   float64(h.ValueAtQuantile(99)),
		P999:  float64(h.ValueAtQuantile(99.9)),
		Max:   float64(h.Max()),
		Mean:  h.Mean(),
	}
}

// Export copies h into the results schema, without its trailing empty
// buckets (Import restores them: a 1 µs–60 s histogram has ~50k buckets, and
// latencies fill the first few thousand).
func Export(h *hdrhistogram.Histogram) *results.Histogram {
	s := h.Export()
	n := len(s.Counts)
	for n > 0 && s.Counts[n-1] == 0 {
		n--
	}
	return &results.Histogram{
		LowestTrackableValue:  s.LowestTrackableValue,
		HighestTrackableValue: s.HighestTrackableValue,
		SignificantFigures:    s.SignificantFigures,
		Counts:                s.Counts[:n:n],
	}
}

// Import turns an exported histogram back into one (for reports and the gate).
func Import(r *results.Histogram) *hdrhistogram.Histogram {
	return hdrhistogram.Import(&hdrhistogram.Snapshot{
		LowestTrackableValue:  r.LowestTrackableValue,
		HighestTrackableValue: r.HighestTrackableValue,
		SignificantFigures:    r.SignificantFigures,
		Counts:                r.Counts,
	})
}

// OpStats turns merged measurements over a measured span into the results
// schema (throughput = ok per second of span).
func OpStats(k *KindStats, span time.Duration) results.OpStats {
	st := results.OpStats{
		OK:          k.OK,
		Count:       k.OK,
		Percentiles: Percentiles(k.All),
	}
	if len(k.Errors) > 0 {
		st.Errors = map[string]int64{}
		for e, n := range k.Errors {
			st.Errors[e] = n
			st.Count += n
		}
	}
	for e, msg := range k.Examples {
		if st.ErrorExamples == nil {
			st.ErrorExamples = map[string]string{}
		}
		st.ErrorExamples[e] = msg
	}
	if span > 0 {
		st.Throughput = float64(k.OK) / span.Seconds()
	}
	if k.All.TotalCount() > 0 {
		st.Histogram = Export(k.All)
	}
	return st
}
