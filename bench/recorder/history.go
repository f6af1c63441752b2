// Package recorder measures a run at little cost to the run: per-worker
// HdrHistograms per operation kind (merged at the end), and the history
// written as JSONL by one buffered writer goroutine that takes the logged
// entries in batches.
package recorder

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
)

// History is the run's history sink: any goroutine may Log; one writer
// goroutine writes the entries, in the order they were logged, to a
// history.Writer. Time is monotonic: nanoseconds since the run's start.
//
// Log encodes its entry (history.AppendJSONTail, all but the index, on the
// logging goroutine's stack) and appends the bytes to a pending batch under
// a mutex; the writer numbers them as it writes them out. Pending entries
// are bytes, not Ops: an Op is a 200-byte struct of strings, and a batch of
// them cost three copies of it per entry, a clear, GC write barriers on
// every append and the GC's scan of the batch (BenchmarkCeilingRecord:
// about a quarter of what recording cost), where bytes cost one copy of
// the ~90 encoded ones and nothing to the GC. The writer takes the
// whole batch every batchEvery (or at once when it grows past batchKick):
// a logged entry costs an append, not a goroutine wake-up — with a channel,
// every entry woke the idle writer, which cost a 1-client PING loop 40% of
// its throughput on a busy 2-core machine (faultline ceiling). The batch is
// bounded (maxPending): a producer faster than the writer waits, as it did
// on a full channel.
//
// History also tracks whether a fault is active (from the nemesis entries
// it sees), so that workers can split latencies inside / outside faults.
type History struct {
	start time.Time
	w     *history.Writer
	err   error         // first write error (read after done)
	kick  chan struct{} // capacity 1: a batch is ready (or Close was called)
	done  chan struct{} // closed by the writer when everything is written

	mu      sync.Mutex
	space   *sync.Cond // signalled when the writer took the batch
	pending []byte     // logged entries, not yet taken by the writer: history.AppendJSONTail + '\n' each
	count   int        // entries in pending
	closed  bool

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

// Batching: the writer takes the pending entries every batchEvery, or as
// soon as batchKick are pending; Log waits while maxPending are.
// pendingCap is the initial room of a batch, in bytes (it grows as needed
// and is kept).
const (
	batchEvery = 5 * time.Millisecond
	batchKick  = 4096
	maxPending = 1 << 16
	pendingCap = 64 << 10
)

// NewHistory starts the writer goroutine on w. start is the run's time zero.
func NewHistory(w io.Writer, start time.Time) *History {
	h := &History{
		start:   start,
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		w:       history.NewWriter(w),
		open:    map[string]int{},
		pending: make([]byte, 0, pendingCap),
	}
	h.space = sync.NewCond(&h.mu)
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
func (h *History) Log(op history.Op) { h.log(&op) }

// LogPaced is Log for a producer that logs many entries in a row (the
// resource's log at the end of a phase, 251,000 entries after a
// 1,000,000-operation run): it waits while one batch (batchKick entries)
// is pending, where Log waits only at maxPending, so that the entries
// waiting for the writer, each with its attributes, stay one batch.
func (h *History) LogPaced(op history.Op) { h.logUpTo(&op, batchKick) }

// log is Log without copying op twice (a 200-byte struct). It reports
// whether it had to wait for the writer (a full batch).
func (h *History) log(op *history.Op) (waited bool) { return h.logUpTo(op, maxPending) }

// logUpTo is log waiting while limit entries are pending.
func (h *History) logUpTo(op *history.Op, limit int) (waited bool) {
	if op.Time == 0 {
		op.Time = h.Now()
	}
	if op.Impl == "" {
		op.Impl = *h.impl.Load()
	}
	if op.Process == history.Nemesis {
		h.trackFault(*op)
	}
	// Encoded here, outside the lock, into a buffer on the stack (an entry
	// is ~90 bytes; a longer one grows onto the heap).
	var buf [256]byte
	line := append(history.AppendJSONTail(buf[:0], op), '\n')
	h.mu.Lock()
	for h.count >= limit && !h.closed {
		h.space.Wait()
		waited = true
	}
	if h.closed {
		h.mu.Unlock()
		h.dropped.Add(1)
		return waited
	}
	h.pending = append(h.pending, line...)
	h.count++
	n := h.count
	h.mu.Unlock()
	if n == batchKick {
		h.wake()
	}
	return waited
}

// wake tells the writer to take the batch now.
func (h *History) wake() {
	select {
	case h.kick <- struct{}{}:
	default:
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
	tick := time.NewTicker(batchEvery)
	defer tick.Stop()
	lastFlush := time.Now()
	spare := make([]byte, 0, pendingCap)
	for {
		select {
		case <-h.kick:
		case <-tick.C:
		}
		h.mu.Lock()
		batch, closed := h.pending, h.closed
		h.pending, h.count = spare[:0], 0
		h.space.Broadcast()
		h.mu.Unlock()
		if h.err == nil {
			if _, err := h.w.WriteTails(batch); err != nil {
				h.err = err
			}
		}
		spare = batch
		if h.err == nil && (closed || time.Since(lastFlush) >= flushEvery) {
			h.err = h.w.Flush()
			lastFlush = time.Now()
		}
		if closed {
			return
		}
	}
}

// Close stops accepting entries, writes every entry logged before it,
// flushes, and returns the first write error. Call it after every producer
// has returned; it is idempotent.
func (h *History) Close() error {
	h.once.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.space.Broadcast()
		h.mu.Unlock()
		h.wake()
	})
	<-h.done
	return h.err
}
