package lock_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/jackc/pgx/v5"
)

// TestPgLeaseSchemaCreationRace drops pg-lease's table and sequence, then
// builds several Lockers at once: every one must succeed (CREATE … IF NOT
// EXISTS alone fails here with a unique violation), and leases still work.
func TestPgLeaseSchemaCreationRace(t *testing.T) {
	needEnv(t)
	ctx := ctxFor(t, 20*time.Second)
	conn, err := pgx.Connect(ctx, testEnv.direct.Postgres[0].DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `DROP TABLE IF EXISTS `+lock.PgLeaseTable+`; DROP SEQUENCE IF EXISTS `+lock.PgLeaseSequence); err != nil {
		t.Fatal(err)
	}
	info := mustLookup(t, "pg-lease")
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	lockers := make([]lock.Locker, n)
	for i := range n {
		wg.Go(func() {
			lockers[i], errs[i] = info.New(ctx, endpointsFor(info, testEnv.direct), lock.Options{})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("locker %d: %v", i, err)
		}
		defer lockers[i].Close()
	}
	l := mustAcquire(t, lockers[0], uniqueKey(t), ttl)
	if l.Fence == 0 {
		t.Errorf("fence 0 from pg-lease: want a sequence value")
	}
	var cycle bool
	if err := conn.QueryRow(ctx, `SELECT cycle FROM pg_sequences WHERE sequencename = $1`, lock.PgLeaseSequence).Scan(&cycle); err != nil || cycle {
		t.Errorf("sequence cycle = %v, %v: want NO CYCLE", cycle, err)
	}
}
