package checker

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// BankBuilder takes one implementation's bank history entry by entry, in
// history order, and keeps only what BankCheck reads: each transfer as one
// BankTransfer (its invocation and completion paired as they arrive) with
// its invocation time, each completed read as a 56-byte record, the
// operations' spans (fault coverage), the fault events, the
// counters of the completion entries, and the snapshot's rows decoded (not
// their entries). No entry is held, so a long run's check needs memory in
// proportion to its transfers, not to its entries and their attribute
// maps. The zero BankBuilder is ready; Add keeps nothing of op but copies
// (StreamImpl reuses it).
type BankBuilder struct {
	st    bankState
	stErr error // the first unreadable bank entry (parseBankState's error)
	tErr  error // the first unreadable transfer (bankTransfers' error)

	ts      []BankTransfer
	tInv    []bankInv        // per transfer: invocation time and process
	pending map[int32]int32  // process → its operation in flight: a transfer's index in ts, or -1
	lastInv map[int32]lastOp // process → its last entry, if an invocation (dropCut)

	reads  []bankRead
	sums   map[int]map[int]int64 // read index → node sums beyond B (nodes > 2)
	open   map[spanKey]int64     // (process, f) → invocation time of its open operation (Coverage)
	spans  []Span
	events []history.Op // nemesis entries (fault windows)

	crashed, lockTimeouts, incomplete, retries int64
	last                                       int64 // time of the last entry added
}

// bankInv is a transfer's invocation time and process.
type bankInv struct {
	time    int64
	process int32
}

// lastOp is a process's last entry when it is an invocation: its time,
// the transfer it invoked (-1: not a transfer), its function, and the
// invocation of that function it replaced as open (prev, if had): what
// DropCut puts back.
type lastOp struct {
	time, prev int64
	transfer   int32
	had        bool
	f          string
}

type spanKey struct {
	process int32
	f       string
}

// Span is one client operation, invocation to completion (math.MaxInt64
// if it never completed), paired per process and function as fault
// coverage pairs a history's entries.
type Span struct{ From, To int64 }

// bankRead is one completed ("ok") read entry: its value, the negative
// amounts it saw and the sums of nodes A and B (56 bytes).
type bankRead struct {
	index, time, value int64
	sum                [2]int64
	process, negative  int32
	has                uint8 // readValue, readSumA, readSumB
}

const (
	readValue uint8 = 1 << iota
	readSumA
	readSumB
)

// interned journal vocabulary: the decoded rows share these.
var bankWords = map[string]string{}

func init() {
	for _, w := range []string{BranchDebit, BranchCredit, OpTry, OpConfirm, OpCancel, OpAction, OpCompensate, "resolve"} {
		bankWords[w] = w
	}
}

func intern(s string) string {
	if w, ok := bankWords[s]; ok {
		return w
	}
	return s
}

// Grow makes room for n more transfers at once (a count of the phase's
// invocations: an upper bound).
func (b *BankBuilder) Grow(n int) {
	if n > cap(b.ts)-len(b.ts) {
		ts := make([]BankTransfer, len(b.ts), len(b.ts)+n)
		copy(ts, b.ts)
		b.ts = ts
		inv := make([]bankInv, len(b.tInv), len(b.tInv)+n)
		copy(inv, b.tInv)
		b.tInv = inv
	}
}

// Add takes the next entry of the history.
func (b *BankBuilder) Add(op *history.Op) {
	if b.pending == nil {
		b.pending, b.lastInv, b.open = map[int32]int32{}, map[int32]lastOp{}, map[spanKey]int64{}
	}
	b.last = op.Time
	if op.Process < 0 {
		if op.Process == history.Nemesis {
			b.events = append(b.events, *op)
			return
		}
		if b.stErr == nil {
			b.stErr = b.st.add(op)
		}
		return
	}
	proc := int32(op.Process)
	k := spanKey{proc, op.F}
	if op.Type == history.Invoke {
		prev, had := b.open[k]
		b.open[k] = op.Time
		t := int32(-1)
		if op.F == "transfer" {
			t = int32(len(b.ts))
			b.invokeTransfer(op)
		}
		b.pending[proc] = t
		b.lastInv[proc] = lastOp{time: op.Time, prev: prev, transfer: t, had: had, f: op.F}
		return
	}
	delete(b.lastInv, proc)
	if at, ok := b.open[k]; ok {
		delete(b.open, k)
		b.spans = append(b.spans, Span{at, op.Time})
	}
	switch op.Type {
	case history.OK, history.Fail, history.Info:
		if i, ok := b.pending[proc]; ok {
			if i >= 0 {
				b.completeTransfer(&b.ts[i], op)
			}
			delete(b.pending, proc)
		}
	}
	switch {
	case op.F == "transfer":
		switch op.Error {
		case "crashed":
			b.crashed++
		case "lock-timeout":
			b.lockTimeouts++
		}
		if op.Attrs["incomplete"] == "true" {
			b.incomplete++
		}
		if n, err := strconv.Atoi(op.Attrs["retries"]); err == nil {
			b.retries += int64(n)
		}
	case op.F == "read" && op.Type == history.OK:
		b.addRead(op)
	}
}

func (b *BankBuilder) invokeTransfer(op *history.Op) {
	from, err1 := ParseAccount(op.Attrs["from"])
	to, err2 := ParseAccount(op.Attrs["to"])
	amount, err3 := strconv.ParseInt(op.Attrs["amount"], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil && b.tErr == nil {
		b.tErr = fmt.Errorf("transfer %s (history entry %d): %w", op.Token, op.Index, err)
	}
	b.ts = append(b.ts, BankTransfer{Transfer: Transfer{ID: op.Token, From: from, To: to, Amount: amount},
		Status: StatusInfo, Time: op.Time, Index: -1})
	b.tInv = append(b.tInv, bankInv{time: op.Time, process: int32(op.Process)})
}

func (b *BankBuilder) completeTransfer(bt *BankTransfer, op *history.Op) {
	bt.Time, bt.Index, bt.Error = op.Time, op.Index, op.Error
	if d := op.Attrs["detail"]; d != "" {
		bt.Error += ": " + d
	}
	switch op.Type {
	case history.OK:
		bt.Status = StatusOK
	case history.Fail:
		bt.Status = StatusFail
	}
}

func (b *BankBuilder) addRead(op *history.Op) {
	r := bankRead{index: op.Index, time: op.Time, process: int32(op.Process)}
	if op.Value != nil {
		r.value, r.has = *op.Value, readValue
	}
	if n, _ := strconv.Atoi(op.Attrs["negative"]); n > 0 {
		r.negative = int32(min(n, math.MaxInt32))
	}
	for name, v := range op.Attrs {
		node, err := ParseNode(name)
		if err != nil {
			continue
		}
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		switch node {
		case 0:
			r.sum[0], r.has = s, r.has|readSumA
		case 1:
			r.sum[1], r.has = s, r.has|readSumB
		default:
			if b.sums == nil {
				b.sums = map[int]map[int]int64{}
			}
			if b.sums[len(b.reads)] == nil {
				b.sums[len(b.reads)] = map[int]int64{}
			}
			b.sums[len(b.reads)][node] = s
		}
	}
	b.reads = append(b.reads, r)
}

// ParseNode is the participant index NodeName names ("A" → 0, "N26" → 26).
func ParseNode(s string) (int, error) {
	if len(s) == 1 && s[0] >= 'A' && s[0] <= 'Z' {
		return int(s[0] - 'A'), nil
	}
	if len(s) > 1 && s[0] == 'N' {
		if n, err := strconv.Atoi(s[1:]); err == nil && n >= 26 && NodeName(n) == s {
			return n, nil
		}
	}
	return 0, fmt.Errorf("node %q: want A…Z or N26…", s)
}

// sum is read i's sum of node (NodeName(node) in its attributes), and
// whether it has one.
func (b *BankBuilder) sum(i, node int) (int64, bool) {
	r := &b.reads[i]
	switch node {
	case 0:
		return r.sum[0], r.has&readSumA != 0
	case 1:
		return r.sum[1], r.has&readSumB != 0
	}
	s, ok := b.sums[i][node]
	return s, ok
}

// DropCut leaves out, as dropCut does for a history, the transfers of the
// processes whose last entry is an invocation made within window of the
// last entry added: the run died while they were in flight. It returns
// how many invocations it left out (of any function).
func (b *BankBuilder) DropCut(window time.Duration) int {
	n := 0
	drop := map[int32]bool{}
	for proc, l := range b.lastInv {
		if b.last-l.time > int64(window) {
			continue
		}
		n++
		if l.transfer >= 0 {
			drop[l.transfer] = true
		}
		if k := (spanKey{proc, l.f}); l.had {
			b.open[k] = l.prev
		} else {
			delete(b.open, k)
		}
		delete(b.lastInv, proc)
	}
	if len(drop) == 0 {
		return n
	}
	ts, inv := b.ts[:0], b.tInv[:0]
	for i := range b.ts {
		if !drop[int32(i)] {
			ts, inv = append(ts, b.ts[i]), append(inv, b.tInv[i])
		}
	}
	clear(b.ts[len(ts):])
	b.ts, b.tInv = ts, inv
	return n
}

// Spans are the client operations, invocation to completion, in
// completion order, then those never completed (to math.MaxInt64: still in
// flight at the end): what fault coverage counts (opsDuring).
func (b *BankBuilder) Spans() []Span {
	out := b.spans
	for _, at := range b.open {
		out = append(out, Span{at, math.MaxInt64})
	}
	return out
}

// Failovers are the phase's failovers (Failovers), their first write
// being the first transfer acknowledged after the loss.
func (b *BankBuilder) Failovers() []results.Failover {
	return failovers(b.events, func(yield func(invoke, complete int64) bool) {
		for i := range b.ts {
			if b.ts[i].Status == StatusOK && !yield(b.tInv[i].time, b.ts[i].Time) {
				return
			}
		}
	})
}

// add reads one resource entry of a bank history (parseBankState's step).
func (st *bankState) add(op *history.Op) error {
	dec := func(v any) error {
		if err := json.Unmarshal([]byte(op.Attrs["v"]), v); err != nil {
			return fmt.Errorf("history entry %d (%s): %w", op.Index, op.F, err)
		}
		return nil
	}
	atoi := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
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
		err = decodeRow(dec, &st.snap.Accounts)
	case "bank-prepared":
		err = decodeRow(dec, &st.snap.Prepared)
	case "bank-journal":
		var j JournalRow
		err = dec(&j)
		j.Branch, j.Op = intern(j.Branch), intern(j.Op)
		st.snap.Journal = append(st.snap.Journal, j)
	case "bank-outbox":
		err = decodeRow(dec, &st.snap.Outbox)
	case "bank-inbox":
		err = decodeRow(dec, &st.snap.Inbox)
	case "bank-global":
		err = decodeRow(dec, &st.snap.Globals)
	}
	return err
}

// decodeRow decodes one snapshot row with dec and appends it to rows.
func decodeRow[T any](dec func(any) error, rows *[]T) error {
	var r T
	err := dec(&r)
	*rows = append(*rows, r)
	return err
}
