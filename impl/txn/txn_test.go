package txn_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/jackc/pgx/v5"
)

func TestRegistry(t *testing.T) {
	want := []string{"2pc", "2pc-nolog", "outbox", "outbox-no-dedup", "saga", "single-db", "tcc", "tcc-nobarrier"}
	var got []string
	for _, i := range txn.All() {
		got = append(got, i.Name)
		if i.Doc == "" || i.New == nil || i.PostgresNodes != 2 {
			t.Errorf("%s: incomplete info %+v", i.Name, i)
		}
		if strings.Contains(i.Name, "no") != i.Mutant {
			t.Errorf("%s: mutant flag %v", i.Name, i.Mutant)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("registered %v, want %v", got, want)
	}
	if _, err := txn.Lookup("nope"); err == nil {
		t.Fatal("Lookup of an unknown name succeeded")
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, txn.ClassOK},
		{txn.ErrInsufficientFunds, txn.ClassFail},
		{fmt.Errorf("x: %w", txn.ErrAborted), txn.ClassFail},
		{txn.ErrCrashed, txn.ClassInfo},
		{errors.New("connection reset"), txn.ClassInfo},
	} {
		if got := txn.Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// Every implementation, no faults, concurrent transfers: every invariant
// holds and nothing is left prepared.
func TestNoFaults(t *testing.T) {
	needEnv(t)
	for _, info := range txn.All() {
		t.Run(info.Name, func(t *testing.T) {
			ep := testEnv.direct
			lay := bank(t, ep)
			tr := newTransferer(t, info.Name, ep, txn.Options{})
			var l ledger
			var wg sync.WaitGroup
			ctx := ctxFor(t, 60*time.Second)
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(w), 7))
					for i := range 25 {
						_, _ = l.do(ctx, tr, randomTransfer(r, fmt.Sprintf("w%d-%d", w, i), info.SingleNode))
					}
				}()
			}
			wg.Wait()
			snap, vs := check(t, info.Name, tr, ep, lay, &l)
			requireValid(t, vs)
			ok := 0
			for _, bt := range l.ts {
				if bt.Status == txn.ClassOK {
					ok++
				} else {
					t.Logf("%s: %s", bt.Status, bt.Error)
				}
			}
			if ok < 50 { // lock timeouts (distributed deadlocks) fail a few
				t.Errorf("only %d/100 transfers succeeded", ok)
			}
			if len(snap.Prepared) != 0 {
				t.Errorf("prepared left: %+v", snap.Prepared)
			}
		})
	}
}

// preparedOn lists the prepared gids of node i.
func preparedOn(t *testing.T, snap txn.Snapshot, node int) []string {
	var gids []string
	for _, p := range snap.Prepared {
		if p.Node == node {
			gids = append(gids, p.GID)
		}
	}
	return gids
}

// TestChaos2PCCrashPoints crashes the 2PC coordinator at each of its six
// crash points, checks what remains, measures how long a transfer on a
// locked row stays blocked until Recover, and that Recover restores every
// invariant. 2pc-nolog at after-commit must break conservation.
func TestChaos2PCCrashPoints(t *testing.T) {
	needEnv(t)
	type tc struct {
		impl  string
		at    txn.CrashPoint
		abort bool // the transfer must vote no (insufficient funds) to reach the rollback path
		// prepared after the crash on A and B
		prepA, prepB int
		violated     bool
	}
	cases := []tc{
		{"2pc", txn.CrashBeforePrepare, false, 0, 0, false},
		{"2pc", txn.CrashAfterPrepare, false, 0, 1, false}, // A, the last resource, is never prepared
		{"2pc", txn.CrashBeforeRollback, true, 0, 1, false},
		{"2pc", txn.CrashAfterRollback, true, 0, 0, false},
		{"2pc", txn.CrashBeforeCommit, false, 0, 1, false},
		{"2pc", txn.CrashAfterCommit, false, 0, 1, false},
		{"2pc-nolog", txn.CrashAfterPrepare, false, 0, 1, false},
		{"2pc-nolog", txn.CrashAfterCommit, false, 0, 1, true},
	}
	for _, c := range cases {
		t.Run(c.impl+"/"+string(c.at), func(t *testing.T) {
			ep := testEnv.direct
			lay := bank(t, ep)
			tr := newTransferer(t, c.impl, ep, txn.Options{CrashAt: c.at,
				Match: func(x txn.Transfer) bool { return x.ID == "crash" }})
			amount := int64(70)
			if c.abort {
				amount = initialBalance + 1
			}
			crashT := txn.Transfer{ID: "crash", From: txn.Account{Node: 0, ID: 1}, To: txn.Account{Node: 1, ID: 2}, Amount: amount}
			var l ledger
			ctx := ctxFor(t, 30*time.Second)
			_, err := l.do(ctx, tr, crashT)
			if !errors.Is(err, txn.ErrCrashed) {
				t.Fatalf("transfer: got %v, want ErrCrashed", err)
			}
			crashedAt := time.Now()
			snap, err := txn.TakeSnapshot(ctx, ep)
			if err != nil {
				t.Fatal(err)
			}
			if a, b := len(preparedOn(t, snap, 0)), len(preparedOn(t, snap, 1)); a != c.prepA || b != c.prepB {
				t.Fatalf("after crash: prepared A=%d B=%d, want %d %d", a, b, c.prepA, c.prepB)
			}
			// A transfer touching the in-doubt row (B:2) blocks until
			// Recover releases it; a separate coordinator with a long
			// lock_timeout measures how long.
			//
			// Only for 2pc: 2pc-nolog's naive Recover would roll back the
			// blocked transfer's own prepared branch on A while its
			// coordinator is still live, and that coordinator then commits B
			// alone (money created) — a second way the mutant loses money.
			if c.impl != "2pc" {
				if err := tr.Recover(ctx); err != nil {
					t.Fatalf("recover: %v", err)
				}
				checkCrash(t, c.impl, tr, ep, lay, &l, c.violated)
				return
			}
			blocker := newTransferer(t, c.impl, ep, txn.Options{LockTimeout: 10 * time.Second, OpTimeout: 15 * time.Second})
			done := make(chan time.Time, 1)
			go func() {
				_, _ = l.do(ctx, blocker, txn.Transfer{ID: "blocked", From: txn.Account{Node: 0, ID: 3}, To: txn.Account{Node: 1, ID: 2}, Amount: 5})
				done <- time.Now()
			}()
			var unblocked time.Time
			select {
			case unblocked = <-done:
				if c.prepB > 0 {
					t.Fatalf("a transfer on an in-doubt row finished without waiting (%v)", unblocked.Sub(crashedAt))
				}
			case <-time.After(300 * time.Millisecond): // the wait itself is the measurement
			}
			recStart := time.Now()
			if err := tr.Recover(ctx); err != nil {
				t.Fatalf("recover: %v", err)
			}
			recDone := time.Now()
			if unblocked.IsZero() {
				select {
				case unblocked = <-done:
				case <-ctx.Done():
					t.Fatal("the blocked transfer never finished after Recover")
				}
			}
			if c.prepB > 0 {
				t.Logf("%s at %s: in doubt %v (crash → recovered); blocked transfer waited %v, released %v after Recover started",
					c.impl, c.at, recDone.Sub(crashedAt).Round(time.Millisecond), unblocked.Sub(crashedAt).Round(time.Millisecond),
					unblocked.Sub(recStart).Round(time.Millisecond))
			}
			checkCrash(t, c.impl, tr, ep, lay, &l, c.violated)
		})
	}
}

// checkCrash checks the invariants after a crash and Recover: all valid, or
// (violated) conservation broken with a counterexample naming the crashed
// transfer, its source account and amount.
func checkCrash(t *testing.T, impl string, tr txn.Transferer, ep txn.Endpoints, lay txn.Layout, l *ledger, violated bool) {
	t.Helper()
	snap, vs := check(t, impl, tr, ep, lay, l)
	if len(snap.Prepared) != 0 {
		t.Errorf("prepared left after recovery: %+v", snap.Prepared)
	}
	if !violated {
		requireValid(t, vs)
		return
	}
	cons := vs[checker.ConservationName]
	if cons.Valid != results.Invalid {
		t.Fatalf("conservation not caught: %+v", cons)
	}
	desc := ""
	for _, v := range cons.Violations {
		desc += v.Kind + ": " + v.Description + "\n"
	}
	t.Logf("caught:\n%s", desc)
	if !strings.Contains(desc, "crash") || !strings.Contains(desc, "A:1") || !strings.Contains(desc, "70") {
		t.Errorf("counterexample does not name the transfer, accounts and amount:\n%s", desc)
	}
}

// TestChaos2PCParticipantKill kills pg-2 (participant B) between its prepare
// and the decision; the coordinator commits A, B is down; after restart the
// prepared transaction is still there and Recover commits it.
func TestChaos2PCParticipantKill(t *testing.T) {
	needEnv(t)
	ep := testEnv.proxied // the proxied address survives the restart
	lay := bank(t, ep)
	node, ok := testEnv.env.Node("pg-2")
	if !ok {
		t.Fatal("no pg-2")
	}
	tr := newTransferer(t, "2pc", ep, txn.Options{OpTimeout: 2 * time.Second,
		AfterPrepare: func(ctx context.Context, x txn.Transfer) error {
			if x.ID != "kill" {
				return nil
			}
			return node.Kill(ctx)
		}})
	var l ledger
	ctx := ctxFor(t, 60*time.Second)
	out, err := l.do(ctx, tr, txn.Transfer{ID: "kill", From: txn.Account{Node: 0, ID: 1}, To: txn.Account{Node: 1, ID: 2}, Amount: 40})
	if err != nil || !out.Incomplete {
		t.Fatalf("transfer: %v (incomplete=%v), want a durable commit decision with B unfinished", err, out.Incomplete)
	}
	if err := node.Start(ctx); err != nil {
		t.Fatalf("restart pg-2: %v", err)
	}
	snap, err := txn.TakeSnapshot(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	if got := preparedOn(t, snap, 1); len(got) != 1 || got[0] != txn.GID2PC(ep, true, 0, "kill") {
		t.Fatalf("after restart, prepared on B = %v, want the transfer's gid (it must survive the restart)", got)
	}
	_, vs := check(t, "2pc", tr, ep, lay, &l)
	requireValid(t, vs)
}

// balances reads one account.
func account(t *testing.T, snap txn.Snapshot, a txn.Account) txn.AccountState {
	for _, s := range snap.Accounts {
		if s.Account == a {
			return s
		}
	}
	t.Fatalf("no account %s", a)
	return txn.AccountState{}
}

// TestChaosTCCAnomalies injects each TCC anomaly: harmless with the
// barrier (counted, neutralised), caught and counted without it.
func TestChaosTCCAnomalies(t *testing.T) {
	needEnv(t)
	type tc struct {
		name   string
		faults txn.TCCFaults
		amount int64
		kind   string // anomaly kind that must be seen
		// the checker that must fail for tcc-nobarrier ("" = none)
		breaks []string
	}
	cases := []tc{
		{"late-try-debit", txn.TCCFaults{LateTry: txn.BranchDebit}, 30, checker.AnomalyHangingTry,
			[]string{checker.TCCAnomaliesName, checker.NoFrozenLeftName}},
		{"late-try-credit", txn.TCCFaults{LateTry: txn.BranchCredit}, 30, checker.AnomalyHangingTry,
			[]string{checker.TCCAnomaliesName, checker.NoFrozenLeftName}},
		{"duplicate-confirm", txn.TCCFaults{DuplicateConfirm: true}, 30, checker.AnomalyRepeatedConfirm,
			[]string{checker.TCCAnomaliesName, checker.ConservationName, checker.NoNegativeName, checker.NoFrozenLeftName}},
		{"lost-confirm-reply", txn.TCCFaults{LostConfirmReply: true}, 30, checker.AnomalyRepeatedConfirm,
			[]string{checker.TCCAnomaliesName, checker.ConservationName, checker.NoNegativeName}},
		{"duplicate-cancel", txn.TCCFaults{DuplicateCancel: true}, initialBalance + 1, checker.AnomalyRepeatedCancel, nil},
	}
	for _, impl := range []string{"tcc", "tcc-nobarrier"} {
		for _, c := range cases {
			t.Run(impl+"/"+c.name, func(t *testing.T) {
				ep := testEnv.direct
				lay := bank(t, ep)
				tr := newTransferer(t, impl, ep, txn.Options{TCC: c.faults, Match: func(x txn.Transfer) bool { return x.ID == "x" }})
				var l ledger
				ctx := ctxFor(t, 30*time.Second)
				_, err := l.do(ctx, tr, txn.Transfer{ID: "x", From: txn.Account{Node: 0, ID: 1}, To: txn.Account{Node: 1, ID: 2}, Amount: c.amount})
				t.Logf("transfer: %v", err)
				// Unaffected traffic on other accounts.
				for i := range 5 {
					_, _ = l.do(ctx, tr, txn.Transfer{ID: fmt.Sprintf("n%d", i), From: txn.Account{Node: 1, ID: 5}, To: txn.Account{Node: 0, ID: 6}, Amount: 3})
				}
				_, vs := check(t, impl, tr, ep, lay, &l)
				an := vs[checker.TCCAnomaliesName]
				t.Logf("%s: %s", impl, an.Summary)
				if an.Measures[c.kind] < 1 {
					t.Errorf("anomaly %s not seen: %s", c.kind, an.Summary)
				}
				if impl == "tcc" || len(c.breaks) == 0 {
					requireValid(t, vs)
					return
				}
				for _, name := range c.breaks {
					v := vs[name]
					if v.Valid != results.Invalid {
						t.Errorf("%s did not catch %s: %s", name, c.name, v.Summary)
						continue
					}
					t.Logf("caught by %s: %s", name, v.Violations[0].Description)
				}
				if an.Measures[c.kind+"_applied"] < 1 {
					t.Errorf("%s not counted as applied: %s", c.kind, an.Summary)
				}
			})
		}
	}
}

// TestSagaCompensation: a credit to an account that does not exist fails
// the second step; the debit is refunded.
func TestSagaCompensation(t *testing.T) {
	needEnv(t)
	ep := testEnv.direct
	lay := bank(t, ep)
	tr := newTransferer(t, "saga", ep, txn.Options{})
	var l ledger
	ctx := ctxFor(t, 30*time.Second)
	_, err := l.do(ctx, tr, txn.Transfer{ID: "bad", From: txn.Account{Node: 0, ID: 1}, To: txn.Account{Node: 1, ID: 999}, Amount: 50})
	if !errors.Is(err, txn.ErrNoAccount) {
		t.Fatalf("got %v, want ErrNoAccount", err)
	}
	snap, vs := check(t, "saga", tr, ep, lay, &l)
	requireValid(t, vs)
	if a := account(t, snap, txn.Account{Node: 0, ID: 1}); a.Balance != initialBalance {
		t.Fatalf("A:1 = %d after compensation, want %d", a.Balance, initialBalance)
	}
	comp := 0
	for _, e := range snap.Journal {
		if e.Op == txn.OpCompensate && e.Applied {
			comp++
		}
	}
	if comp != 1 {
		t.Fatalf("applied compensations = %d, want 1 (the debit's refund)", comp)
	}
}

// TestChaosOutboxRelayCrash: the relay crashes between publish and mark;
// the message is published twice. outbox applies it once,
// outbox-no-dedup twice (caught).
func TestChaosOutboxRelayCrash(t *testing.T) {
	needEnv(t)
	for _, impl := range []string{"outbox", "outbox-no-dedup"} {
		t.Run(impl, func(t *testing.T) {
			ep := testEnv.direct
			lay := bank(t, ep)
			tr := newTransferer(t, impl, ep, txn.Options{Outbox: txn.OutboxFaults{CrashRelayAfterPublish: 1}})
			var l ledger
			ctx := ctxFor(t, 30*time.Second)
			if _, err := l.do(ctx, tr, txn.Transfer{ID: "m1", From: txn.Account{Node: 0, ID: 1}, To: txn.Account{Node: 1, ID: 2}, Amount: 25}); err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if _, err := l.do(ctx, tr, txn.Transfer{ID: fmt.Sprintf("m%d", i+2), From: txn.Account{Node: 1, ID: 3}, To: txn.Account{Node: 0, ID: 4}, Amount: 2}); err != nil {
					t.Fatal(err)
				}
			}
			snap, vs := check(t, impl, tr, ep, lay, &l)
			pub := 0
			for _, o := range snap.Outbox {
				pub += o.Published
			}
			if pub != 7 {
				t.Errorf("published %d messages, want 7 (6 + 1 republished after the crash)", pub)
			}
			od := vs[checker.OutboxDeliveryName]
			t.Logf("%s: %s; delay p50 %.1fms p99 %.1fms", impl, od.Summary, od.Measures["delay_ms_p50"], od.Measures["delay_ms_p99"])
			if impl == "outbox" {
				requireValid(t, vs)
				return
			}
			if od.Valid != results.Invalid || od.Violations[0].Kind != "applied-twice" {
				t.Fatalf("applied-twice not caught: %+v", od)
			}
			if vs[checker.ConservationName].Valid != results.Invalid {
				t.Fatalf("conservation not caught: %+v", vs[checker.ConservationName])
			}
			t.Logf("caught: %s", od.Violations[0].Description)
		})
	}
}

// TestPreparedSQL checks the gid quoting against a quote in the id path:
// IDs with quotes are refused before any SQL runs.
func TestTransferValidation(t *testing.T) {
	needEnv(t)
	ep := testEnv.direct
	bank(t, ep)
	tr := newTransferer(t, "2pc", ep, txn.Options{})
	_, err := tr.Transfer(ctxFor(t, 5*time.Second), txn.Transfer{ID: "x'; DROP TABLE accounts; --", From: txn.Account{Node: 0, ID: 1}, To: txn.Account{Node: 1, ID: 1}, Amount: 1})
	if txn.Classify(err) != txn.ClassFail {
		t.Fatalf("got %v, want a definite failure", err)
	}
	c, err := pgx.Connect(ctxFor(t, 5*time.Second), ep.Participants[0].DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(ctxFor(t, 5*time.Second), `SELECT count(*) FROM accounts`).Scan(&n); err != nil || n != accountsPerNode {
		t.Fatalf("accounts: %d, %v", n, err)
	}
}

// TestBusinessRejections: a transfer the bank refuses (too little money, no
// such account) fails with the matching business error on every
// implementation whose handlers raise it server-side (FL001/FL002), moves
// nothing, and leaves nothing prepared, frozen or unfinished.
func TestBusinessRejections(t *testing.T) {
	needEnv(t)
	a1 := txn.Account{Node: 0, ID: 1}
	cases := []struct {
		impl string
		to   txn.Account
		amt  int64
		want error
	}{
		{"2pc", txn.Account{Node: 1, ID: 1}, initialBalance + 1, txn.ErrInsufficientFunds},
		{"2pc", txn.Account{Node: 1, ID: 999}, 5, txn.ErrNoAccount},
		{"tcc", txn.Account{Node: 1, ID: 1}, initialBalance + 1, txn.ErrInsufficientFunds},
		{"tcc", txn.Account{Node: 1, ID: 999}, 5, txn.ErrNoAccount},
		{"tcc-nobarrier", txn.Account{Node: 1, ID: 1}, initialBalance + 1, txn.ErrInsufficientFunds},
		{"saga", txn.Account{Node: 1, ID: 1}, initialBalance + 1, txn.ErrInsufficientFunds},
		{"saga", txn.Account{Node: 1, ID: 999}, 5, txn.ErrNoAccount},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%s", c.impl, c.want), func(t *testing.T) {
			ep := testEnv.direct
			lay := bank(t, ep)
			tr := newTransferer(t, c.impl, ep, txn.Options{})
			var l ledger
			_, err := l.do(ctxFor(t, 10*time.Second), tr, txn.Transfer{ID: "rej", From: a1, To: c.to, Amount: c.amt})
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			snap, vs := check(t, c.impl, tr, ep, lay, &l)
			requireValid(t, vs)
			if a := account(t, snap, a1); a.Balance != initialBalance || a.Frozen != 0 {
				t.Errorf("%s after the refused transfer: %+v, want balance %d, nothing frozen", a1, a, initialBalance)
			}
			if len(snap.Prepared) != 0 {
				t.Errorf("prepared left: %+v", snap.Prepared)
			}
		})
	}
}

// TestLostFinalState: saga writes a finished saga's final state in
// batches, off the transfer's path (finisher.go), because losing it is
// harmless: the saga reads running again and Recover runs its steps a
// second time, which the step log makes a no-op. Here every final state is
// reverted (lost) before Recover: saga stays valid; with its step log
// emptied too (the saga minus the log that makes a step idempotent), the
// repeated steps apply twice and conservation catches it. (tcc keeps no
// final state: a finished transfer has its confirm rows, and Recover's
// barrier scan never sees it again; TestTCCRecover.)
func TestLostFinalState(t *testing.T) {
	needEnv(t)
	for _, c := range []struct {
		name  string
		valid bool
	}{
		{"saga", true},
		{"saga-without-step-log", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ep := testEnv.direct
			lay := bank(t, ep)
			tr := newTransferer(t, "saga", ep, txn.Options{})
			var l ledger
			ctx := ctxFor(t, 30*time.Second)
			r := rand.New(rand.NewPCG(3, 4))
			for i := range 10 {
				if _, err := l.do(ctx, tr, randomTransfer(r, fmt.Sprintf("lost%d", i), false)); err != nil {
					t.Fatalf("transfer %d: %v", i, err)
				}
			}
			_ = tr.Close() // writes the batched final states
			dsn, err := ep.CoordinatorDSN()
			if err != nil {
				t.Fatal(err)
			}
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			ct, err := conn.Exec(ctx, `UPDATE global_txn SET state = 'running'`)
			if err != nil || ct.RowsAffected() != 10 {
				t.Fatalf("revert the final states: %v rows, %v", ct.RowsAffected(), err)
			}
			if !c.valid {
				for _, p := range ep.Participants {
					pc, err := pgx.Connect(ctx, p.DSN)
					if err != nil {
						t.Fatal(err)
					}
					_, err = pc.Exec(ctx, `DELETE FROM barrier`)
					_ = pc.Close(ctx)
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			rec := newTransferer(t, "saga", ep, txn.Options{})
			_, vs := check(t, "saga", rec, ep, lay, &l)
			if c.valid {
				requireValid(t, vs)
				return
			}
			if v := vs[checker.ConservationName]; v.Valid != results.Invalid {
				t.Errorf("%s: conservation %s, want invalid (the repeated steps applied twice): %s", c.name, v.Valid, v.Summary)
			}
		})
	}
}

// TestGIDPrefixPerRun: prepared-transaction gids are server-wide, so two
// runs on one server (external targets) must not touch each other's. A
// transaction prepared under run b's prefix survives run a's Setup, is
// absent from a's Snapshot and untouched by a's Recover (which does
// resolve a's own in-doubt transfer); b's Recover resolves it. A bad
// prefix is refused.
func TestGIDPrefixPerRun(t *testing.T) {
	needEnv(t)
	ctx := ctxFor(t, 60*time.Second)
	epA, epB := testEnv.direct, testEnv.direct
	epA.GIDPrefix, epB.GIDPrefix = txn.RunGIDPrefix("runa"), txn.RunGIDPrefix("runb")
	other := txn.GID2PC(epB, true, 0, "x")
	c, err := pgx.Connect(ctx, epA.Participants[1].DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS other_run (id int); BEGIN; INSERT INTO other_run VALUES (1); PREPARE TRANSACTION '`+other+`'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = c.Exec(context.Background(), `ROLLBACK PREPARED '`+other+`'`) })
	preparedB := func() bool {
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_xacts WHERE gid = $1`, other).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	bank(t, epA)
	if !preparedB() {
		t.Fatalf("run a's Setup rolled back run b's %s", other)
	}
	crashing := newTransferer(t, "2pc", epA, txn.Options{CrashAt: txn.CrashAfterPrepare})
	if _, err := crashing.Transfer(ctx, txn.Transfer{ID: "y", From: txn.Account{Node: 0, ID: 1}, To: txn.Account{Node: 1, ID: 1}, Amount: 5}); !errors.Is(err, txn.ErrCrashed) {
		t.Fatalf("transfer: %v, want ErrCrashed", err)
	}
	snap, err := txn.TakeSnapshot(ctx, epA)
	if err != nil {
		t.Fatal(err)
	}
	if got := preparedOn(t, snap, 1); len(got) != 1 || got[0] != txn.GID2PC(epA, true, 0, "y") {
		t.Errorf("run a's snapshot lists %v on B, want only its own %s", got, txn.GID2PC(epA, true, 0, "y"))
	}
	if err := newTransferer(t, "2pc", epA, txn.Options{}).Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if snap, err = txn.TakeSnapshot(ctx, epA); err != nil || len(snap.Prepared) != 0 {
		t.Errorf("after run a's Recover: prepared %v (%v), want none of a's", snap.Prepared, err)
	}
	if !preparedB() {
		t.Fatalf("run a's Recover resolved run b's %s", other)
	}
	if err := newTransferer(t, "2pc", epB, txn.Options{}).Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if preparedB() {
		t.Errorf("run b's Recover left its own %s prepared", other)
	}

	bad := testEnv.direct
	bad.GIDPrefix = "app:"
	if _, err := txn.Setup(ctx, bad, 1, 1); err == nil || !strings.Contains(err.Error(), "gid prefix") {
		t.Errorf("Setup with gid prefix %q: %v, want a refusal", bad.GIDPrefix, err)
	}
}
