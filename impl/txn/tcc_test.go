package txn_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/impl/txn"
)

// tccCall is one branch handler call a coordinator made before it died.
type tccCall struct{ branch, op string }

// runTCCCalls plays a coordinator's branch calls for transfer t by hand
// (fl_tcc, as tcc.go sends them), in order.
func runTCCCalls(t *testing.T, ep txn.Endpoints, tr txn.Transfer, barrier bool, calls []tccCall) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	for _, c := range calls {
		own, peer := tr.From, tr.To
		if c.branch == txn.BranchCredit {
			own, peer = tr.To, tr.From
		}
		conn, err := pgx.Connect(ctx, ep.Participants[own.Node].DSN)
		if err != nil {
			t.Fatal(err)
		}
		var applied bool
		err = conn.QueryRow(ctx, `SELECT fl_tcc($1, $2, $3, $4, $5, $6, $7, $8)`,
			txn.GIDTCC(tr.ID), c.branch, c.op, own.ID, tr.Amount, peer.Node, peer.ID, barrier).Scan(&applied)
		_ = conn.Close(ctx)
		if err != nil {
			t.Fatalf("%s %s: %v", c.branch, c.op, err)
		}
	}
}

// TestTCCRecover: tcc keeps no coordinator record; Recover finds what a
// crashed coordinator left by scanning the participants' barrier tables
// (an applied try with neither confirm nor cancel), resolves the other
// branch's try (fences it if it never committed) and confirms the
// transfer if both tries applied, else cancels it. Each case is a
// coordinator that died at one point of the protocol; a try of the
// cancelled transfer arriving afterwards (hanging) is then rejected.
// Recover leaves tries younger than RecoverMinAge alone. tcc-nobarrier
// writes no barrier rows: its Recover finds nothing and the reservation
// stays frozen (caught).
func TestTCCRecover(t *testing.T) {
	needEnv(t)
	try := func(b string) tccCall { return tccCall{b, txn.OpTry} }
	cases := []struct {
		name    string
		calls   []tccCall
		confirm bool   // Recover's decision
		late    string // a try that arrives after Recover ("" none)
	}{
		{"after-try-debit", []tccCall{try(txn.BranchDebit)}, false, txn.BranchCredit},
		{"after-try-credit", []tccCall{try(txn.BranchCredit)}, false, txn.BranchDebit},
		{"after-tries", []tccCall{try(txn.BranchDebit), try(txn.BranchCredit)}, true, ""},
		{"after-confirm-credit", []tccCall{try(txn.BranchDebit), try(txn.BranchCredit), {txn.BranchCredit, txn.OpConfirm}}, true, ""},
		{"after-resolve-credit", []tccCall{try(txn.BranchDebit), {txn.BranchCredit, txn.OpResolve}}, false, txn.BranchCredit},
		{"after-cancel-debit", []tccCall{try(txn.BranchCredit), {txn.BranchDebit, txn.OpCancel}}, false, txn.BranchDebit},
	}
	for _, impl := range []string{"tcc", "tcc-nobarrier"} {
		for _, c := range cases {
			if impl == "tcc-nobarrier" && (c.name == "after-resolve-credit" || c.name == "after-cancel-debit") {
				continue // no fence without a barrier
			}
			t.Run(impl+"/"+c.name, func(t *testing.T) {
				ep := testEnv.direct
				lay := bank(t, ep)
				x := txn.Transfer{ID: "x", From: txn.Account{Node: 0, ID: 1}, To: txn.Account{Node: 1, ID: 2}, Amount: 30}
				runTCCCalls(t, ep, x, impl == "tcc", c.calls)
				var l ledger
				l.ts = append(l.ts, checker.BankTransfer{Transfer: checkerTransfer(x), Status: txn.ClassInfo})

				// A live coordinator's young try is left alone.
				young := newTransferer(t, impl, ep, txn.Options{RecoverMinAge: time.Hour})
				if err := young.Recover(ctxFor(t, 30*time.Second)); err != nil {
					t.Fatalf("recover (min age 1h): %v", err)
				}
				snap, err := txn.TakeSnapshot(ctxFor(t, 30*time.Second), ep)
				if err != nil {
					t.Fatal(err)
				}
				if a := account(t, snap, x.From); c.calls[0] == try(txn.BranchDebit) && a.Frozen != 30 {
					t.Errorf("Recover with min age 1h touched the young try: %+v", a)
				}

				rec := newTransferer(t, impl, ep, txn.Options{})
				snap, vs := check(t, impl, rec, ep, lay, &l)
				if impl == "tcc-nobarrier" {
					if v := vs[checker.NoFrozenLeftName]; v.Valid != results.Invalid {
						t.Errorf("no-frozen-left %s, want invalid (nothing to find without a barrier): %s", v.Valid, v.Summary)
					}
					return
				}
				requireValid(t, vs)
				from, to := account(t, snap, x.From), account(t, snap, x.To)
				want := int64(0)
				if c.confirm {
					want = 30
				}
				if from.Balance != initialBalance-want || to.Balance != initialBalance+want {
					t.Errorf("confirmed=%v: from %+v, to %+v", c.confirm, from, to)
				}
				if c.late == "" {
					return
				}
				runTCCCalls(t, ep, x, true, []tccCall{try(c.late)})
				_, vs = check(t, impl, rec, ep, lay, &l)
				requireValid(t, vs)
				if an := vs[checker.TCCAnomaliesName]; an.Measures[checker.AnomalyHangingTry] < 1 {
					t.Errorf("the late %s try was not seen as hanging: %s", c.late, an.Summary)
				}
			})
		}
	}
}

// TestTCCRecoverRace: Recover with no minimum age runs in a loop beside
// live coordinators, so it fences tries in flight and finishes transfers
// their coordinator is still finishing. Both must reach the same decision
// for every transfer: every invariant holds, and every transfer the
// coordinators acknowledged moved money. Rounds of transfers go on until
// the loop has recovered some transfer while its coordinator was live.
func TestTCCRecoverRace(t *testing.T) {
	needEnv(t)
	ep := testEnv.direct
	lay := bank(t, ep)
	tr := newTransferer(t, "tcc", ep, txn.Options{})
	var recovered atomic.Int64
	rec := newTransferer(t, "tcc", ep, txn.Options{Logger: slog.New(countHandler{&recovered})})
	var l ledger
	ctx := ctxFor(t, 120*time.Second)
	stop := make(chan struct{})
	passes := make(chan int)
	go func() {
		n := 0
		defer func() { passes <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := rec.Recover(ctx); err != nil {
				t.Logf("recover: %v", err)
			}
			n++
		}
	}()
	for round := 0; round < 10 && recovered.Load() == 0; round++ {
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(w), uint64(round)))
				for i := range 40 {
					_, _ = l.do(ctx, tr, randomTransfer(r, fmt.Sprintf("r%d-%d-%d", round, w, i), false))
				}
			}()
		}
		wg.Wait()
	}
	close(stop)
	t.Logf("%d Recover passes recovered %d transfers during the load", <-passes, recovered.Load())
	if recovered.Load() == 0 {
		t.Fatal("Recover never met a live transfer: the race was not exercised")
	}
	_, vs := check(t, "tcc", rec, ep, lay, &l)
	requireValid(t, vs)
	counts := map[string]int{}
	for _, bt := range l.ts {
		counts[bt.Status]++
	}
	t.Logf("transfers: %v", counts)
	if counts[txn.ClassInfo] > 0 {
		t.Errorf("%d transfers indeterminate without a fault", counts[txn.ClassInfo])
	}
}

// countHandler counts the log records of Recover finishing a transfer.
type countHandler struct{ n *atomic.Int64 }

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "recovered an in-doubt transfer") {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

// TestTCCRecoverScanOutlivesOpTimeout: Recover's barrier scan reads every
// row of a long run's barrier (600,000 rows after 150 s at 8 clients: longer
// than a 1 s OpTimeout on a loaded machine), so it is bounded by Recover's
// context, not by one call's OpTimeout. The long scan is stood in for by a
// lock: another transaction holds the barrier table until the scan has
// waited 2×OpTimeout. Bounded by OpTimeout (the mutant) the scan fails;
// bounded by the context it finds the try left in doubt and cancels it.
func TestTCCRecoverScanOutlivesOpTimeout(t *testing.T) {
	needEnv(t)
	ep := testEnv.direct
	lay := bank(t, ep)
	x := txn.Transfer{ID: "x", From: txn.Account{Node: 0, ID: 1}, To: txn.Account{Node: 1, ID: 2}, Amount: 30}
	runTCCCalls(t, ep, x, true, []tccCall{{txn.BranchDebit, txn.OpTry}})

	ctx := ctxFor(t, time.Minute)
	conn, err := pgx.Connect(ctx, ep.Participants[0].DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE barrier IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	const opTimeout = 500 * time.Millisecond
	rec := newTransferer(t, "tcc", ep, txn.Options{OpTimeout: opTimeout, LockTimeout: 30 * time.Second})
	done := make(chan error, 1)
	go func() { done <- rec.Recover(ctx) }()
	// Hold the table until the scan has waited for it 2×OpTimeout (or
	// Recover ended without waiting: the error below says why).
	waiting := false
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var recErr error
	finished := false
	for !waiting && !finished {
		select {
		case recErr = <-done:
			finished = true
		case <-tick.C:
			var n int
			// (a transaction sees one snapshot of pg_stat_activity: clear it)
			if _, err := tx.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
				t.Fatal(err)
			}
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FROM barrier t%'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			waiting = n > 0
		case <-ctx.Done():
			t.Fatal("the scan never waited for the barrier table")
		}
	}
	if !finished {
		select {
		case recErr = <-done:
			finished = true
		case <-time.After(2 * opTimeout):
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if !finished {
		recErr = <-done
	}
	if recErr != nil {
		t.Fatalf("recover, its scan held up past the %v OpTimeout: %v", opTimeout, recErr)
	}
	var l ledger
	l.ts = append(l.ts, checker.BankTransfer{Transfer: checkerTransfer(x), Status: txn.ClassInfo})
	snap, vs := check(t, "tcc", newTransferer(t, "tcc", ep, txn.Options{}), ep, lay, &l)
	requireValid(t, vs)
	if a := account(t, snap, x.From); a.Frozen != 0 || a.Balance != initialBalance {
		t.Errorf("the try in doubt was not cancelled: %+v", a)
	}
}
