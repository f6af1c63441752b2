package checker

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// Bank checker names of the whole-history check (BankCheck).
const (
	// BankReadsName judges the readers' snapshots.
	BankReadsName = "bank-reads"
	// BankSnapshotName is an Unknown verdict when the history has no
	// snapshot (the run was cut before Finish).
	BankSnapshotName = "bank-snapshot"
)

// bankState is what Finish appended to the history.
type bankState struct {
	haveLayout, haveSnap bool
	accounts             int
	balance              int64
	nodes                int
	singleNode           bool
	blockedMin           time.Duration
	snap                 BankSnapshot
	inDoubt              []inDoubtEntry
	recoverMS            int64
	recoverErr           string
	decisions            int
	checks               []string // the implementation's own checks (bank-layout "checks")
}

type inDoubtEntry struct {
	gid, transfer, by  string
	node               int
	prepared, resolved int64 // history ns; resolved -1: never
	ms                 int64
}

// parseBankState reads the resource entries of a bank history.
func parseBankState(ops []history.Op) (bankState, error) {
	st := bankState{}
	for i := range ops {
		if ops[i].Process != history.Resource {
			continue
		}
		if err := st.add(&ops[i]); err != nil {
			return st, err
		}
	}
	return st, nil
}

// initial is every account's initial balance.
func (st bankState) initial() map[Account]int64 {
	m := map[Account]int64{}
	for node := range st.nodes {
		for id := 1; id <= st.accounts; id++ {
			m[Account{Node: node, ID: id}] = st.balance
		}
	}
	return m
}

// ParseAccount parses "A:3" (Account.String).
func ParseAccount(s string) (Account, error) {
	n, id, ok := strings.Cut(s, ":")
	if !ok || len(n) != 1 || n[0] < 'A' || n[0] > 'Z' {
		return Account{}, fmt.Errorf("account %q: want A:3", s)
	}
	i, err := strconv.Atoi(id)
	if err != nil {
		return Account{}, fmt.Errorf("account %q: %w", s, err)
	}
	return Account{Node: int(n[0] - 'A'), ID: i}, nil
}

// BankCheck decodes a bank history (one implementation's) and runs Bank
// on it (BankBuilder.Check).
func BankCheck(ops []history.Op, impl string) ([]results.Verdict, map[string]int64) {
	var b BankBuilder
	for i := range ops {
		b.Add(&ops[i])
	}
	return b.Check(impl)
}

// Check runs Bank on the transfers and the snapshot the workload appended,
// adds the in-doubt measures (time in doubt, transfers blocked by in-doubt
// rows) to the no-prepared-left verdict, judges the readers' snapshots
// (bank-reads) and counts: transfers-ok/fail/info, crashed, lock-timeouts,
// incomplete, retries, in-doubt, in-doubt-ms-max, in-doubt-ms-p50, blocked,
// reads, reads-skewed, recover-ms, apply-delay-ms-p50/p99 (outbox).
func (b *BankBuilder) Check(impl string) ([]results.Verdict, map[string]int64) {
	var rep struct {
		Verdicts []results.Verdict
		Counters map[string]int64
	}
	rep.Counters = map[string]int64{}
	st, err := b.st, b.stErr
	if err == nil {
		err = b.tErr
	}
	if err != nil || !st.haveLayout || !st.haveSnap {
		why := "the history has no bank snapshot: the phase stopped before Finish (nothing can be said about the final state)"
		if err != nil {
			why = "the bank entries of the history are unreadable: " + err.Error()
		}
		rep.Verdicts = append(rep.Verdicts, results.Verdict{Checker: BankSnapshotName, Impl: impl, Valid: results.Unknown, Summary: why})
		return rep.Verdicts, rep.Counters
	}
	in := BankInput{Impl: impl, Checks: st.checks, Initial: st.initial(), Snapshot: st.snap, Transfers: b.ts}
	verdicts := Bank(in)

	// In doubt and blocked.
	blocked := b.blockedTransfers()
	var ms []float64
	for _, d := range st.inDoubt {
		ms = append(ms, float64(d.ms))
	}
	sort.Float64s(ms)
	for i := range verdicts {
		v := &verdicts[i]
		switch v.Checker {
		case NoPreparedLeftName:
			if v.Measures == nil {
				v.Measures = map[string]float64{}
			}
			v.Measures["in_doubt"] = float64(len(ms))
			v.Measures["blocked_transfers"] = float64(len(blocked))
			if len(ms) > 0 {
				v.Measures["in_doubt_ms_p50"] = results.Percentile(ms, 50)
				v.Measures["in_doubt_ms_max"] = ms[len(ms)-1]
				v.Summary += fmt.Sprintf("; %d in doubt (p50 %.0f ms, max %.0f ms), %d transfers blocked by them",
					len(ms), results.Percentile(ms, 50), ms[len(ms)-1], len(blocked))
			}
		case OutboxDeliveryName:
			rep.Counters["apply-delay-ms-p50"] = int64(math.Round(v.Measures["delay_ms_p50"]))
			rep.Counters["apply-delay-ms-p99"] = int64(math.Round(v.Measures["delay_ms_p99"]))
		}
	}
	rep.Verdicts = append(verdicts, b.bankReads(impl))

	for _, t := range b.ts {
		rep.Counters["transfers-"+t.Status]++
	}
	rep.Counters["crashed"] = b.crashed
	rep.Counters["lock-timeouts"] = b.lockTimeouts
	rep.Counters["incomplete"] = b.incomplete
	rep.Counters["retries"] = b.retries
	total := int64(st.nodes*st.accounts) * st.balance
	for i := range b.reads {
		rep.Counters["reads"]++
		if r := &b.reads[i]; r.has&readValue != 0 && r.value != total {
			rep.Counters["reads-skewed"]++
		}
	}
	rep.Counters["in-doubt"] = int64(len(ms))
	if len(ms) > 0 {
		rep.Counters["in-doubt-ms-max"] = int64(ms[len(ms)-1])
		rep.Counters["in-doubt-ms-p50"] = int64(results.Percentile(ms, 50))
	}
	rep.Counters["blocked"] = int64(len(blocked))
	rep.Counters["recover-ms"] = st.recoverMS
	for k, v := range rep.Counters {
		if v == 0 {
			delete(rep.Counters, k)
		}
	}
	return rep.Verdicts, rep.Counters
}

// blockedTransfers are the transfers that touched a row an in-doubt
// prepared transaction held (the in-doubt transfer's account on that node),
// started while it was in doubt, and then failed or took at least
// blocked-min: the cost of 2PC's blocking.
func (b *BankBuilder) blockedTransfers() map[string]bool {
	st, ts := &b.st, b.ts
	out := map[string]bool{}
	if len(st.inDoubt) == 0 {
		return out
	}
	byID := map[string]int{}
	for i := range ts {
		byID[ts[i].Transfer.ID] = i
	}
	for _, d := range st.inDoubt {
		xi, ok := byID[d.transfer]
		if !ok {
			continue
		}
		x := ts[xi]
		var held []Account
		for _, a := range []Account{x.Transfer.From, x.Transfer.To} {
			if a.Node == d.node {
				held = append(held, a)
			}
		}
		end := d.resolved
		if end < 0 {
			end = math.MaxInt64
		}
		for i := range ts {
			t, invoke := &ts[i], b.tInv[i].time
			if t.Transfer.ID == d.transfer || invoke < d.prepared || invoke >= end {
				continue
			}
			touches := false
			for _, a := range held {
				touches = touches || t.Transfer.From == a || t.Transfer.To == a
			}
			if !touches {
				continue
			}
			// t.Time is the completion's time, or the invocation's when it never completed (Index -1)
			if t.Status != StatusOK || t.Index < 0 || time.Duration(t.Time-invoke) >= st.blockedMin {
				out[t.Transfer.ID] = true
			}
		}
	}
	return out
}

// bankReads judges the readers' snapshots: a negative amount seen is a
// violation; where transfers never leave a node (single-db), a node sum
// other than its initial total is a torn local transaction. A cross-node
// total other than the initial total is money in flight between the
// nodes (measured: skewed reads).
func (b *BankBuilder) bankReads(impl string) results.Verdict {
	st := &b.st
	v := results.Verdict{Checker: BankReadsName, Impl: impl, Valid: results.Valid, Measures: map[string]float64{}}
	nodeTotal := int64(st.accounts) * st.balance
	total := nodeTotal * int64(st.nodes)
	var reads, skewed int
	var maxSkew int64
	for i := range b.reads {
		r := &b.reads[i]
		if r.has&readValue == 0 {
			continue
		}
		reads++
		if d := r.value - total; d != 0 {
			skewed++
			maxSkew = max(maxSkew, abs64(d))
		}
		if r.negative > 0 {
			v.Violations = append(v.Violations, results.Violation{Kind: "negative-read", Processes: []int{int(r.process)}, Time: r.time,
				Indexes: []int64{r.index}, Description: fmt.Sprintf("reader %d saw %d negative balance/frozen/pending amounts", r.process, r.negative)})
		}
		if st.singleNode {
			for node := range st.nodes {
				s, ok := b.sum(i, node)
				if ok && s != nodeTotal {
					v.Violations = append(v.Violations, results.Violation{Kind: "torn-read", Processes: []int{int(r.process)}, Time: r.time,
						Keys: []string{NodeName(node)}, Indexes: []int64{r.index},
						Description: fmt.Sprintf("reader %d saw node %s hold %d, not %d: transfers within one node must keep its total in every snapshot",
							r.process, NodeName(node), s, nodeTotal)})
				}
			}
		}
	}
	v.Count = len(v.Violations)
	if len(v.Violations) > 0 {
		v.Valid = results.Invalid
		if len(v.Violations) > 20 {
			v.Violations = v.Violations[:20]
		}
	}
	v.Measures["reads"] = float64(reads)
	v.Measures["skewed_reads"] = float64(skewed)
	v.Measures["skew_max"] = float64(maxSkew)
	if reads > 0 {
		v.Measures["skewed_fraction"] = float64(skewed) / float64(reads)
	}
	v.Summary = fmt.Sprintf("%d reads, %d saw money in flight between the nodes (max %d), %d violations", reads, skewed, maxSkew, v.Count)
	return v
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// BankHistorySnapshot decodes the snapshot a bank history holds (its
// Decisions is the size of the decision log).
func BankHistorySnapshot(ops []history.Op) (BankSnapshot, error) {
	st, err := parseBankState(ops)
	st.snap.Decisions = st.decisions
	return st.snap, err
}
