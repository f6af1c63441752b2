package lock_test

import (
	"context"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/infra"
)

// TestWatchdogSlowRefresh: a watchdog refresh slower than ttl/3 but quicker
// than the lease's remaining time keeps the lease. pg-advisory's lock lives
// in its session, and a refresh cut by its deadline costs the connection:
// with the refresh bounded by ttl/3 (the bug behind CI's
// TestConformance/pg-advisory/watchdog flake on a loaded machine) the lock
// is gone here. 180 ms of latency on PostgreSQL's replies stands for the
// loaded scheduler: with ttl 900 ms the first refresh starts at 300 ms, 600
// ms before the lease's expiry, and takes two round trips (it prepares its
// statement), 360 ms; the later ones take one.
func TestWatchdogSlowRefresh(t *testing.T) {
	needEnv(t)
	info := mustLookup(t, "pg-advisory")
	const ttl = 900 * time.Millisecond
	a := newLockerOn(t, info, lock.Endpoints{Postgres: testEnv.proxied.Postgres[:1]}, lock.Options{Watchdog: true})
	key := uniqueKey(t)
	l := mustAcquire(t, a, key, ttl)

	px := testEnv.env.ByKind(infra.Postgres)[0].Proxy()
	ctx := ctxFor(t, 30*time.Second)
	if err := px.AddToxic(ctx, infra.Toxic{Name: "watchdog-slow", Type: "latency", Stream: "downstream", Toxicity: 1,
		Attributes: map[string]any{"latency": 180}}); err != nil {
		t.Fatal(err)
	}
	removed := false
	remove := func() {
		if !removed {
			removed = true
			if err := px.RemoveToxic(context.WithoutCancel(ctx), "watchdog-slow"); err != nil {
				t.Errorf("remove toxic: %v", err)
			}
		}
	}
	defer remove()
	elapse(5 * ttl / 2) // several refreshes, the first 360 ms
	if _, ok := lock.Held(a, key); !ok {
		t.Errorf("after %v of refreshes of 180-360 ms: the watchdog lost the lease", 5*ttl/2)
	}
	remove()
	wantHeld(t, info, key) // on the direct endpoint: the session still holds it
	if err := a.Release(ctxFor(t, 2*time.Second), l); err != nil {
		t.Fatalf("Release: %v", err)
	}
	wantFree(t, info, key)
}
