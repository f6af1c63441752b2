package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
	"github.com/faultline-dev/faultline/impl/txn"
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
// /usr/bin/time -v (docs/benchmarks.md, History size and memory).
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

// writeBankHistory writes a tcc bank run's history of n transfers over
// clients processes (all acknowledged, cross-node, in the shape the bank
// workload records: invocation with from/to/amount, completion with its
// phases; a read every 4 transfers; at the end the layout, the recovery
// and the snapshot with 4 journal rows per transfer), compressed as Run
// writes it. Every verdict of its check is valid.
func writeBankHistory(tb testing.TB, path string, n, clients int) {
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
	const impl, accounts, balance = "tcc", 100, 1_000_000
	var t int64
	put := func(op history.Op) {
		t += 20_000
		op.Time, op.Impl = t, impl
		if _, err := w.Write(op); err != nil {
			tb.Fatal(err)
		}
	}
	bal := [2][accounts + 1]int64{}
	for node := range bal {
		for id := 1; id <= accounts; id++ {
			bal[node][id] = balance
		}
	}
	nodeSum := [2]int64{accounts * balance, accounts * balance}
	r := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	var journal []txn.JournalEntry
	seq := [2]int64{}
	for i := range n {
		p := i % clients
		from := txn.Account{Node: r.IntN(2), ID: 1 + r.IntN(accounts)}
		to := txn.Account{Node: 1 - from.Node, ID: 1 + r.IntN(accounts)}
		amount := 1 + r.Int64N(20)
		id := fmt.Sprintf("p%d-%d", p, i/clients+1)
		put(history.Op{Type: history.Invoke, Process: p, F: "transfer", Value: history.Int(amount), Token: id,
			Attrs: map[string]string{"amount": strconv.FormatInt(amount, 10), "from": from.String(), "to": to.String()}})
		put(history.Op{Type: history.OK, Process: p, F: "transfer", Token: id, Attrs: map[string]string{"phases": "try=1.021ms,confirm=0.873ms"}})
		bal[from.Node][from.ID] -= amount
		bal[to.Node][to.ID] += amount
		nodeSum[from.Node] -= amount
		nodeSum[to.Node] += amount
		at := start.Add(time.Duration(t))
		for _, e := range []struct {
			a      txn.Account
			branch string
		}{{from, "debit"}, {to, "credit"}} {
			for _, op := range []string{"try", "confirm"} {
				seq[e.a.Node]++
				journal = append(journal, txn.JournalEntry{Node: e.a.Node, Seq: seq[e.a.Node], GID: txn.GIDTCC(id), Branch: e.branch, Op: op,
					Account: e.a.ID, Amount: amount, Applied: true, At: at})
			}
		}
		if i%4 == 0 {
			put(history.Op{Type: history.Invoke, Process: 100_000, F: "read", Key: "bank"})
			put(history.Op{Type: history.OK, Process: 100_000, F: "read", Key: "bank", Value: history.Int(nodeSum[0] + nodeSum[1]),
				Attrs: map[string]string{"A": strconv.FormatInt(nodeSum[0], 10), "B": strconv.FormatInt(nodeSum[1], 10), "negative": "0"}})
		}
	}
	res := func(f string, op history.Op) {
		op.Type, op.Process, op.F = history.OK, history.Resource, f
		put(op)
	}
	res("bank-layout", history.Op{Attrs: map[string]string{"accounts": strconv.Itoa(accounts), "balance": strconv.Itoa(balance),
		"nodes": "2", "single_node": "false", "blocked_min_ms": "100", "checks": "tcc-anomalies"}})
	res("bank-recover", history.Op{Value: history.Int(3), Attrs: map[string]string{"start": "0", "end": "0"}})
	snap := txn.Snapshot{TakenAt: start.Add(time.Duration(t)), Journal: journal}
	for node := range bal {
		for id := 1; id <= accounts; id++ {
			snap.Accounts = append(snap.Accounts, txn.AccountState{Account: txn.Account{Node: node, ID: id}, Balance: bal[node][id]})
		}
	}
	for _, op := range workload.SnapshotOps(snap) {
		res(op.F, op)
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

// BenchmarkCheckBank measures the check path of a bank run (check: the
// history streamed into the bank's compact records, then every bank
// checker) on a tcc history of 100,000 transfers and 25,000 reads
// (250,000 operations, 400,000 journal rows in its snapshot); B/op and
// allocs/op are what `faultline check` allocates for it (go test -run X
// -bench CheckBank -benchmem ./bench/, compare with benchstat).
func BenchmarkCheckBank(b *testing.B) {
	const transfers = 100_000
	dir := b.TempDir()
	path := filepath.Join(dir, "history.jsonl.zst")
	writeBankHistory(b, path, transfers, 8)
	wl, err := workload.Lookup("bank")
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Workload: "bank", Impls: []string{"tcc"}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res := &results.Results{Impls: []results.ImplResult{{Name: "tcc"}}}
		if err := check(res, wl, cfg, path); err != nil {
			b.Fatal(err)
		}
		if len(res.Verdicts) < 6 {
			b.Fatalf("%d verdicts, want the 6 of a tcc bank check: %+v", len(res.Verdicts), res.Verdicts)
		}
		for _, v := range res.Verdicts {
			if v.Valid != results.Valid {
				b.Fatalf("%s: %s (%s), want valid: the synthetic history is a correct run", v.Checker, v.Valid, v.Summary)
			}
		}
	}
	b.ReportMetric(transfers*5/4, "ops")
}
