//go:build unix

// Unix only: getrusage.

package recorder

import (
	"fmt"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
)

// BenchmarkCeilingRecord is what `faultline ceiling` adds to each raw
// request: an invocation and a completion through the pending batch to the
// writer, JSON-encoded and zstd-compressed, timed into the worker's
// histogram — from 50 goroutines at once, as at 50 clients. ns/op is wall
// time per request on all cores; cpu-ns/op is the process's CPU time
// (user + system, the writer included) per request, which a busy machine
// disturbs less; allocs/op must be 0.
func BenchmarkCeilingRecord(b *testing.B) {
	z, err := history.NewCompressor(io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	h := NewHistory(z, time.Now())
	s := NewStats(h, []string{"set"}, time.Time{})
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("key:%d", i)
	}
	var next sync.Mutex
	process := 0
	b.SetParallelism(25) // × GOMAXPROCS 2 = 50 goroutines
	b.ReportAllocs()
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.RunParallel(func(pb *testing.PB) {
		next.Lock()
		w := s.Worker(process, "raw")
		process++
		next.Unlock()
		for j := 0; pb.Next(); j++ {
			c := w.Invoke(0, history.Op{F: "set", Key: keys[j%len(keys)]})
			w.Complete(c, history.OK, history.Op{})
		}
	})
	if err := h.Close(); err != nil { // the writer's work is part of the cost
		b.Fatal(err)
	}
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	_ = z.Close()
}
