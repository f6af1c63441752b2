package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
)

// writeCounterHistory writes a counter run's history of iters lock
// iterations (acquire, read, write, release: 4 operations, 8 entries, plus
// the final probe, the resource's write log and finals), in the shape a real redis-setnx run
// records, compressed as Run writes it.
func writeCounterHistory(tb testing.TB, path string, iters, clients, keys int) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	z, err := history.NewCompressor(f)
	if err != nil {
		tb.Fatal(err)
	}
	w := history.NewWriter(z)
	const impl = "redis-setnx"
	var t int64
	put := func(op history.Op) {
		t += 20_000
		op.Time, op.Impl = t, impl
		if _, err := w.Write(op); err != nil {
			tb.Fatal(err)
		}
	}
	counter := make([]int64, keys)
	type write struct {
		key, token string
		p          int
		v          int64
	}
	var log []write
	for i := range iters {
		p, k := i%clients, i%keys
		key := "k" + strconv.Itoa(k)
		tok := fmt.Sprintf("tok%019d", i) // 22 bytes, as the random tokens
		v := counter[k]
		put(history.Op{Type: history.Invoke, Process: p, F: "acquire", Key: key})
		put(history.Op{Type: history.OK, Process: p, F: "acquire", Key: key, Token: tok})
		put(history.Op{Type: history.Invoke, Process: p, F: "read", Key: key})
		put(history.Op{Type: history.OK, Process: p, F: "read", Key: key, Value: history.Int(v)})
		put(history.Op{Type: history.Invoke, Process: p, F: "write", Key: key, Value: history.Int(v + 1), Token: tok})
		put(history.Op{Type: history.OK, Process: p, F: "write", Key: key, Token: tok})
		put(history.Op{Type: history.Invoke, Process: p, F: "release", Key: key, Token: tok})
		put(history.Op{Type: history.OK, Process: p, F: "release", Key: key, Token: tok})
		counter[k] = v + 1
		log = append(log, write{key, tok, p, v})
	}
	for k := range keys { // the final probe: every key free
		key, tok, probe := "k"+strconv.Itoa(k), fmt.Sprintf("probe%017d", k), map[string]string{"probe": "final"}
		put(history.Op{Type: history.Invoke, Process: clients, F: "acquire", Key: key, Attrs: probe})
		put(history.Op{Type: history.OK, Process: clients, F: "acquire", Key: key, Token: tok, Attrs: probe})
		put(history.Op{Type: history.Invoke, Process: clients, F: "release", Key: key, Token: tok, Attrs: probe})
		put(history.Op{Type: history.OK, Process: clients, F: "release", Key: key, Token: tok, Attrs: probe})
	}
	for i, wr := range log {
		put(history.Op{Type: history.OK, Process: history.Resource, F: "resource-write", Key: wr.key,
			Value: history.Int(wr.v + 1), Token: wr.token, Attrs: map[string]string{
				"current": strconv.FormatInt(wr.v, 10), "expected": strconv.FormatInt(wr.v, 10),
				"seq": strconv.Itoa(i + 1), "writer": strconv.Itoa(wr.p)}})
	}
	for k, v := range counter {
		put(history.Op{Type: history.OK, Process: history.Resource, F: "final", Key: "k" + strconv.Itoa(k), Value: history.Int(v)})
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := z.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkCheckCounter measures the check path (check: the history read
// back per implementation, then every lock checker) on a counter history
// of 250,000 operations; B/op and allocs/op are what `faultline check`
// allocates for it (go test -bench CheckCounter -benchmem ./bench/, compare
// with benchstat). The peak RSS of a real run is measured with
// /usr/bin/time -v (README, Benchmarks).
func BenchmarkCheckCounter(b *testing.B) {
	const iters = 62_500 // 250,000 operations, 500,000 client entries
	dir := b.TempDir()
	path := filepath.Join(dir, "history.jsonl.zst")
	writeCounterHistory(b, path, iters, 16, 64)
	wl, err := workload.Lookup("counter")
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Workload: "counter", Impls: []string{"redis-setnx"}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res := &results.Results{Impls: []results.ImplResult{{Name: "redis-setnx"}}}
		if err := check(res, wl, cfg, path); err != nil {
			b.Fatal(err)
		}
		for _, v := range res.Verdicts {
			if v.Valid != results.Valid {
				b.Fatalf("%s: %s (%s), want valid: the synthetic history is a correct run", v.Checker, v.Valid, v.Summary)
			}
		}
	}
	b.ReportMetric(float64(4*iters), "ops")
}

// gcPercent reads the GOGC in force.
func gcPercent() int {
	g := debug.SetGCPercent(100)
	debug.SetGCPercent(g)
	return g
}

// TestCheckGCOverlapping: two checks at once (as tests run them) keep the
// checks' GOGC until the last one ends, which puts back the GOGC from
// before; the first one to end does not.
func TestCheckGCOverlapping(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(77))
	first, second := checkGC(), checkGC()
	if g := gcPercent(); g != checkGCPercent {
		t.Fatalf("GOGC %d during the checks, want %d", g, checkGCPercent)
	}
	first()
	if g := gcPercent(); g != checkGCPercent {
		t.Fatalf("GOGC %d after the first check ended while the second runs, want %d", g, checkGCPercent)
	}
	second()
	if g := gcPercent(); g != 77 {
		t.Fatalf("GOGC %d after both checks, want 77 (the one from before)", g)
	}
}
