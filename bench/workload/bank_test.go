package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/faultline-dev/faultline/infra"
)

// nodeSet is an Env that knows node names only.
type nodeSet []string

func (s nodeSet) Node(name string) (infra.Node, bool) {
	for _, n := range s {
		if n == name {
			return nil, true
		}
	}
	return nil, false
}

func TestBankParams(t *testing.T) {
	env := nodeSet{"pg-1", "pg-2"}
	tpc, _ := txn.Lookup("2pc")
	tcc, _ := txn.Lookup("tcc")
	cases := []struct {
		name   string
		info   txn.Info
		opts   map[string]string // --opt
		params map[string]string // --txn-opt (and deprecated --lock-opt)
		check  func(p bankParams) error
		err    string
	}{
		{"defaults", tpc, nil, nil, func(p bankParams) error {
			if p.accounts != 100 || p.balance != 1000 || p.lockTimeout != 250*time.Millisecond || p.maxInject != 1 || p.after != 10 ||
				p.poll != 50*time.Millisecond || p.transferTimeout != 5*time.Second || p.injecting() {
				return fmt.Errorf("%+v", p)
			}
			return nil
		}, ""},
		{"crash", tpc, map[string]string{"inject-every": "7"}, map[string]string{"crash-at": "after-commit"}, func(p bankParams) error {
			if p.faults.CrashAt != txn.CrashAfterCommit || p.every != 7 || p.maxInject != 0 || !p.injecting() || p.describe() != "crash-at=after-commit" {
				return fmt.Errorf("%+v", p)
			}
			return nil
		}, ""},
		{"deprecated route", tpc, nil, map[string]string{"accounts": "7", "crash-at": "after-prepare"}, func(p bankParams) error {
			if p.accounts != 7 || p.faults.CrashAt != txn.CrashAfterPrepare {
				return fmt.Errorf("%+v", p)
			}
			return nil
		}, ""},
		{"kill", tpc, map[string]string{"kill-after-prepare": "pg-2", "kill-for": "1s", "inject-max": "3", "inject-prob": "0.5"}, nil, func(p bankParams) error {
			if p.killNode != "pg-2" || p.killFor != time.Second || p.maxInject != 3 || p.prob != 0.5 {
				return fmt.Errorf("%+v", p)
			}
			return nil
		}, ""},
		{"bad crash point", tpc, nil, map[string]string{"crash-at": "sometime"}, nil, "want one of before-prepare"},
		{"option of another implementation", tcc, nil, map[string]string{"crash-at": "after-commit"}, nil, `txn tcc has no option "crash-at"`},
		{"unknown option", tpc, map[string]string{"crash_at": "x"}, nil, nil, `workload bank has no option "crash_at"`},
		{"bad node", tpc, map[string]string{"kill-after-prepare": "pg-9"}, nil, nil, "no such node"},
		{"bad number", tpc, map[string]string{"accounts": "1"}, nil, nil, "out of range"},
		{"bad late try", tcc, nil, map[string]string{"late-try": "both"}, nil, "want one of debit, credit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := parseBankParams(Target{Env: env, OpTimeout: 500 * time.Millisecond, Opts: c.opts, Params: c.params}, c.info)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := c.check(p); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestBankChoose(t *testing.T) {
	cases := []struct {
		name   string
		params bankParams
		want   []int64 // transfers 1..30 that get the fault
	}{
		{"none", bankParams{after: 10, maxInject: 1}, nil},
		{"once", bankParams{faults: txn.Options{CrashAt: txn.CrashAfterPrepare}, after: 10, maxInject: 1}, []int64{10}},
		{"every", bankParams{faults: txn.Options{CrashAt: txn.CrashAfterPrepare}, every: 7}, []int64{7, 14, 21, 28}},
		{"every capped", bankParams{faults: txn.Options{TCC: txn.TCCFaults{LateTry: "debit"}}, every: 7, maxInject: 2}, []int64{7, 14}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &bankSession{prm: c.params}
			rng := rand.New(rand.NewPCG(1, 2))
			var got []int64
			for n := int64(1); n <= 30; n++ {
				if p.choose(n, rng) {
					got = append(got, n)
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("chose %v, want %v", got, c.want)
			}
		})
	}
}

func TestBankErrorKind(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{txn.ErrCrashed, "crashed"},
		{fmt.Errorf("tcc x: %w", txn.ErrInsufficientFunds), "insufficient-funds"},
		{fmt.Errorf("%w: 2pc x rolled back: on B: ERROR: canceling statement due to lock timeout (SQLSTATE 55P03)", txn.ErrAborted), "lock-timeout"},
		{fmt.Errorf("%w: log decision: %v", txn.ErrIndeterminate, context.DeadlineExceeded), "timeout"},
		{fmt.Errorf("%w: saga step", txn.ErrIndeterminate), "indeterminate"},
		{fmt.Errorf("%w: recovery decided abort first", txn.ErrAborted), "aborted"},
		{errors.New("connection reset by peer"), "error"},
	} {
		if got := BankErrorKind(c.err); got != c.want {
			t.Errorf("BankErrorKind(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// bankHistory builds a bank history: transfers (id, from, to, amount,
// outcome type), reads, then the resource entries of Finish for snap.
type bankHistory struct {
	ops []history.Op
	now int64
}

func (b *bankHistory) add(op history.Op) {
	b.now += int64(time.Millisecond)
	op.Time, op.Index = b.now, int64(len(b.ops))
	b.ops = append(b.ops, op)
}

func (b *bankHistory) transfer(proc int, id, from, to string, amount int64, typ history.Type, errKind string, took time.Duration) {
	b.add(history.Op{Type: history.Invoke, Process: proc, F: "transfer", Token: id, Value: history.Int(amount),
		Attrs: map[string]string{"from": from, "to": to, "amount": fmt.Sprint(amount)}})
	b.now += int64(took)
	b.add(history.Op{Type: typ, Process: proc, F: "transfer", Token: id, Error: errKind})
}

func (b *bankHistory) read(proc int, a, bb int64, negative int) {
	b.add(history.Op{Type: history.Invoke, Process: proc, F: "read", Key: "bank"})
	b.add(history.Op{Type: history.OK, Process: proc, F: "read", Key: "bank", Value: history.Int(a + bb),
		Attrs: map[string]string{"A": fmt.Sprint(a), "B": fmt.Sprint(bb), "negative": fmt.Sprint(negative)}})
}

func (b *bankHistory) finish(single bool, snap txn.Snapshot, extra ...history.Op) {
	b.add(history.Op{Type: history.OK, Process: history.Resource, F: "bank-layout", Attrs: map[string]string{
		"accounts": "2", "balance": "100", "nodes": "2", "single_node": fmt.Sprint(single), "blocked_min_ms": "100"}})
	for _, op := range extra {
		op.Type, op.Process = history.OK, history.Resource
		b.add(op)
	}
	for _, op := range SnapshotOps(snap) {
		op.Type, op.Process = history.OK, history.Resource
		b.add(op)
	}
}

// balances is a snapshot of accounts A:1 A:2 B:1 B:2.
func balances(a1, a2, b1, b2 int64) txn.Snapshot {
	s := txn.Snapshot{TakenAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for i, v := range []int64{a1, a2, b1, b2} {
		s.Accounts = append(s.Accounts, txn.AccountState{Account: txn.Account{Node: i / 2, ID: i%2 + 1}, Balance: v})
	}
	return s
}

func verdictMap(rep Report) map[string]results.Verdict {
	m := map[string]results.Verdict{}
	for _, v := range rep.Verdicts {
		m[v.Checker] = v
	}
	return m
}

func TestBankCheck(t *testing.T) {
	w := &bankWorkload{}
	t.Run("valid", func(t *testing.T) {
		var b bankHistory
		b.transfer(0, "p0-1", "A:1", "B:2", 10, history.OK, "", time.Millisecond)
		b.transfer(1, "p1-1", "B:1", "A:2", 5, history.Fail, "insufficient-funds", time.Millisecond)
		b.read(ReaderProcess0, 190, 210, 0)
		b.finish(false, balances(90, 100, 100, 110))
		rep := w.Check(b.ops, CheckConfig{Impl: "2pc"})
		for _, v := range rep.Verdicts {
			if v.Valid != results.Valid {
				t.Errorf("%s: %s %s %+v", v.Checker, v.Valid, v.Summary, v.Violations)
			}
		}
		if rep.Counters["transfers-ok"] != 1 || rep.Counters["transfers-fail"] != 1 || rep.Counters["reads"] != 1 || rep.Counters["reads-skewed"] != 0 {
			t.Errorf("counters %v", rep.Counters)
		}
	})
	t.Run("half-applied transfer is caught and named", func(t *testing.T) {
		var b bankHistory
		b.transfer(0, "p0-1", "A:1", "B:2", 10, history.Info, "crashed", time.Millisecond)
		b.finish(false, balances(90, 100, 100, 100)) // debited, never credited
		v := verdictMap(w.Check(b.ops, CheckConfig{Impl: "2pc-nolog"}))[checker.ConservationName]
		if v.Valid != results.Invalid {
			t.Fatalf("conservation %s: %s", v.Valid, v.Summary)
		}
		text := ""
		for _, vi := range v.Violations {
			text += vi.Description + "\n"
		}
		for _, want := range []string{"p0-1", "A:1", "B:2", "10"} {
			if !strings.Contains(text, want) {
				t.Errorf("counterexample does not name %s:\n%s", want, text)
			}
		}
	})
	t.Run("reads", func(t *testing.T) {
		var b bankHistory
		b.read(ReaderProcess0, 200, 200, 0)
		b.read(ReaderProcess0, 195, 200, 0) // torn within node A
		b.read(ReaderProcess0+1, 200, 200, 1)
		b.finish(true, balances(100, 100, 100, 100))
		v := verdictMap(w.Check(b.ops, CheckConfig{Impl: "single-db"}))[checker.BankReadsName]
		kinds := map[string]int{}
		for _, vi := range v.Violations {
			kinds[vi.Kind]++
		}
		if v.Valid != results.Invalid || kinds["torn-read"] != 1 || kinds["negative-read"] != 1 || v.Measures["skewed_reads"] != 1 {
			t.Fatalf("bank-reads %s %v %v", v.Valid, kinds, v.Measures)
		}
		// The same skew across nodes is money in flight, not a violation.
		var c bankHistory
		c.read(ReaderProcess0, 195, 200, 0)
		c.finish(false, balances(100, 100, 100, 100))
		if v := verdictMap(w.Check(c.ops, CheckConfig{Impl: "saga"}))[checker.BankReadsName]; v.Valid != results.Valid {
			t.Fatalf("cross-node skew judged %s", v.Valid)
		}
	})
	t.Run("in doubt and blocked", func(t *testing.T) {
		var b bankHistory
		b.transfer(0, "p0-1", "A:1", "B:2", 10, history.Info, "crashed", time.Millisecond) // prepared on A and B, in doubt
		b.transfer(1, "p1-1", "B:1", "B:2", 5, history.Fail, "lock-timeout", 250*time.Millisecond)
		b.transfer(2, "p2-1", "A:2", "B:2", 5, history.OK, "", 300*time.Millisecond)
		b.transfer(1, "p1-2", "A:2", "B:1", 5, history.OK, "", 300*time.Millisecond) // slow, but not on a held row
		prepared, resolved := b.ops[0].Time, b.now+int64(time.Second)
		doubt := func(node int) history.Op {
			return history.Op{F: "in-doubt", Token: "fl:2pc:p0-1", Value: history.Int(1500), Key: txn.NodeName(node), Attrs: map[string]string{
				"node": fmt.Sprint(node), "transfer": "p0-1", "prepared": fmt.Sprint(prepared), "resolved": fmt.Sprint(resolved), "by": "recover"}}
		}
		b.finish(false, balances(100, 95, 100, 105), doubt(0), doubt(1))
		rep := w.Check(b.ops, CheckConfig{Impl: "2pc"})
		v := verdictMap(rep)[checker.NoPreparedLeftName]
		if rep.Counters["in-doubt"] != 2 || rep.Counters["blocked"] != 2 || rep.Counters["lock-timeouts"] != 1 ||
			v.Measures["in_doubt_ms_max"] != 1500 || v.Measures["blocked_transfers"] != 2 {
			t.Fatalf("counters %v measures %v", rep.Counters, v.Measures)
		}
		if v.Valid != results.Valid {
			t.Fatalf("no-prepared-left %s: %s", v.Valid, v.Summary)
		}
	})
	t.Run("no snapshot", func(t *testing.T) {
		var b bankHistory
		b.transfer(0, "p0-1", "A:1", "B:2", 10, history.OK, "", time.Millisecond)
		rep := w.Check(b.ops, CheckConfig{Impl: "2pc"})
		if len(rep.Verdicts) != 1 || rep.Verdicts[0].Checker != checker.BankSnapshotName || rep.Verdicts[0].Valid != results.Unknown {
			t.Fatalf("verdicts %+v", rep.Verdicts)
		}
	})
}

// The snapshot survives its trip through the history.
func TestBankSnapshotRoundTrip(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	s := balances(1, 2, 3, 4)
	s.Accounts[1].Frozen, s.Accounts[2].Pending = 7, 8
	s.Prepared = []txn.PreparedXact{{Node: 1, GID: "fl:2pc:p0-1", Prepared: at, Database: "faultline"}}
	s.Journal = []txn.JournalEntry{{Node: 0, Seq: 3, GID: "fl:tcc:p1-1", Branch: "debit", Op: "try", Account: 2, Amount: 7, Applied: true, At: at}}
	s.Outbox = []txn.OutboxRow{{Node: 0, MsgID: "fl:msg:p2-1", TransferID: "p2-1", To: txn.Account{Node: 1, ID: 1}, Amount: 3, CreatedAt: at, SentAt: at, Published: 2}}
	s.Inbox = []txn.InboxEntry{{Node: 1, Seq: 1, MsgID: "fl:msg:p2-1", TransferID: "p2-1", Account: 1, Amount: 3, Applied: true, At: at}}
	s.Globals = []txn.GlobalTxn{{GID: "fl:saga:p3-1", Protocol: "saga", State: "running", TransferID: "p3-1", CreatedAt: at, UpdatedAt: at},
		{GID: "fl:saga:p3-2", Protocol: "saga", State: "done", TransferID: "p3-2", CreatedAt: at, UpdatedAt: at}}
	s.Decisions = []txn.Decision{{GID: "fl:2pc:p0-1", Decision: "commit", At: at}}
	var ops []history.Op
	for _, op := range SnapshotOps(s) {
		op.Process = history.Resource
		ops = append(ops, op)
	}
	got, err := checker.BankHistorySnapshot(ops)
	if err != nil {
		t.Fatal(err)
	}
	// The checker's own record types hold every field the workload wrote.
	s.Globals = s.Globals[:1] // finished ones are counted, not kept
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var want checker.BankSnapshot
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	want.Decisions = 1 // counted
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	if got.Outbox[0].Published != 2 || got.Journal[0].Op != checker.OpTry || got.Accounts[1].Frozen != 7 {
		t.Errorf("fields lost: %+v", got)
	}
}

// The checks an implementation asks for (txn.Info.Checks) are named as the
// checker names them: the two packages cannot import each other.
func TestBankCheckNamesAgree(t *testing.T) {
	if txn.CheckTCCAnomalies != checker.TCCAnomaliesName || txn.CheckOutboxDelivery != checker.OutboxDeliveryName {
		t.Fatalf("txn check names %q, %q differ from the checker's %q, %q",
			txn.CheckTCCAnomalies, txn.CheckOutboxDelivery, checker.TCCAnomaliesName, checker.OutboxDeliveryName)
	}
	for _, info := range txn.All() {
		for _, c := range info.Checks {
			if c != checker.TCCAnomaliesName && c != checker.OutboxDeliveryName {
				t.Errorf("%s asks for check %q, which the bank checker does not have", info.Name, c)
			}
		}
	}
	if checker.MsgID("p1-2") != txn.MsgID("p1-2") {
		t.Errorf("message ids differ: checker %q, txn %q", checker.MsgID("p1-2"), txn.MsgID("p1-2"))
	}
}
