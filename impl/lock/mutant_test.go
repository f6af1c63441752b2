package lock_test

import (
	"errors"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
)

func mustLookup(t *testing.T, name string) lock.Info {
	t.Helper()
	info, err := lock.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func TestMutantsAreListedAsMutants(t *testing.T) {
	for _, name := range []string{"redis-seed-literal", "redis-release-unchecked", "redlock-no-quorum", "redis-fence-per-client", "pg-advisory-pool", "redis-acquire-once"} {
		if info := mustLookup(t, name); !info.Mutant {
			t.Errorf("%s: Mutant = false, want true", name)
		}
	}
	for _, name := range []string{"redis-setnx", "redis-fenced", "redlock", "redsync", "redislock", "pg-advisory", "pg-lease"} {
		info := mustLookup(t, name)
		if info.Mutant || info.Doc == "" {
			t.Errorf("%s: Mutant %v, Doc %q: want a documented non-mutant", name, info.Mutant, info.Doc)
		}
	}
}

// releaseAfterExpiry: A's lease expires, B re-acquires, A releases its stale
// lease. It returns A's Release error and whether a third Locker can then
// take the key while B believes it holds it.
func releaseAfterExpiry(t *testing.T, info lock.Info) (error, bool) {
	a, b, c := newLocker(t, info, lock.Options{}), newLocker(t, info, lock.Options{}), newLocker(t, info, lock.Options{})
	key := uniqueKey(t)
	old := mustAcquire(t, a, key, 150*time.Millisecond)
	acquireWhenFree(t, b, key, 2*time.Second)
	relErr := a.Release(ctxFor(t, time.Second), old)
	_, err := c.TryAcquire(ctxFor(t, time.Second), key, ttl)
	return relErr, err == nil
}

func TestReleaseUncheckedDeletesNewHolder(t *testing.T) {
	needEnv(t)
	relErr, third := releaseAfterExpiry(t, mustLookup(t, "redis-release-unchecked"))
	if relErr != nil || !third {
		t.Fatalf("redis-release-unchecked: stale Release = %v, third holder admitted = %v: want nil and true (the mutant frees the new holder's lock)", relErr, third)
	}
	relErr, third = releaseAfterExpiry(t, mustLookup(t, "redis-setnx"))
	if !errors.Is(relErr, lock.ErrNotHeld) || third {
		t.Fatalf("redis-setnx: stale Release = %v, third holder admitted = %v: want ErrNotHeld and false", relErr, third)
	}
}

func TestSeedLiteralCrashAfterSetNXLeaksForever(t *testing.T) {
	needEnv(t)
	info := mustLookup(t, "redis-seed-literal")
	key := uniqueKey(t)
	crashing := newLocker(t, info, lock.Options{Params: map[string]string{"crash-after-setnx": "true"}})
	_, err := crashing.TryAcquire(ctxFor(t, time.Second), key, 200*time.Millisecond)
	if !errors.Is(err, lock.ErrSimulatedCrash) {
		t.Fatalf("TryAcquire with crash-after-setnx: %v, want ErrSimulatedCrash", err)
	}
	_ = crashing.Close()
	raw := rawRedis(t, 0)
	t.Cleanup(func() { raw.Del(ctxFor(t, time.Second), key) })
	elapse(400 * time.Millisecond) // twice the ttl the dead holder asked for
	pttl, err := raw.PTTL(ctxFor(t, time.Second), key).Result()
	if err != nil || pttl != -1 {
		t.Fatalf("PTTL after the crash = %v, %v: want -1 (key with no expiry)", pttl, err)
	}
	wantHeld(t, info, key) // nobody can ever take it
}

func TestSetNXHolderCrashFreesWithinTTL(t *testing.T) {
	needEnv(t)
	info := mustLookup(t, "redis-setnx")
	key := uniqueKey(t)
	const short, slack = 300 * time.Millisecond, 150 * time.Millisecond
	dead := newLocker(t, info, lock.Options{})
	mustAcquire(t, dead, key, short)
	crashed := time.Now()
	_ = dead.Close() // dies holding the lock, never releases
	b := newLocker(t, info, lock.Options{})
	if _, err := b.Acquire(ctxFor(t, short+slack), key, ttl); err != nil {
		t.Fatalf("Acquire after the holder died: %v (want it within ttl %v + slack %v)", err, short, slack)
	}
	t.Logf("recovered %v after the holder crashed (ttl %v)", time.Since(crashed), short)
}

func TestSeedLiteralReleaseGapFreesNewHolder(t *testing.T) {
	needEnv(t)
	info := mustLookup(t, "redis-seed-literal")
	key := uniqueKey(t)
	a := newLocker(t, info, lock.Options{Params: map[string]string{"release-gap": "400ms"}})
	b, c := newLocker(t, info, lock.Options{}), newLocker(t, info, lock.Options{})
	old := mustAcquire(t, a, key, 150*time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- a.Release(ctxFor(t, 2*time.Second), old) }() // GET now, DEL in 400ms
	acquireWhenFree(t, b, key, time.Second)                          // after A's GET, before its DEL
	if err := <-done; err != nil {
		t.Fatalf("A's Release: %v", err)
	}
	if _, err := c.TryAcquire(ctxFor(t, time.Second), key, ttl); err != nil {
		t.Fatalf("TryAcquire by C while B holds: %v, want success (A's DEL removed B's lock)", err)
	}
}

// unreachable makes 5 Redis endpoints of which only the first `up` answer.
func unreachable(up int) lock.Endpoints {
	ep := lock.Endpoints{Redis: append([]lock.RedisEndpoint(nil), testEnv.direct.Redis[:5]...)}
	for i := up; i < 5; i++ {
		ep.Redis[i].Addr = "127.0.0.1:1" // nothing listens: connection refused
	}
	return ep
}

func TestRedlockQuorum(t *testing.T) {
	needEnv(t)
	for _, tc := range []struct {
		impl string
		up   int
		want bool
	}{
		{"redlock", 2, false},
		{"redlock-no-quorum", 2, true},
		{"redlock", 3, true},
		{"redsync", 2, false},
		{"redsync", 3, true},
	} {
		t.Run(tc.impl, func(t *testing.T) {
			l := newLockerOn(t, mustLookup(t, tc.impl), unreachable(tc.up), lock.Options{Params: map[string]string{"tries": "1"}})
			key := uniqueKey(t)
			lease, err := l.TryAcquire(ctxFor(t, 2*time.Second), key, ttl)
			if got := err == nil; got != tc.want {
				t.Fatalf("%s with %d of 5 nodes up: acquired = %v (%v), want %v", tc.impl, tc.up, got, err, tc.want)
			}
			if err == nil {
				_ = l.Release(ctxFor(t, time.Second), lease)
			} else if !errors.Is(err, lock.ErrNotAcquired) {
				t.Errorf("refusal: %v, want ErrNotAcquired", err)
			}
		})
	}
}

// jumpingClock advances by step on every reading: each acquisition appears
// to take step, as with a clock jump or a very slow round.
func jumpingClock(step time.Duration) func() time.Time {
	var now = time.Now()
	return func() time.Time { now = now.Add(step); return now }
}

func TestRedlockValidityCheck(t *testing.T) {
	needEnv(t)
	for _, tc := range []struct {
		impl string
		want bool
	}{{"redlock", false}, {"redlock-no-quorum", true}} {
		t.Run(tc.impl, func(t *testing.T) {
			l := newLocker(t, mustLookup(t, tc.impl), lock.Options{Now: jumpingClock(ttl)})
			lease, err := l.TryAcquire(ctxFor(t, 2*time.Second), uniqueKey(t), ttl)
			if got := err == nil; got != tc.want {
				t.Fatalf("%s when acquiring takes a whole ttl: acquired = %v (%v), want %v", tc.impl, got, err, tc.want)
			}
			if err == nil {
				_ = l.Release(ctxFor(t, time.Second), lease)
			}
		})
	}
}
