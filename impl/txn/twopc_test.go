package txn_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/faultline-dev/faultline/infra"
)

// TestTwoPCRecoverDecidesAbortFirst: a Recover runs while a live 2pc
// coordinator is between its debit (A's local transaction open, B's credit
// prepared) and its decision insert. Recover logs abort on the decision
// node (A) and rolls B back; the coordinator's commit-row insert then
// conflicts, so it must roll its debit back: the transfer aborts and
// nothing is half done. The mutant that ignores the conflict commits the
// debit alone: conservation catches it.
func TestTwoPCRecoverDecidesAbortFirst(t *testing.T) {
	needEnv(t)
	ep := testEnv.direct
	for _, tc := range []struct {
		name   string
		mutant bool
	}{{"2pc", false}, {"mutant-ignores-conflict", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxFor(t, 60*time.Second)
			lay := bank(t, ep)
			rec := newTransferer(t, "2pc", ep, txn.Options{})
			var recErr error
			opt := txn.Options{AfterPrepare: func(ctx context.Context, x txn.Transfer) error {
				recErr = rec.Recover(ctx) // the coordinator is live: no min-age
				return nil
			}}
			var tr txn.Transferer
			if tc.mutant {
				var err error
				if tr, err = txn.New2PCIgnoringConflict(ctx, ep, opt); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = tr.Close() })
			} else {
				tr = newTransferer(t, "2pc", ep, opt)
			}
			var l ledger
			x := txn.Transfer{ID: "race", From: txn.Account{Node: 0, ID: 1}, To: txn.Account{Node: 1, ID: 2}, Amount: 70}
			_, err := l.do(ctx, tr, x)
			if recErr != nil {
				t.Fatalf("Recover during the transfer: %v", recErr)
			}
			snap, vs := check(t, "2pc", rec, ep, lay, &l)
			var decisions []string
			for _, d := range snap.Decisions {
				decisions = append(decisions, d.GID+"="+d.Decision+"@"+txn.NodeName(d.Node))
			}
			t.Logf("transfer: %v; decisions %v", err, decisions)
			if tc.mutant {
				if v := vs[checker.ConservationName]; v.Valid != results.Invalid {
					t.Fatalf("the mutant was not caught: conservation %s (%s), transfer %v", v.Valid, v.Summary, err)
				}
				return
			}
			if !errors.Is(err, txn.ErrAborted) {
				t.Errorf("transfer: %v, want ErrAborted (recovery decided abort first)", err)
			}
			requireValid(t, vs)
			want := txn.GID2PC(ep, true, 0, "race") + "=abort@A"
			if len(decisions) != 1 || decisions[0] != want {
				t.Errorf("decisions %v, want [%s]", decisions, want)
			}
			for _, a := range []txn.Account{x.From, x.To} {
				if got := account(t, snap, a).Balance; got != initialBalance {
					t.Errorf("%s: balance %d, want %d (nothing half done)", a, got, initialBalance)
				}
			}
		})
	}
}

// TestTwoPCRecoverWaitsForLiveCommit: a coordinator has inserted its
// commit row on the decision node (A) in its open local transaction, B's
// credit is prepared. Recover's abort insert must wait for that row's
// transaction (the primary key) and then read commit: B commits.
func TestTwoPCRecoverWaitsForLiveCommit(t *testing.T) {
	needEnv(t)
	ep := testEnv.direct
	ctx := ctxFor(t, 60*time.Second)
	lay := bank(t, ep)
	gid := txn.GID2PC(ep, true, 0, "live")
	connect := func(node int) *pgx.Conn {
		c, err := pgx.Connect(ctx, ep.Participants[node].DSN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	a, b := connect(0), connect(1)
	if _, err := b.Exec(ctx, `BEGIN; SELECT fl_credit(2, 30); PREPARE TRANSACTION '`+gid+`'`); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, `BEGIN; SELECT fl_debit(1, 30); INSERT INTO twopc_decisions(gid, decision, participants) VALUES ('`+gid+`', 'commit', '0,1')`); err != nil {
		t.Fatal(err)
	}
	rec := newTransferer(t, "2pc", ep, txn.Options{LockTimeout: 10 * time.Second, OpTimeout: 15 * time.Second})
	done := make(chan error, 1)
	go func() { done <- rec.Recover(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Recover finished (%v) while the coordinator's commit row was uncommitted: it did not wait", err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := a.Exec(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Recover: %v", err)
	}
	snap, err := txn.TakeSnapshot(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Prepared) != 0 {
		t.Errorf("prepared left: %+v", snap.Prepared)
	}
	if got := account(t, snap, txn.Account{Node: 1, ID: 2}).Balance; got != initialBalance+30 {
		t.Errorf("B:2 = %d, want %d: Recover did not commit what the live coordinator decided", got, initialBalance+30)
	}
	var total int64
	for _, s := range snap.Accounts {
		total += s.Balance
	}
	if total != lay.Total {
		t.Errorf("total %d, want %d", total, lay.Total)
	}
}

// TestTwoPCCommitAnswerLost: the commit point runs on the decision node
// (A, the last resource) but its answer is dropped (a downstream timeout
// toxic on A's proxy); once A's commit row is durable the toxic is
// removed, which closes the connection under the waiting read. pgx v5.12
// may report that as "conn closed", a safe-to-retry error, although the
// COMMIT ran: the coordinator must call the transfer in doubt and leave
// B's credit prepared, and Recover must commit it. Trusting
// pgconn.SafeToRetry there (the code before this test) rolled B back:
// 70 destroyed, the external-targets test's "debited B:2 but never
// credited A:61".
func TestTwoPCCommitAnswerLost(t *testing.T) {
	needEnv(t)
	ep := testEnv.proxied
	ctx := ctxFor(t, 60*time.Second)
	lay := bank(t, ep)
	proxy := testEnv.env.ByKind(infra.Postgres)[0].Proxy()
	direct, err := pgx.Connect(ctx, testEnv.direct.Participants[0].DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close(context.Background()) })
	toxic := infra.Toxic{Name: "answer-lost", Type: "timeout", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"timeout": 0}}
	gid := txn.GID2PC(ep, true, 0, "lost-answer")
	healed := make(chan error, 1)
	opt := txn.Options{OpTimeout: 10 * time.Second, AfterPrepare: func(ctx context.Context, x txn.Transfer) error {
		if err := proxy.AddToxic(ctx, toxic); err != nil {
			healed <- err // nothing to heal; the test reads this, not a goroutine's
			return err
		}
		go func() {
			healed <- func() error {
				defer proxy.RemoveToxic(context.Background(), toxic.Name)
				for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); {
					var n int
					if err := direct.QueryRow(ctx, `SELECT count(*) FROM twopc_decisions WHERE gid = $1 AND decision = 'commit'`, gid).Scan(&n); err != nil {
						return err
					}
					if n == 1 {
						return nil
					}
					time.Sleep(10 * time.Millisecond) // poll interval
				}
				return errors.New("the commit row never appeared on A")
			}()
		}()
		return nil
	}}
	tr := newTransferer(t, "2pc", ep, opt)
	var l ledger
	x := txn.Transfer{ID: "lost-answer", From: txn.Account{Node: 0, ID: 1}, To: txn.Account{Node: 1, ID: 2}, Amount: 70}
	_, err = l.do(ctx, tr, x)
	if herr := <-healed; herr != nil {
		t.Fatalf("watching A's commit row: %v", herr)
	}
	if !errors.Is(err, txn.ErrIndeterminate) {
		t.Errorf("transfer: %v, want ErrIndeterminate (the commit point ran, its answer was lost)", err)
	}
	rec := newTransferer(t, "2pc", testEnv.direct, txn.Options{})
	snap, vs := check(t, "2pc", rec, testEnv.direct, lay, &l)
	requireValid(t, vs)
	for a, want := range map[txn.Account]int64{x.From: initialBalance - 70, x.To: initialBalance + 70} {
		if got := account(t, snap, a).Balance; got != want {
			t.Errorf("%s: balance %d, want %d (A's commit is the decision: B commits too)", a, got, want)
		}
	}
}
