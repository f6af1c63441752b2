package workload

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/faultline-dev/faultline/infra"
)

// TestPGLeaseStandbyFailover runs the real pg-lease through pg-standby's
// FailoverDSN with the same script under both replication modes:
// replication lag on the link (2 s latency on WAL, peer:pg-1 downstream),
// leases acquired, the primary killed and the standby promoted at once,
// then another client tries every key. Asynchronous: each lease was
// acknowledged by the old primary alone and the new primary grants it again
// while the first holder's lease runs (lost acknowledged writes). Sync
// (remote_apply): a grant returns only once the standby applied it, so the
// new primary refuses every key; so it does after a switchover
// (FailoverForce: a clean stop of the primary). The lag is 10x the measured kill+promote
// time, so the verdict does not hang on timing.
func TestPGLeaseStandbyFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	for _, tc := range []struct {
		name     string
		sync     bool
		how      infra.FailoverMode
		wantLost int
	}{
		{"async-kill-loses-leases", false, infra.FailoverKill, 3},
		{"sync-kill-keeps-leases", true, infra.FailoverKill, 0},
		// A clean stop waits until the standby has flushed all WAL.
		{"async-switchover-keeps-leases", false, infra.FailoverForce, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lost, took := pgLeaseFailover(t, tc.sync, tc.how, 3)
			t.Logf("sync=%v %s: %d of 3 acknowledged leases granted again after the failover (promotion %v)", tc.sync, tc.how, lost, took.Round(time.Millisecond))
			if lost != tc.wantLost {
				t.Errorf("lost leases = %d, want %d", lost, tc.wantLost)
			}
		})
	}
}

func pgLeaseFailover(t *testing.T, syncStandby bool, how infra.FailoverMode, keys int) (lost int, promotion time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := infra.Up(ctx, infra.Spec{Provider: "local", Topology: infra.TopologyPGStandby,
		Replication: infra.ReplicationOptions{SyncStandby: syncStandby}})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	defer func() {
		if err := env.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	info, err := lock.Lookup("pg-lease")
	if err != nil {
		t.Fatal(err)
	}
	ep := lock.Endpoints{Postgres: []lock.PostgresEndpoint{{Name: "pg-standby", DSN: env.FailoverDSN()}}}
	newLocker := func() lock.Locker {
		l, err := info.New(ctx, ep, lock.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	holders := make([]lock.Locker, keys)
	for i := range holders {
		holders[i] = newLocker()
	}
	if err := env.WaitReplayed(ctx); err != nil { // the lease schema is on both nodes
		t.Fatal(err)
	}

	link := env.Links()[0]
	if err := link.Proxy().AddToxic(ctx, infra.Toxic{Name: "lag", Type: "latency", Stream: "downstream",
		Attributes: map[string]any{"latency": 2000}}); err != nil {
		t.Fatal(err)
	}
	leases := make([]lock.Lease, keys)
	errs := make([]error, keys)
	var wg sync.WaitGroup
	for i, h := range holders {
		wg.Go(func() {
			actx, acancel := context.WithTimeout(ctx, 10*time.Second)
			defer acancel()
			leases[i], errs[i] = h.Acquire(actx, fmt.Sprintf("k%d", i), time.Minute)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("acquire with replication lag: %v", err)
	}
	res, err := env.Failover(ctx, how)
	if err != nil {
		t.Fatal(err)
	}
	// A new client: its one connection goes to the promoted primary, so
	// each answer is the new primary's (a client of the dead one would see
	// its first attempt fail and be cleaned up as ErrNotAcquired).
	other := newLocker()
	for _, l := range leases {
		tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := other.TryAcquire(tctx, l.Key, time.Minute)
		tcancel()
		switch {
		case err == nil && l.Expiry.After(time.Now()):
			lost++
			t.Logf("%s granted again (fence %d) while its first lease (fence %d) runs until %s", l.Key, got.Fence, l.Fence, l.Expiry.Format(time.TimeOnly))
		case err != nil && !errors.Is(err, lock.ErrNotAcquired):
			t.Fatalf("%s: no answer from the promoted primary: %v", l.Key, err)
		case err != nil && errors.Unwrap(err) != nil:
			t.Fatalf("%s: attempt failed rather than found the key held: %v", l.Key, err)
		}
	}
	return lost, res.Took
}

// TestTwoPCStandbyFailover runs the real 2pc coordinator with participant
// A on pg-standby through FailoverDSN, participant B on an independent
// server. The coordinator crashes right after B (the source's node, the
// last resource) committed its debit with the decision row; then pg-1 is
// killed and pg-2 promoted. Prepared transactions are WAL-logged: A's is in
// pg_prepared_xacts on the promoted node, and 2pc's Recover commits it from
// B's decision row (the total is kept). The 2pc-nolog mutant's Recover rolls it back: money
// destroyed, the check's twin.
func TestTwoPCStandbyFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Prepared-transaction gids are cluster-wide: participant B is an
	// independent server of its own (txn.Setup resets it for each case).
	envB, err := infra.Up(ctx, infra.Spec{Provider: "local", Nodes: infra.Nodes(0, 1)})
	if err != nil {
		t.Fatalf("Up B: %v", err)
	}
	defer envB.Close(context.Background())
	b, _ := envB.Node("pg-1")
	for _, tc := range []struct {
		impl      string
		wantTotal int64 // after Recover on the promoted node
	}{
		{"2pc", 2000},
		{"2pc-nolog", 1990},
	} {
		t.Run(tc.impl, func(t *testing.T) {
			env, err := infra.Up(ctx, infra.Spec{Provider: "local", Topology: infra.TopologyPGStandby})
			if err != nil {
				t.Fatalf("Up: %v", err)
			}
			defer func() {
				if err := env.Close(context.Background()); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			dsnA, dsnB := env.FailoverDSN(), b.DSN()
			ep := txn.Endpoints{Participants: []txn.PostgresEndpoint{{Name: "A", DSN: dsnA}, {Name: "B", DSN: dsnB}}}
			if _, err := txn.Setup(ctx, ep, 1, 1000); err != nil {
				t.Fatal(err)
			}
			info, err := txn.Lookup(tc.impl)
			if err != nil {
				t.Fatal(err)
			}
			crashing, err := info.New(ctx, ep, txn.Options{CrashAt: txn.CrashAfterCommit})
			if err != nil {
				t.Fatal(err)
			}
			// The source's node (B) commits (the last resource); A's credit stays prepared.
			_, err = crashing.Transfer(ctx, txn.Transfer{ID: "t1", From: txn.Account{Node: 1, ID: 1}, To: txn.Account{Node: 0, ID: 1}, Amount: 10})
			crashing.Close()
			if !errors.Is(err, txn.ErrCrashed) {
				t.Fatalf("transfer with CrashAt %s: %v, want ErrCrashed", txn.CrashAfterCommit, err)
			}
			if err := env.WaitReplayed(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := env.Failover(ctx, infra.FailoverKill); err != nil {
				t.Fatal(err)
			}
			pg2, _ := env.Node("pg-2")
			if gids := preparedOn(t, pg2.DirectDSN()); len(gids) != 1 || gids[0] != txn.GID2PC(ep, tc.impl == "2pc", 1, "t1") {
				t.Fatalf("pg_prepared_xacts on the promoted pg-2: %v, want the credit branch of t1", gids)
			}
			rec, err := info.New(ctx, ep, txn.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer rec.Close()
			if err := rec.Recover(ctx); err != nil {
				t.Fatalf("Recover on the promoted node: %v", err)
			}
			if gids := preparedOn(t, pg2.DirectDSN()); len(gids) != 0 {
				t.Errorf("still prepared after Recover: %v", gids)
			}
			total := balance(t, pg2.DirectDSN()) + balance(t, b.DirectDSN())
			t.Logf("%s: total %d after a failover between its two COMMIT PREPAREDs and Recover", tc.impl, total)
			if total != tc.wantTotal {
				t.Errorf("total = %d, want %d", total, tc.wantTotal)
			}
		})
	}
}

// preparedOn lists the gids in pg_prepared_xacts (every database).
func preparedOn(t *testing.T, dsn string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	rows, _ := c.Query(ctx, "SELECT gid FROM pg_prepared_xacts ORDER BY gid")
	gids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return gids
}

// balance is the sum of the accounts table's balances.
func balance(t *testing.T, dsn string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var sum int64
	if err := c.QueryRow(ctx, "SELECT coalesce(sum(balance), 0)::bigint FROM accounts").Scan(&sum); err != nil {
		t.Fatal(err)
	}
	return sum
}
