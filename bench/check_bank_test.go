package bench

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
)

// bankPhase is a bank phase's history, by hand: transfers (one left in
// flight when the run died, one older that never completed), reads, a
// failover window, and the workload's final entries (layout, recovery,
// an in-doubt row, the snapshot).
func bankPhase() []history.Op {
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	var h []history.Op
	put := func(op history.Op) { op.Index, op.Impl = int64(len(h)), "2pc"; h = append(h, op) }
	transfer := func(p int, id, from, to string, amount, at, took int64, typ history.Type, errKind string) {
		put(history.Op{Type: history.Invoke, Process: p, F: "transfer", Token: id, Time: ms(at), Value: history.Int(amount),
			Attrs: map[string]string{"from": from, "to": to, "amount": strconv.FormatInt(amount, 10)}})
		if took < 0 {
			return
		}
		attrs := map[string]string{}
		if typ == history.Info {
			attrs["detail"], attrs["retries"] = "commit on A: timeout", "2"
		}
		put(history.Op{Type: typ, Process: p, F: "transfer", Token: id, Time: ms(at + took), Error: errKind, Attrs: attrs})
	}
	read := func(p int, at, a, b int64, negative int) {
		put(history.Op{Type: history.Invoke, Process: p, F: "read", Key: "bank", Time: ms(at)})
		put(history.Op{Type: history.OK, Process: p, F: "read", Key: "bank", Time: ms(at + 1), Value: history.Int(a + b),
			Attrs: map[string]string{"A": strconv.FormatInt(a, 10), "B": strconv.FormatInt(b, 10), "negative": strconv.Itoa(negative)}})
	}
	fault := func(f string, at int64, attrs map[string]string) {
		put(history.Op{Type: history.Info, Process: history.Nemesis, F: f, Fault: "failover", Nodes: []string{"pg-1"}, Time: ms(at), Attrs: attrs})
	}
	transfer(0, "p0-1", "A:1", "B:2", 10, 10, 5, history.OK, "")
	transfer(1, "p1-1", "B:1", "A:2", 5, 12, 3, history.Fail, "insufficient-funds")
	read(100000, 20, 200, 190, 0)
	transfer(2, "p2-1", "A:2", "B:1", 7, 30, -1, history.Info, "") // never completed, long before the end: stays
	fault(history.FaultStart, 100, map[string]string{"id": "f0", "kind": checker.FailoverKind, checker.AttrOldPrimary: "pg-1",
		checker.AttrNewPrimary: "pg-2", checker.AttrPromoted: strconv.FormatInt(ms(300), 10)})
	transfer(0, "p0-2", "A:1", "B:1", 3, 150, 50, history.Info, "crashed")
	transfer(1, "p1-2", "B:2", "A:1", 4, 320, 30, history.OK, "lock-timeout")
	read(100001, 400, 195, 200, 1)
	fault(history.FaultHeal, 500, map[string]string{"id": "f0", "kind": checker.FailoverKind})
	transfer(3, "p3-1", "A:2", "B:2", 9, 600, 20, history.OK, "")
	transfer(0, "p0-3", "A:1", "B:2", 2, 900, -1, history.Info, "") // in flight when the run died
	res := func(f string, op history.Op) {
		op.Type, op.Process, op.F, op.Time = history.OK, history.Resource, f, ms(910)
		put(op)
	}
	res("bank-layout", history.Op{Attrs: map[string]string{"accounts": "2", "balance": "100", "nodes": "2", "single_node": "false", "blocked_min_ms": "100"}})
	res("bank-recover", history.Op{Value: history.Int(12)})
	res("in-doubt", history.Op{Token: "fl:2pc:p0-2", Value: history.Int(250), Attrs: map[string]string{
		"node": "0", "transfer": "p0-2", "prepared": strconv.FormatInt(ms(160), 10), "resolved": strconv.FormatInt(ms(410), 10), "by": "recover"}})
	res("bank-snapshot", history.Op{Attrs: map[string]string{"taken_at": "2026-12-03T17:00:00Z", "decisions": "3"}})
	for _, a := range []checker.AccountRow{{Account: checker.Account{Node: 0, ID: 1}, Balance: 91}, {Account: checker.Account{Node: 0, ID: 2}, Balance: 91},
		{Account: checker.Account{Node: 1, ID: 1}, Balance: 103}, {Account: checker.Account{Node: 1, ID: 2}, Balance: 115}} {
		b, _ := json.Marshal(a)
		res("bank-account", history.Op{Attrs: map[string]string{"v": string(b)}})
	}
	return h
}

// The bank's stream check (what `faultline check` runs) judges a phase as
// the loaded history did: the cut of what was in flight when the run died,
// fault coverage, failovers, every verdict and counter.
func TestBankStreamMatchesLoaded(t *testing.T) {
	const window = 100 * time.Millisecond
	h := bankPhase()
	wl, err := workload.Lookup("bank")
	if err != nil {
		t.Fatal(err)
	}
	nodes := workload.PhaseNodes{Impl: []string{"pg-1", "pg-2"}}
	windows := []results.FaultWindow{{Nodes: []string{"pg-1"}, Start: int64(100 * time.Millisecond), End: int64(500 * time.Millisecond)}}

	type judged struct {
		Cut       int
		Coverage  *results.FaultCoverage
		Failovers []results.Failover
		Report    workload.Report
	}
	var loaded judged
	mine, cut := dropCut(h, window)
	loaded.Cut = cut
	loaded.Coverage = Coverage(nodes, 1, windows, mine)
	loaded.Failovers = checker.Failovers(mine)
	loaded.Report = wl.Check(mine, workload.CheckConfig{Impl: "2pc"})

	var streamed judged
	sc := wl.(workload.StreamChecker).NewStreamCheck()
	sc.Grow(len(h))
	for i := range h {
		op := h[i]
		sc.Add(&op)
		op = history.Op{Attrs: map[string]string{}} // the stream check keeps nothing of the entry it was given
	}
	streamed.Cut = sc.DropCut(window)
	streamed.Coverage = CoverageSpans(nodes, 1, windows, sc.Spans())
	streamed.Failovers = sc.Failovers()
	streamed.Report = sc.Report(workload.CheckConfig{Impl: "2pc"})

	want, _ := json.MarshalIndent(loaded, "", " ")
	got, _ := json.MarshalIndent(streamed, "", " ")
	if string(got) != string(want) {
		t.Fatalf("streamed:\n%s\nloaded:\n%s", got, want)
	}
	// What this history is built to show, so that agreeing is not agreeing on nothing.
	c := loaded.Report.Counters
	if loaded.Cut != 1 || c["transfers-info"] != 2 || c["transfers-ok"] != 3 || c["crashed"] != 1 || c["lock-timeouts"] != 1 || c["retries"] != 2 ||
		c["reads"] != 2 || c["reads-skewed"] != 2 || c["in-doubt"] != 1 || c["blocked"] != 0 ||
		len(loaded.Failovers) != 1 || loaded.Failovers[0].FirstWrite != int64(350*time.Millisecond) ||
		loaded.Coverage == nil || loaded.Coverage.OpsInside != 4 {
		t.Fatalf("the loaded check does not see what the history holds: cut %d, counters %v, failovers %+v, coverage %+v",
			loaded.Cut, c, loaded.Failovers, loaded.Coverage)
	}
	reads := map[string]results.Verdict{}
	for _, v := range loaded.Report.Verdicts {
		reads[v.Checker] = v
	}
	if v := reads[checker.BankReadsName]; v.Valid != results.Invalid || v.Count != 1 {
		t.Fatalf("bank-reads %s with %d violations, want the negative read: %s", v.Valid, v.Count, v.Summary)
	}
	if v := reads[checker.ConservationName]; v.Valid != results.Valid {
		t.Fatalf("conservation %s: %s", v.Valid, v.Summary)
	}
}
