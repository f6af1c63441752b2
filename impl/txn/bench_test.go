//go:build unix

// Unix only: getrusage and /proc.

package txn_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/impl/txn"
)

// benchAccounts per node: as many as the bank workload's default, so 8
// clients rarely wait for each other's row locks.
const benchAccounts = 100

// BenchmarkTransfer measures one transfer end to end per implementation,
// direct to the servers (no proxy), single-db first, with 1 client
// (latency: round trips on the critical path), 8 concurrent clients
// sharing one Transferer ("clients=8") and 8 clients with a Transferer
// (coordinator) each, as the bank workload runs them ("coordinators=8"):
// each result reports its time per transfer relative to single-db's in the
// same configuration ("x-single-db", lower is faster), the p50 of every
// phase in µs, and what a transfer costs the servers: write transactions
// (xacts/op: xids assigned on both servers, the coordinator database
// included; a 2pc transfer's two COMMIT PREPARED finish its prepared
// transactions without a new xid, so it writes xacts/op + 2 commit
// records), WAL bytes (wal-B/op), the client's write syscalls (rt/op:
// one per request, so round trips), and CPU time: the servers' (srv-cpu-µs/op:
// both postmasters and all their processes) and this process's
// (cli-cpu-µs/op: the coordinators and the benchmark loop). On a
// CPU-bound machine throughput follows the CPU a transfer costs, which
// other load moves less than its time. failed/op counts transfers that failed
// definitely (lock timeouts). For outbox only the local commit is on the
// path; the credit is asynchronous. Compare commits with
//
//	go test -run '^$' -bench Transfer -count 6 ./impl/txn/ > new.txt; benchstat old.txt new.txt
func BenchmarkTransfer(b *testing.B) {
	needEnv(b)
	names := []string{"single-db", "2pc", "tcc", "saga", "outbox"}
	for _, cfg := range []struct {
		clients int
		own     bool
	}{{1, false}, {8, false}, {8, true}} {
		var baseline float64
		label := "clients"
		if cfg.own {
			label = "coordinators"
		}
		for _, name := range names {
			b.Run(fmt.Sprintf("%s/%s=%d", name, label, cfg.clients), func(b *testing.B) {
				perOp := benchTransfers(b, name, cfg.clients, cfg.own)
				if name == "single-db" {
					baseline = perOp
				} else if baseline > 0 {
					b.ReportMetric(perOp/baseline, "x-single-db")
				}
			})
		}
	}
}

// benchTransfers runs b.N transfers of impl name over clients goroutines
// (own: each with its own Transferer) and returns the wall time per
// transfer in ns.
func benchTransfers(b *testing.B, name string, clients int, own bool) float64 {
	info, err := txn.Lookup(name)
	if err != nil {
		b.Fatal(err)
	}
	ep := testEnv.direct
	if _, err := txn.Setup(ctxFor(b, 60*time.Second), ep, benchAccounts, 1_000_000); err != nil {
		b.Fatal(err)
	}
	trs := []txn.Transferer{newTransferer(b, name, ep, txn.Options{})}
	for own && len(trs) < clients {
		trs = append(trs, newTransferer(b, name, ep, txn.Options{}))
	}
	ctx := ctxFor(b, 10*time.Minute)
	// One transfer per Transferer first: its pools dial outside the
	// measurement (rt/op counts steady-state requests).
	for i, tr := range trs {
		r := rand.New(rand.NewPCG(2, uint64(i)))
		for j := range 4 { // both nodes' pools, likely
			if _, err := tr.Transfer(ctx, benchTransfer(r, fmt.Sprintf("w%d.%d", i, j), info.SingleNode)); txn.Classify(err) == txn.ClassInfo {
				b.Fatalf("warm-up transfer: %v", err)
			}
		}
	}
	cost0 := serverCost(b, ep)
	cost0.writes = writeSyscalls()
	cpu0 := cpuUse(b, ep)
	var (
		mu     sync.Mutex
		phases = map[string][]float64{}
		next   atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		tr := trs[c%len(trs)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(1, uint64(c)))
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				out, err := tr.Transfer(ctx, benchTransfer(r, fmt.Sprintf("b%d", i), info.SingleNode))
				if txn.Classify(err) == txn.ClassFail {
					// e.g. a lock timeout: two 2pc transfers in opposite
					// directions each hold a row the other waits for on
					// the other server (no server sees the deadlock).
					failed.Add(1)
				} else if err != nil {
					b.Errorf("transfer %d: %v", i, err)
					return
				}
				mu.Lock()
				for _, p := range out.Phases {
					phases[p.Name] = append(phases[p.Name], float64(p.Duration.Microseconds()))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	perOp := float64(time.Since(start).Nanoseconds()) / float64(b.N)
	b.StopTimer()
	if b.Failed() {
		b.FailNow()
	}
	b.ReportMetric(float64(failed.Load())/float64(b.N), "failed/op")
	for p, xs := range phases {
		sort.Float64s(xs)
		b.ReportMetric(xs[len(xs)/2], p+"-p50-µs")
	}
	// Recover first writes the final states still pending (tcc, saga):
	// part of what the transfers cost.
	for _, tr := range trs {
		if err := tr.Recover(ctx); err != nil {
			b.Fatal(err)
		}
	}
	w := writeSyscalls()
	cpu1 := cpuUse(b, ep)
	cost1 := serverCost(b, ep)
	cost1.writes = w
	cost := cost1.minus(cost0)
	// each read of the counters assigned one xid per server
	b.ReportMetric(float64(cost.xids-int64(len(ep.Participants)))/float64(b.N), "xacts/op")
	b.ReportMetric(float64(cost.walBytes)/float64(b.N), "wal-B/op")
	b.ReportMetric(float64(cost.writes)/float64(b.N), "rt/op")
	if cpu0.ok && cpu1.ok {
		b.ReportMetric(float64((cpu1.server-cpu0.server).Microseconds())/float64(b.N), "srv-cpu-µs/op")
		b.ReportMetric(float64((cpu1.client-cpu0.client).Microseconds())/float64(b.N), "cli-cpu-µs/op")
	}
	if name == "outbox" { // commit-to-apply delay of the asynchronous credit
		snap, err := txn.TakeSnapshot(ctx, ep)
		if err != nil {
			b.Fatal(err)
		}
		v := checker.OutboxDelivery(checker.BankInput{Impl: name, Snapshot: checkerSnapshot(b, snap)})
		b.ReportMetric(v.Measures["delay_ms_p50"], "apply-delay-p50-ms")
		b.ReportMetric(v.Measures["delay_ms_p99"], "apply-delay-p99-ms")
	}
	return perOp
}

// benchTransfer is a random transfer between two of benchAccounts
// accounts, on two nodes (or, sameNode, one).
func benchTransfer(r *rand.Rand, id string, sameNode bool) txn.Transfer {
	from := txn.Account{Node: r.IntN(2), ID: 1 + r.IntN(benchAccounts)}
	to := txn.Account{Node: 1 - from.Node, ID: 1 + r.IntN(benchAccounts)}
	if sameNode {
		to.Node = from.Node
		for to.ID == from.ID {
			to.ID = 1 + r.IntN(benchAccounts)
		}
	}
	return txn.Transfer{ID: id, From: from, To: to, Amount: 1 + r.Int64N(20)}
}

// cost is what the servers did so far: xids assigned (write transactions)
// and WAL bytes written on both participants' servers (the coordinator
// database is on A's), and write syscalls of this process (writeSyscalls,
// read outside serverCost's own connections).
type cost struct{ xids, walBytes, writes int64 }

func (c cost) minus(o cost) cost {
	return cost{c.xids - o.xids, c.walBytes - o.walBytes, c.writes - o.writes}
}

// serverCost reads the servers' counters (txid_current assigns an xid on
// each server: a difference of two reads counts one of them).
func serverCost(b *testing.B, ep txn.Endpoints) cost {
	b.Helper()
	var c cost
	for _, p := range ep.Participants {
		ctx := ctxFor(b, 10*time.Second)
		conn, err := pgx.Connect(ctx, p.DSN)
		if err != nil {
			b.Fatal(err)
		}
		var xid, wal int64
		err = conn.QueryRow(ctx, `SELECT txid_current(), (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&xid, &wal)
		_ = conn.Close(ctx)
		if err != nil {
			b.Fatal(err)
		}
		c.xids += xid
		c.walBytes += wal
	}
	return c
}

// cpu is CPU time used so far: by the PostgreSQL servers of ep (each
// postmaster, the children it reaped and its live children: backends,
// WAL writer, checkpointer…) and by this process. ok is false where /proc
// cannot tell (not Linux). On a CPU-bound machine throughput follows the
// CPU a transfer costs, which, unlike its time, other load barely moves.
type cpu struct {
	server, client time.Duration
	ok             bool
}

// cpuUse reads the CPU time of ep's servers and of this process.
func cpuUse(b *testing.B, ep txn.Endpoints) cpu {
	b.Helper()
	var c cpu
	posts := map[int]bool{}
	for _, p := range ep.Participants {
		ctx := ctxFor(b, 10*time.Second)
		conn, err := pgx.Connect(ctx, p.DSN)
		if err != nil {
			b.Fatal(err)
		}
		var pid int
		err = conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid)
		_ = conn.Close(ctx)
		if err != nil {
			b.Fatal(err)
		}
		st, ok := procStat(pid)
		if !ok {
			return cpu{}
		}
		posts[st.ppid] = true
	}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return cpu{}
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		st, ok := procStat(pid)
		switch {
		case !ok:
		case posts[pid]: // a postmaster: itself and the children it reaped
			c.server += st.self + st.children
		case posts[st.ppid]:
			c.server += st.self
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpu{}
	}
	c.client = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	c.ok = true
	return c
}

type stat struct {
	ppid           int
	self, children time.Duration
}

// procStat reads /proc/PID/stat: the parent, the CPU time of the process
// and of its reaped children (USER_HZ = 100 ticks a second).
func procStat(pid int) (stat, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, false
	}
	i := strings.LastIndexByte(string(raw), ')')
	if i < 0 {
		return stat{}, false
	}
	f := strings.Fields(string(raw[i+1:])) // f[0] = state (field 3)
	if len(f) < 15 {
		return stat{}, false
	}
	n := func(field int) int64 { v, _ := strconv.ParseInt(f[field-3], 10, 64); return v }
	const tick = 10 * time.Millisecond
	return stat{ppid: int(n(4)), self: time.Duration(n(14)+n(15)) * tick, children: time.Duration(n(16)+n(17)) * tick}, true
}

// writeSyscalls is this process's write syscalls so far (0 if unknown:
// not Linux).
func writeSyscalls() int64 {
	io, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(io), "\n") {
		if v, ok := strings.CutPrefix(l, "syscw: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}
