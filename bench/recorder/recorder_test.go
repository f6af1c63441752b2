package recorder

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
)

func TestHistoryKeepsEveryOpAndOrder(t *testing.T) {
	var buf bytes.Buffer
	h := NewHistory(&buf, time.Now())
	h.SetImpl("x")
	const workers, per = 8, 2000
	var wg sync.WaitGroup
	for p := range workers {
		wg.Go(func() {
			for i := range per {
				h.Log(history.Op{Process: p, F: "op", Value: history.Int(int64(i)), Type: history.Invoke})
			}
		})
	}
	wg.Wait()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	ops, err := history.ReadAll(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != workers*per {
		t.Fatalf("got %d ops, want %d", len(ops), workers*per)
	}
	next := make([]int64, workers)
	for i, op := range ops {
		if op.Index != int64(i) {
			t.Fatalf("op %d has index %d", i, op.Index)
		}
		if op.Impl != "x" || op.Time <= 0 {
			t.Fatalf("op %d not stamped: %+v", i, op)
		}
		if *op.Value != next[op.Process] {
			t.Fatalf("process %d: value %d out of order, want %d", op.Process, *op.Value, next[op.Process])
		}
		next[op.Process]++
	}
	h.Log(history.Op{F: "late"})
	if h.Dropped() != 1 {
		t.Fatalf("Dropped = %d after a Log past Close, want 1", h.Dropped())
	}
}

func TestFaultActiveTracksNemesisEntries(t *testing.T) {
	h := NewHistory(&bytes.Buffer{}, time.Now())
	defer h.Close()
	steps := []struct {
		f, fault string
		want     bool
	}{
		{history.FaultStart, "kill:redis-1", true},
		{history.FaultStart, "latency:all", true},
		{history.FaultHeal, "kill:redis-1", true},
		{history.FaultHeal, "never-started", true},
		{history.FaultHeal, "latency:all", false},
		{history.FaultHeal, "latency:all", false},
	}
	for i, s := range steps {
		h.Log(history.Op{Process: history.Nemesis, Type: history.Info, F: s.f, Fault: s.fault})
		if got := h.FaultActive(); got != s.want {
			t.Fatalf("step %d (%s %s): FaultActive = %v, want %v", i, s.f, s.fault, got, s.want)
		}
	}
}

func TestStatsMergeSplitsAndSkipsWarmup(t *testing.T) {
	h := NewHistory(&bytes.Buffer{}, time.Now())
	defer h.Close()
	warm := time.Now().Add(time.Hour)
	s := NewStats(h, []string{"cycle", "acquire"}, time.Now())
	w1, w2 := s.Worker(0, "x"), s.Worker(1, "x")
	out := Mark{At: time.Now()}
	in := Mark{At: time.Now(), Inside: true}
	for range 90 {
		w1.Observe(0, out, 100*time.Microsecond)
	}
	for range 10 {
		w2.Observe(0, in, 10*time.Millisecond)
	}
	w2.Count(1, out, "not-acquired")
	w2.Count(1, out, "not-acquired")
	w2.Done(1, out, history.Info, "")
	w1.Observe(1, out, 0)                                          // clamps to 1 µs
	w1.Observe(1, out, 2*time.Minute)                              // clamps to 60 s
	w1.Observe(0, Mark{At: warm.Add(-2 * time.Hour)}, time.Second) // before warm-up end: ignored
	_ = warm

	m := s.Merge()
	c := m["cycle"]
	if c.OK != 100 || c.All.TotalCount() != 100 || c.Inside.TotalCount() != 10 || c.Outside.TotalCount() != 90 {
		t.Fatalf("cycle: ok %d all %d inside %d outside %d", c.OK, c.All.TotalCount(), c.Inside.TotalCount(), c.Outside.TotalCount())
	}
	p := Percentiles(c.All)
	if p.P50 < 99 || p.P50 > 101 || p.P99 < 9990 || p.P99 > 10010 {
		t.Fatalf("percentiles: %+v", p)
	}
	a := m["acquire"]
	if a.Errors["not-acquired"] != 2 || a.Errors["info"] != 1 || a.OK != 2 {
		t.Fatalf("acquire: %+v", a)
	}
	if a.All.Min() != 1 || a.All.Max() < 59_900_000 {
		t.Fatalf("clamping: min %d max %d", a.All.Min(), a.All.Max())
	}
	st := OpStats(a, time.Second)
	if st.Count != 5 || st.OK != 2 || st.Throughput != 2 {
		t.Fatalf("OpStats: %+v", st)
	}
	back := Import(st.Histogram)
	if back.TotalCount() != 2 || back.Max() != a.All.Max() {
		t.Fatalf("export/import lost data: %d %d", back.TotalCount(), back.Max())
	}
}

func TestInvokeCompleteLogsBoth(t *testing.T) {
	var buf bytes.Buffer
	h := NewHistory(&buf, time.Now())
	s := NewStats(h, []string{"acquire"}, time.Time{})
	w := s.Worker(3, "impl-a")
	c := w.Invoke(0, history.Op{F: "acquire", Key: "k1"})
	w.Complete(c, history.Fail, history.Op{Error: "not-acquired"})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	ops, err := history.ReadAll(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0 invoke acquire k1 impl-a 3 ", "1 fail acquire k1 impl-a 3 not-acquired"}
	for i, op := range ops {
		got := fmt.Sprintf("%d %s %s %s %s %d %s", op.Index, op.Type, op.F, op.Key, op.Impl, op.Process, op.Error)
		if got != want[i] {
			t.Errorf("op %d = %q, want %q", i, got, want[i])
		}
	}
	if ops[1].Time < ops[0].Time {
		t.Errorf("completion before invocation: %d < %d", ops[1].Time, ops[0].Time)
	}
	if got := s.Merge()["acquire"].Errors["not-acquired"]; got != 1 {
		t.Errorf("not-acquired count %d", got)
	}
}

// BenchmarkObserve is the histogram hot path: one latency recorded.
func BenchmarkObserve(b *testing.B) {
	h := NewHistory(&bytes.Buffer{}, time.Now())
	defer h.Close()
	w := NewStats(h, []string{"cycle", "acquire", "release"}, time.Time{}).Worker(0, "x")
	m := w.Mark()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		w.Observe(1, m, time.Duration(50+i%5000)*time.Microsecond)
	}
}

// BenchmarkMarkDone is a timed operation's full bookkeeping: Mark, then
// Done (time.Since + Observe).
func BenchmarkMarkDone(b *testing.B) {
	h := NewHistory(&bytes.Buffer{}, time.Now())
	defer h.Close()
	w := NewStats(h, []string{"cycle"}, time.Time{}).Worker(0, "x")
	b.ReportAllocs()
	for b.Loop() {
		m := w.Mark()
		w.Done(0, m, history.OK, "")
	}
}

// BenchmarkInvokeComplete includes the history path (an Op through the
// pending batch to the JSON writer goroutine): what a recorded operation costs.
func BenchmarkInvokeComplete(b *testing.B) {
	h := NewHistory(io.Discard, time.Now())
	w := NewStats(h, []string{"acquire"}, time.Time{}).Worker(0, "x")
	b.ReportAllocs()
	for b.Loop() {
		c := w.Invoke(0, history.Op{F: "acquire", Key: "k1"})
		w.Complete(c, history.OK, history.Op{Token: "t", Fence: 7})
	}
	b.StopTimer()
	h.Close()
}

// gatedWriter blocks every Write until open is closed.
type gatedWriter struct {
	open chan struct{}
	buf  bytes.Buffer
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	<-g.open
	return g.buf.Write(p)
}

// A writer that cannot keep up holds producers back at maxPending pending
// entries (memory stays bounded), and once it catches up every entry is
// written, in each process's order.
func TestHistoryBoundsPendingAndKeepsOrder(t *testing.T) {
	g := &gatedWriter{open: make(chan struct{})}
	h := NewHistory(g, time.Now())
	const workers, per = 4, maxPending/2 + 20000 // more than maxPending + a batch + the writer's 256 KiB buffer in all
	var wg sync.WaitGroup
	for p := range workers {
		wg.Go(func() {
			for i := range per {
				h.Log(history.Op{Process: p, F: "op", Value: history.Int(int64(i)), Type: history.Invoke})
			}
		})
	}
	pending := func() int { h.mu.Lock(); defer h.mu.Unlock(); return h.count }
	deadline := time.Now().Add(30 * time.Second)
	for pending() < maxPending {
		if time.Now().After(deadline) {
			t.Fatalf("producers never reached the bound: %d pending", pending())
		}
		runtime.Gosched()
	}
	if n := pending(); n != maxPending {
		t.Fatalf("%d entries pending, bound %d", n, maxPending)
	}
	close(g.open)
	wg.Wait()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	ops, err := history.ReadAll(&g.buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != workers*per {
		t.Fatalf("got %d ops, want %d", len(ops), workers*per)
	}
	next := make([]int64, workers)
	for i, op := range ops {
		if op.Index != int64(i) || *op.Value != next[op.Process] {
			t.Fatalf("op %d (index %d) of process %d: value %d, want %d", i, op.Index, op.Process, *op.Value, next[op.Process])
		}
		next[op.Process]++
	}
}

// A checkpoint merges the workers' figures while they record: each merge
// sees counts that only grow, histograms that agree with them, and the
// last merge after the workers return has every operation (go test -race
// checks the locking).
func TestMergeWhileRecording(t *testing.T) {
	h := NewHistory(io.Discard, time.Now())
	defer h.Close()
	s := NewStats(h, []string{"acquire"}, time.Time{})
	const workers, per = 4, 20000
	var wg sync.WaitGroup
	for p := range workers {
		w := s.Worker(p, "x")
		wg.Go(func() {
			for i := range per {
				m := w.Mark()
				if i%10 == 0 {
					w.Done(0, m, history.Fail, "not-acquired")
				} else {
					w.Observe(0, m, time.Duration(i%1000)*time.Microsecond)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var last int64
	merges := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		k := s.Merge()["acquire"]
		if k.OK < last || k.All.TotalCount() != k.OK {
			t.Fatalf("merge %d: ok %d after %d, histogram count %d", merges, k.OK, last, k.All.TotalCount())
		}
		last = k.OK
		merges++
	}
	k := s.Merge()["acquire"]
	if k.OK != workers*per*9/10 || k.Errors["not-acquired"] != workers*per/10 {
		t.Errorf("after the workers: ok %d, errors %v", k.OK, k.Errors)
	}
	t.Logf("%d merges during the load", merges)
}

// BenchmarkMerge is a checkpoint's merge: 8 workers, 5 operation kinds,
// latencies spread 50 µs–500 ms (faultline run's default clients on the
// counter workload).
func BenchmarkMerge(b *testing.B) {
	h := NewHistory(io.Discard, time.Now())
	defer h.Close()
	s := NewStats(h, []string{"cycle", "acquire", "read", "write", "release"}, time.Time{})
	for p := range 8 {
		w := s.Worker(p, "x")
		m := w.Mark()
		for i := range 100_000 {
			w.Observe(i%5, m, time.Duration(50+(i*7919)%500_000)*time.Microsecond)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Merge()
	}
}

// LogPaced holds its producer back at one batch pending (the resource's
// log of a long run is logged in a row, each entry with its attributes),
// where Log would let maxPending wait; every entry is written once the
// writer catches up.
func TestLogPacedBoundsPendingAtOneBatch(t *testing.T) {
	g := &gatedWriter{open: make(chan struct{})}
	h := NewHistory(g, time.Now())
	const n = 3 * batchKick // more than the batch the writer holds + one pending
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			h.LogPaced(history.Op{Process: history.Resource, F: "resource-write", Value: history.Int(int64(i)), Type: history.OK, Attrs: map[string]string{"seq": "1"}})
		}
	}()
	pending := func() int { h.mu.Lock(); defer h.mu.Unlock(); return h.count }
	deadline := time.Now().Add(30 * time.Second)
	for pending() < batchKick {
		if time.Now().After(deadline) {
			t.Fatalf("the producer never filled a batch: %d pending", pending())
		}
		runtime.Gosched()
	}
	// The writer is stuck on its first batch: the producer must stay
	// blocked with one batch pending, not run on to the end.
	for watch := time.Now().Add(time.Second); time.Now().Before(watch); runtime.Gosched() {
		select {
		case <-done:
			t.Fatalf("the producer logged all %d entries while the writer was stuck (%d pending)", n, pending())
		default:
		}
		if p := pending(); p > batchKick {
			t.Fatalf("%d entries pending, want at most %d", p, batchKick)
		}
	}
	close(g.open)
	<-done
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	ops, err := history.ReadAll(&g.buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != n {
		t.Fatalf("got %d ops, want %d", len(ops), n)
	}
}
