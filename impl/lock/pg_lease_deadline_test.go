package lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/infra"
)

// TestPgLeaseDeadlineMidStatement: an Acquire on a held key whose deadline
// falls while a statement is in flight still ends with a definite
// ErrNotAcquired soon after the deadline. 150 ms of latency on PostgreSQL's
// replies (through Toxiproxy) puts the deadline mid-statement, as a loaded
// scheduler did in CI (TestConformance/pg-lease/acquire-times-out, "clean-up
// failed too"): a connection closed at the deadline must be re-dialled to
// clean up, a SASL handshake of several round trips that cannot fit in the
// 250 ms clean-up budget, so the outcome is left unknown.
func TestPgLeaseDeadlineMidStatement(t *testing.T) {
	needEnv(t)
	info := mustLookup(t, "pg-lease")
	a := newLocker(t, info, lock.Options{})
	b := newLockerOn(t, info, lock.Endpoints{Postgres: testEnv.proxied.Postgres[:1]},
		lock.Options{Params: map[string]string{"dial-timeout": "10s"}})
	key := uniqueKey(t)
	l := mustAcquire(t, a, key, 5*time.Second)
	defer a.Release(ctxFor(t, time.Second), l)

	px := testEnv.env.ByKind(infra.Postgres)[0].Proxy()
	ctx := ctxFor(t, 30*time.Second)
	if err := px.AddToxic(ctx, infra.Toxic{Name: "lease-slow", Type: "latency", Stream: "downstream", Toxicity: 1,
		Attributes: map[string]any{"latency": 150}}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := px.RemoveToxic(context.WithoutCancel(ctx), "lease-slow"); err != nil {
			t.Errorf("remove toxic: %v", err)
		}
	}()
	for i := range 3 {
		const wait = 400 * time.Millisecond
		start := time.Now()
		_, err := b.Acquire(ctxFor(t, wait), key, ttl)
		d := time.Since(start)
		if !errors.Is(err, lock.ErrNotAcquired) {
			t.Fatalf("attempt %d: Acquire on a held key, 150 ms replies: %v after %v, want ErrNotAcquired", i, err, d)
		}
		if d > wait+300*time.Millisecond {
			t.Errorf("attempt %d: Acquire gave up after %v, want about %v", i, d, wait)
		}
	}
}
