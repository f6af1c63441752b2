// Package recorder measures a run at little cost to the run: per-worker
// HdrHistograms per operation kind (merged at the end), and the history
// written as JSONL by one buffered writer goroutine.
package recorder

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
)

// History is the run's history sink: any goroutine may Log; one writer
// goroutine encodes the entries, in the order they were logged, to a
// history.Writer. Time is monotonic: nanoseconds since the run's start.
//
// History also tracks whether a fault is active (from the nemesis entries
// it sees), so that workers can split latencies inside / outside faults.
type History struct {
	start time.Time
	ch    chan history.Op
	stop  chan struct{} // closed by Close: stop accepting
	done  chan struct{} // closed by the writer when everything is written
	w     *history.Writer
	err   error // first write error (read after done)

	impl    atomic.Pointer[string] // stamped on entries without Impl
	active  atomic.Int32           // faults started and not yet healed
	faultMu sync.Mutex
	open    map[string]int // fault spec → open count (nemesis entries only)
	dropped atomic.Int64
	once    sync.Once
}

// flushEvery is how often the writer flushes its buffer while idle, so the
// file on disk trails the run by at most this much.
const flushEvery = 200 * time.Millisecond

// NewHistory starts the writer goroutine on w. start is the run's time zero.
func NewHistory(w io.Writer, start time.Time) *History {
	h := &History{
		start: start,
		ch:    make(chan history.Op, 1<<16),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		w:     history.NewWriter(w),
		open:  map[string]int{},
	}
	empty := ""
	h.impl.Store(&empty)
	go h.run()
	return h
}

// Start is the run's time zero.
func (h *History) Start() time.Time { return h.start }

// Now is the time since the run's start, in nanoseconds (monotonic).
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Since converts an instant into history time.
func (h *History) Since(t time.Time) int64 { return int64(t.Sub(h.start)) }

// SetImpl names the implementation whose phase is running: entries logged
// without Impl get it.
func (h *History) SetImpl(name string) { h.impl.Store(&name) }

// FaultActive reports whether a fault started and has not healed.
func (h *History) FaultActive() bool { return h.active.Load() > 0 }

// Log records op. Time 0 is replaced by Now; empty Impl by the current
// phase's. Nemesis entries (fault-start / fault-heal) update FaultActive.
// After Close, entries are dropped (and counted in Dropped).
func (h *History) Log(op history.Op) {
	if op.Time == 0 {
		op.Time = h.Now()
	}
	if op.Impl == "" {
		op.Impl = *h.impl.Load()
	}
	if op.Process == history.Nemesis {
		h.trackFault(op)
	}
	select {
	case <-h.stop:
		h.dropped.Add(1)
	default:
		select {
		case h.ch <- op:
		case <-h.stop:
			h.dropped.Add(1)
		}
	}
}

func (h *History) trackFault(op history.Op) {
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	switch op.F {
	case history.FaultStart:
		h.open[op.Fault]++
		h.active.Add(1)
	case history.FaultHeal:
		if h.open[op.Fault] > 0 {
			h.open[op.Fault]--
			h.active.Add(-1)
		}
	}
}

// Dropped is how many entries were logged after Close.
func (h *History) Dropped() int64 { return h.dropped.Load() }

func (h *History) run() {
	defer close(h.done)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	write := func(op history.Op) {
		if h.err != nil {
			return
		}
		if _, err := h.w.Write(op); err != nil {
			h.err = err
		}
	}
	for {
		select {
		case op := <-h.ch:
			write(op)
		case <-tick.C:
			if h.err == nil {
				h.err = h.w.Flush()
			}
		case <-h.stop:
			for {
				select {
				case op := <-h.ch:
					write(op)
				default:
					if h.err == nil {
						h.err = h.w.Flush()
					}
					return
				}
			}
		}
	}
}

// Close stops accepting entries, writes every entry logged before it,
// flushes, and returns the first write error. Call it after every producer
// has returned; it is idempotent.
func (h *History) Close() error {
	h.once.Do(func() { close(h.stop) })
	<-h.done
	return h.err
}
