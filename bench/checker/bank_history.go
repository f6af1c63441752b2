package checker

import (
	"encoding/json"
	"errors"
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
	dec := func(op history.Op, v any) error {
		if err := json.Unmarshal([]byte(op.Attrs["v"]), v); err != nil {
			return fmt.Errorf("history entry %d (%s): %w", op.Index, op.F, err)
		}
		return nil
	}
	atoi := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
	for _, op := range ops {
		if op.Process != history.Resource {
			continue
		}
		var err error
		switch op.F {
		case "bank-layout":
			st.haveLayout = true
			st.accounts = int(atoi(op.Attrs["accounts"]))
			st.balance = atoi(op.Attrs["balance"])
			st.nodes = int(atoi(op.Attrs["nodes"]))
			st.singleNode = op.Attrs["single_node"] == "true"
			st.blockedMin = time.Duration(atoi(op.Attrs["blocked_min_ms"])) * time.Millisecond
			if c := op.Attrs["checks"]; c != "" {
				st.checks = strings.Split(c, ",")
			}
		case "bank-recover":
			if op.Value != nil {
				st.recoverMS = *op.Value
			}
			st.recoverErr = op.Error
		case "in-doubt":
			e := inDoubtEntry{gid: op.Token, transfer: op.Attrs["transfer"], by: op.Attrs["by"], node: int(atoi(op.Attrs["node"])),
				prepared: atoi(op.Attrs["prepared"]), resolved: -1}
			if r, ok := op.Attrs["resolved"]; ok {
				e.resolved = atoi(r)
			}
			if op.Value != nil {
				e.ms = *op.Value
			}
			st.inDoubt = append(st.inDoubt, e)
		case "bank-snapshot":
			st.haveSnap = true
			st.snap.TakenAt, err = time.Parse(time.RFC3339Nano, op.Attrs["taken_at"])
			st.decisions = int(atoi(op.Attrs["decisions"]))
		case "bank-account":
			var a AccountRow
			err = dec(op, &a)
			st.snap.Accounts = append(st.snap.Accounts, a)
		case "bank-prepared":
			var p PreparedRow
			err = dec(op, &p)
			st.snap.Prepared = append(st.snap.Prepared, p)
		case "bank-journal":
			var j JournalRow
			err = dec(op, &j)
			st.snap.Journal = append(st.snap.Journal, j)
		case "bank-outbox":
			var o OutboxRow
			err = dec(op, &o)
			st.snap.Outbox = append(st.snap.Outbox, o)
		case "bank-inbox":
			var i InboxRow
			err = dec(op, &i)
			st.snap.Inbox = append(st.snap.Inbox, i)
		case "bank-global":
			var g GlobalRow
			err = dec(op, &g)
			st.snap.Globals = append(st.snap.Globals, g)
		}
		if err != nil {
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

// bankOp is one transfer of the history.
type bankOp struct {
	BankTransfer
	invoke, end int64 // history ns; end = invoke time if never completed
	done        bool
}

// bankTransfers pairs the transfer entries of a history.
func bankTransfers(ops []history.Op) ([]bankOp, error) {
	var out []bankOp
	for _, o := range Operations(ops) {
		if o.F() != "transfer" {
			continue
		}
		from, err1 := ParseAccount(o.InvokeAttr("from"))
		to, err2 := ParseAccount(o.InvokeAttr("to"))
		amount, err3 := strconv.ParseInt(o.InvokeAttr("amount"), 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("transfer %s (history entry %d): %w", o.InvokeToken(), o.Invoke.Index, err)
		}
		bt := BankTransfer{Transfer: Transfer{ID: o.InvokeToken(), From: from, To: to, Amount: amount},
			Status: StatusInfo, Time: o.Invoke.Time, Index: -1}
		b := bankOp{invoke: o.Invoke.Time, end: o.Invoke.Time}
		if o.Completed() {
			b.done = true
			b.end = o.Complete.Time
			bt.Time, bt.Index, bt.Error = o.Complete.Time, o.Complete.Index, o.Error()
			if d := o.CompleteAttr("detail"); d != "" {
				bt.Error += ": " + d
			}
			switch o.Type() {
			case history.OK:
				bt.Status = StatusOK
			case history.Fail:
				bt.Status = StatusFail
			}
		}
		b.BankTransfer = bt
		out = append(out, b)
	}
	return out, nil
}

// BankCheck decodes a bank history (one implementation's) and runs Bank on the transfers and the snapshot the workload appended, adds the in-doubt measures (time in doubt, transfers blocked
// by in-doubt rows) to the no-prepared-left verdict, judges the readers'
// snapshots (bank-reads) and counts: transfers-ok/fail/info, crashed,
// lock-timeouts, incomplete, retries, in-doubt, in-doubt-ms-max,
// in-doubt-ms-p50, blocked, reads, reads-skewed, recover-ms,
// apply-delay-ms-p50/p99 (outbox).
func BankCheck(ops []history.Op, impl string) ([]results.Verdict, map[string]int64) {
	var rep struct {
		Verdicts []results.Verdict
		Counters map[string]int64
	}
	rep.Counters = map[string]int64{}
	st, err := parseBankState(ops)
	ts, terr := bankTransfers(ops)
	if err == nil {
		err = terr
	}
	if err != nil || !st.haveLayout || !st.haveSnap {
		why := "the history has no bank snapshot: the phase stopped before Finish (nothing can be said about the final state)"
		if err != nil {
			why = "the bank entries of the history are unreadable: " + err.Error()
		}
		rep.Verdicts = append(rep.Verdicts, results.Verdict{Checker: BankSnapshotName, Impl: impl, Valid: results.Unknown, Summary: why})
		return rep.Verdicts, rep.Counters
	}
	in := BankInput{Impl: impl, Checks: st.checks, Initial: st.initial(), Snapshot: st.snap}
	for _, t := range ts {
		in.Transfers = append(in.Transfers, t.BankTransfer)
	}
	verdicts := Bank(in)

	// In doubt and blocked.
	blocked := blockedTransfers(st, ts)
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
	rep.Verdicts = append(verdicts, bankReads(ops, st, impl))

	for _, t := range ts {
		rep.Counters["transfers-"+t.Status]++
	}
	for _, op := range ops {
		if op.Process < 0 {
			continue
		}
		switch {
		case op.F == "transfer" && op.Type != history.Invoke:
			switch op.Error {
			case "crashed":
				rep.Counters["crashed"]++
			case "lock-timeout":
				rep.Counters["lock-timeouts"]++
			}
			if op.Attrs["incomplete"] == "true" {
				rep.Counters["incomplete"]++
			}
			if n, err := strconv.Atoi(op.Attrs["retries"]); err == nil {
				rep.Counters["retries"] += int64(n)
			}
		case op.F == "read" && op.Type == history.OK:
			rep.Counters["reads"]++
			if op.Value != nil && *op.Value != int64(st.nodes*st.accounts)*st.balance {
				rep.Counters["reads-skewed"]++
			}
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
func blockedTransfers(st bankState, ts []bankOp) map[string]bool {
	byID := map[string]bankOp{}
	for _, t := range ts {
		byID[t.Transfer.ID] = t
	}
	out := map[string]bool{}
	for _, d := range st.inDoubt {
		x, ok := byID[d.transfer]
		if !ok {
			continue
		}
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
		for _, t := range ts {
			if t.Transfer.ID == d.transfer || t.invoke < d.prepared || t.invoke >= end {
				continue
			}
			touches := false
			for _, a := range held {
				touches = touches || t.Transfer.From == a || t.Transfer.To == a
			}
			if !touches {
				continue
			}
			if t.Status != StatusOK || !t.done || time.Duration(t.end-t.invoke) >= st.blockedMin {
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
func bankReads(ops []history.Op, st bankState, impl string) results.Verdict {
	v := results.Verdict{Checker: BankReadsName, Impl: impl, Valid: results.Valid, Measures: map[string]float64{}}
	nodeTotal := int64(st.accounts) * st.balance
	total := nodeTotal * int64(st.nodes)
	var reads, skewed int
	var maxSkew int64
	for _, op := range ops {
		if op.F != "read" || op.Type != history.OK || op.Process < 0 || op.Value == nil {
			continue
		}
		reads++
		if d := *op.Value - total; d != 0 {
			skewed++
			maxSkew = max(maxSkew, abs64(d))
		}
		if n, _ := strconv.Atoi(op.Attrs["negative"]); n > 0 {
			v.Violations = append(v.Violations, results.Violation{Kind: "negative-read", Processes: []int{op.Process}, Time: op.Time,
				Indexes: []int64{op.Index}, Description: fmt.Sprintf("reader %d saw %d negative balance/frozen/pending amounts", op.Process, n)})
		}
		if st.singleNode {
			for node := range st.nodes {
				s, err := strconv.ParseInt(op.Attrs[NodeName(node)], 10, 64)
				if err == nil && s != nodeTotal {
					v.Violations = append(v.Violations, results.Violation{Kind: "torn-read", Processes: []int{op.Process}, Time: op.Time,
						Keys: []string{NodeName(node)}, Indexes: []int64{op.Index},
						Description: fmt.Sprintf("reader %d saw node %s hold %d, not %d: transfers within one node must keep its total in every snapshot",
							op.Process, NodeName(node), s, nodeTotal)})
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
