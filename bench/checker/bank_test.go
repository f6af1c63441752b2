package checker

import (
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/results"
)

var (
	a1 = Account{Node: 0, ID: 1}
	a2 = Account{Node: 0, ID: 2}
	b1 = Account{Node: 1, ID: 1}
	b2 = Account{Node: 1, ID: 2}
	t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func initial() map[Account]int64 {
	return map[Account]int64{a1: 100, a2: 100, b1: 100, b2: 100}
}

func accts(bal map[Account]int64) []AccountRow {
	var out []AccountRow
	for _, a := range []Account{a1, a2, b1, b2} {
		out = append(out, AccountRow{Account: a, Balance: bal[a]})
	}
	return out
}

func tr(id, status string, from, to Account, amount int64) BankTransfer {
	return BankTransfer{Transfer: Transfer{ID: id, From: from, To: to, Amount: amount}, Status: status, Index: -1}
}

func verdictOf(vs []results.Verdict, name string) results.Verdict {
	for _, v := range vs {
		if v.Checker == name {
			return v
		}
	}
	return results.Verdict{}
}

func TestConservation(t *testing.T) {
	cases := []struct {
		name     string
		bal      map[Account]int64
		ts       []BankTransfer
		want     results.Validity
		kinds    []string // violation kinds expected
		mentions []string
	}{
		{"nothing", map[Account]int64{a1: 100, a2: 100, b1: 100, b2: 100}, nil, results.Valid, nil, nil},
		{"ok transfers", map[Account]int64{a1: 90, a2: 100, b1: 110, b2: 100},
			[]BankTransfer{tr("t1", "ok", a1, b1, 30), tr("t2", "ok", b1, a1, 20)}, results.Valid, nil, nil},
		{"failed transfer did not move", map[Account]int64{a1: 100, a2: 100, b1: 100, b2: 100},
			[]BankTransfer{tr("t1", "fail", a1, b1, 30)}, results.Valid, nil, nil},
		{"info applied", map[Account]int64{a1: 70, a2: 100, b1: 130, b2: 100},
			[]BankTransfer{tr("t1", "info", a1, b1, 30)}, results.Valid, nil, nil},
		{"info not applied", map[Account]int64{a1: 100, a2: 100, b1: 100, b2: 100},
			[]BankTransfer{tr("t1", "info", a1, b1, 30)}, results.Valid, nil, nil},
		{"two info, one applied", map[Account]int64{a1: 70, a2: 95, b1: 130, b2: 105},
			[]BankTransfer{tr("t1", "info", a1, b1, 30), tr("t2", "info", a2, b1, 7), tr("t3", "ok", a2, b2, 5)}, results.Valid, nil, nil},
		{"info half applied: money destroyed", map[Account]int64{a1: 30, a2: 100, b1: 100, b2: 100},
			[]BankTransfer{tr("crash", "info", a1, b1, 70)}, results.Invalid, []string{"money-destroyed", "account-mismatch"},
			[]string{"crash", "A:1", "70", "never credited B:1"}},
		{"ok transfer lost its credit", map[Account]int64{a1: 70, a2: 100, b1: 100, b2: 100},
			[]BankTransfer{tr("t1", "ok", a1, b1, 30)}, results.Invalid, []string{"money-destroyed", "account-mismatch"}, []string{"B:1", "t1"}},
		{"failed transfer moved money", map[Account]int64{a1: 70, a2: 100, b1: 130, b2: 100},
			[]BankTransfer{tr("t1", "fail", a1, b1, 30)}, results.Invalid, []string{"account-mismatch"}, []string{"t1", "A:1", "B:1"}},
		{"double credit", map[Account]int64{a1: 70, a2: 100, b1: 160, b2: 100},
			[]BankTransfer{tr("t1", "ok", a1, b1, 30)}, results.Invalid, []string{"money-created"}, []string{"30 created", "B:1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := BankInput{Impl: "x", Initial: initial(), Transfers: c.ts, Snapshot: BankSnapshot{TakenAt: t0, Accounts: accts(c.bal)}}
			v := Conservation(in)
			if v.Valid != c.want {
				t.Fatalf("valid = %s, want %s: %s %+v", v.Valid, c.want, v.Summary, v.Violations)
			}
			all := ""
			for _, x := range v.Violations {
				all += x.Kind + ": " + x.Description + "\n"
			}
			for _, k := range c.kinds {
				if !strings.Contains(all, k+":") {
					t.Errorf("no %s violation in\n%s", k, all)
				}
			}
			for _, m := range c.mentions {
				if !strings.Contains(all, m) {
					t.Errorf("counterexample does not mention %q:\n%s", m, all)
				}
			}
		})
	}
}

func TestConservationManyInfoNeverFalseAlarm(t *testing.T) {
	// 30 indeterminate transfers A:1→B:1 of 1, 12 applied: beyond the exact
	// search, the per-account fallback must still accept it.
	var ts []BankTransfer
	for i := range 30 {
		ts = append(ts, tr("t"+string(rune('a'+i%26))+string(rune('a'+i/26)), "info", a1, b1, 1))
	}
	bal := map[Account]int64{a1: 88, a2: 100, b1: 112, b2: 100}
	v := Conservation(BankInput{Initial: initial(), Transfers: ts, Snapshot: BankSnapshot{Accounts: accts(bal)}})
	if v.Valid == results.Invalid {
		t.Fatalf("false alarm: %+v", v.Violations)
	}
}

func TestNoNegativeAndPrepared(t *testing.T) {
	s := BankSnapshot{TakenAt: t0, Accounts: accts(map[Account]int64{a1: -5, a2: 105, b1: 100, b2: 100})}
	if v := NoNegative(BankInput{Snapshot: s}); v.Valid != results.Invalid || v.Violations[0].Kind != "negative-balance" {
		t.Fatalf("negative balance not caught: %+v", v)
	}
	s.Accounts[0].Balance = 100
	if v := NoNegative(BankInput{Snapshot: s}); v.Valid != results.Valid {
		t.Fatalf("false alarm: %+v", v)
	}
	if v := NoPreparedLeft(BankInput{Snapshot: s}); v.Valid != results.Valid {
		t.Fatalf("false alarm: %+v", v)
	}
	s.Prepared = []PreparedRow{{Node: 1, GID: "fl:2pc:t9", Prepared: t0.Add(-3 * time.Second)}}
	s.Globals = []GlobalRow{{GID: "fl:tcc:t3", Protocol: "tcc", State: "confirming", TransferID: "t3"}, {GID: "fl:tcc:t4", State: "confirmed"}}
	v := NoPreparedLeft(BankInput{Snapshot: s})
	if v.Valid != results.Invalid || len(v.Violations) != 2 || v.Measures["prepared_max_age_ms"] != 3000 {
		t.Fatalf("prepared/unfinished not caught: %+v", v)
	}
}

func je(seq int64, node int, gid, branch, op string, acct int, amount int64, applied bool, at time.Time) JournalRow {
	return JournalRow{Node: node, Seq: seq, GID: gid, Branch: branch, Op: op, Account: acct, Amount: amount, Applied: applied, At: at}
}

func TestTCC(t *testing.T) {
	old := t0.Add(-10 * time.Second)
	cases := []struct {
		name        string
		journal     []JournalRow
		frozen      map[Account][2]int64 // frozen, pending
		wantAnomaly map[string]float64   // measures expected
		anomalies   results.Validity
		frozenLeft  results.Validity
	}{
		{"normal confirm", []JournalRow{
			je(1, 0, "g", "debit", "try", 1, 10, true, old), je(2, 0, "g", "debit", "confirm", 1, 10, true, old),
			je(1, 1, "g", "credit", "try", 1, 10, true, old), je(2, 1, "g", "credit", "confirm", 1, 10, true, old),
		}, nil, map[string]float64{}, results.Valid, results.Valid},
		{"barrier neutralised everything", []JournalRow{
			je(1, 0, "g", "debit", "cancel", 1, 10, false, old), // empty cancel
			je(2, 0, "g", "debit", "try", 1, 10, false, old),    // hanging try rejected
			je(1, 1, "g", "credit", "try", 1, 10, true, old),
			je(2, 1, "g", "credit", "cancel", 1, 10, true, old),
			je(3, 1, "g", "credit", "cancel", 1, 10, false, old), // repeated cancel
			je(3, 0, "h", "debit", "try", 2, 5, true, old), je(4, 0, "h", "debit", "confirm", 2, 5, true, old),
			je(5, 0, "h", "debit", "confirm", 2, 5, false, old), // repeated confirm
		}, nil, map[string]float64{"empty-cancel": 1, "hanging-try": 1, "repeated-cancel": 1, "repeated-confirm": 1, "hanging-try_applied": 0},
			results.Valid, results.Valid},
		{"hanging try froze money", []JournalRow{
			je(1, 0, "g", "debit", "cancel", 1, 10, false, old),
			je(2, 0, "g", "debit", "try", 1, 10, true, old),
		}, map[Account][2]int64{a1: {10, 0}}, map[string]float64{"empty-cancel": 1, "hanging-try": 1, "hanging-try_applied": 1},
			results.Invalid, results.Invalid},
		{"repeated confirm applied", []JournalRow{
			je(1, 0, "g", "debit", "try", 1, 10, true, old), je(2, 0, "g", "debit", "confirm", 1, 10, true, old),
			je(3, 0, "g", "debit", "confirm", 1, 10, true, old),
		}, map[Account][2]int64{a1: {-10, 0}}, map[string]float64{"repeated-confirm": 1, "repeated-confirm_applied": 1},
			results.Invalid, results.Invalid},
		{"empty cancel applied", []JournalRow{
			je(1, 1, "g", "credit", "cancel", 1, 10, true, old),
		}, map[Account][2]int64{b1: {0, -10}}, map[string]float64{"empty-cancel": 1, "empty-cancel_applied": 1},
			results.Invalid, results.Invalid},
		{"young reservation in flight", []JournalRow{
			je(1, 0, "g", "debit", "try", 1, 10, true, t0.Add(-100*time.Millisecond)),
		}, map[Account][2]int64{a1: {10, 0}}, map[string]float64{}, results.Valid, results.Valid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			as := accts(map[Account]int64{a1: 100, a2: 100, b1: 100, b2: 100})
			for i := range as {
				as[i].Frozen = c.frozen[as[i].Account][0]
				as[i].Pending = c.frozen[as[i].Account][1]
			}
			in := BankInput{Impl: "tcc", Snapshot: BankSnapshot{TakenAt: t0, Accounts: as, Journal: c.journal}, FrozenTimeout: time.Second}
			vs := Bank(in)
			an := verdictOf(vs, TCCAnomaliesName)
			if an.Valid != c.anomalies {
				t.Errorf("tcc-anomalies = %s, want %s: %s %+v", an.Valid, c.anomalies, an.Summary, an.Violations)
			}
			for k, want := range c.wantAnomaly {
				if an.Measures[k] != want {
					t.Errorf("%s = %v, want %v (%s)", k, an.Measures[k], want, an.Summary)
				}
			}
			if fl := verdictOf(vs, NoFrozenLeftName); fl.Valid != c.frozenLeft {
				t.Errorf("no-frozen-left = %s, want %s: %+v", fl.Valid, c.frozenLeft, fl.Violations)
			}
		})
	}
}

func TestOutboxDelivery(t *testing.T) {
	row := func(id string, to Account, amount int64, pub int) OutboxRow {
		return OutboxRow{Node: 0, MsgID: MsgID(id), TransferID: id, To: to, Amount: amount, CreatedAt: t0, SentAt: t0, Published: pub}
	}
	in := func(id string, acct int, applied bool, ms int) InboxRow {
		return InboxRow{Node: 1, MsgID: MsgID(id), TransferID: id, Account: acct, Amount: 10, Applied: applied, At: t0.Add(time.Duration(ms) * time.Millisecond)}
	}
	cases := []struct {
		name  string
		snap  BankSnapshot
		ts    []BankTransfer
		want  results.Validity
		kind  string
		p50ms float64
	}{
		{"exactly once despite a duplicate", BankSnapshot{Outbox: []OutboxRow{row("m1", b1, 10, 2), row("m2", b1, 10, 1)},
			Inbox: []InboxRow{in("m1", 1, true, 4), in("m1", 1, false, 9), in("m2", 1, true, 6)}},
			[]BankTransfer{tr("m1", "ok", a1, b1, 10), tr("m2", "ok", a1, b1, 10)}, results.Valid, "", 4},
		{"applied twice", BankSnapshot{Outbox: []OutboxRow{row("m1", b1, 10, 2)},
			Inbox: []InboxRow{in("m1", 1, true, 4), in("m1", 1, true, 9)}},
			[]BankTransfer{tr("m1", "ok", a1, b1, 10)}, results.Invalid, "applied-twice", 4},
		{"never delivered", BankSnapshot{Outbox: []OutboxRow{row("m1", b1, 10, 0)}},
			[]BankTransfer{tr("m1", "ok", a1, b1, 10)}, results.Invalid, "not-delivered", 0},
		{"acknowledged without message", BankSnapshot{Outbox: []OutboxRow{row("m1", b1, 10, 1)}, Inbox: []InboxRow{in("m1", 1, true, 4)}},
			[]BankTransfer{tr("m1", "ok", a1, b1, 10), tr("m2", "ok", a1, b1, 10)}, results.Invalid, "message-lost", 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := OutboxDelivery(BankInput{Impl: "outbox", Snapshot: c.snap, Transfers: c.ts})
			if v.Valid != c.want {
				t.Fatalf("valid = %s, want %s: %+v", v.Valid, c.want, v)
			}
			if c.kind != "" && v.Violations[0].Kind != c.kind {
				t.Fatalf("kind %s, want %s: %s", v.Violations[0].Kind, c.kind, v.Violations[0].Description)
			}
			if v.Measures["delay_ms_p50"] != c.p50ms {
				t.Errorf("delay p50 = %v, want %v", v.Measures["delay_ms_p50"], c.p50ms)
			}
		})
	}
}

func TestParseAccount(t *testing.T) {
	for _, a := range []Account{{Node: 0, ID: 1}, {Node: 1, ID: 42}} {
		got, err := ParseAccount(a.String())
		if err != nil || got != a {
			t.Errorf("ParseAccount(%s) = %v, %v", a, got, err)
		}
	}
	for _, s := range []string{"", "A", "a:1", "AB:1", "A:x"} {
		if _, err := ParseAccount(s); err == nil {
			t.Errorf("ParseAccount(%q) succeeded", s)
		}
	}
}
