package workload

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
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
// new primary refuses every key. The lag is 10x the measured kill+promote
// time, so the verdict does not hang on timing.
func TestPGLeaseStandbyFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	for _, tc := range []struct {
		name     string
		sync     bool
		wantLost int
	}{
		{"async-loses-leases", false, 3},
		{"sync-keeps-leases", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lost, took := pgLeaseFailover(t, tc.sync, 3)
			t.Logf("sync=%v: %d of 3 acknowledged leases granted again after the failover (promotion %v)", tc.sync, lost, took.Round(time.Millisecond))
			if lost != tc.wantLost {
				t.Errorf("lost leases = %d, want %d", lost, tc.wantLost)
			}
		})
	}
}

func pgLeaseFailover(t *testing.T, syncStandby bool, keys int) (lost int, promotion time.Duration) {
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
	res, err := env.Failover(ctx, infra.FailoverKill)
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
