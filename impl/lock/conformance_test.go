package lock_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
)

const ttl = 400 * time.Millisecond

// hasTTL says whether leases of an implementation expire on their own
// (pg-advisory's live as long as the session).
func hasTTL(info lock.Info) bool { return info.Name != "pg-advisory" }

// correct lists every registered non-mutant implementation on independent
// nodes (those needing a topology have their own tests: sentinel_test.go).
func correct(t *testing.T) []lock.Info {
	var out []lock.Info
	for _, info := range lock.All() {
		if !info.Mutant && info.Topology == "" {
			out = append(out, info)
			if info.Name == "redlock" {
				out = append(out, withIO(info, lock.IOBlocking))
			}
		}
	}
	if len(out) < 7 {
		t.Fatalf("want at least 7 registered implementations, got %d", len(out))
	}
	return out
}

// withIO is info under the name NAME-io-IO, its Lockers made with the
// io option set to io (redlock's caller-polled fan-out is io=blocking).
func withIO(info lock.Info, io string) lock.Info {
	inner := info.New
	info.Name += "-io-" + io
	info.New = func(ctx context.Context, ep lock.Endpoints, opt lock.Options) (lock.Locker, error) {
		p := maps.Clone(opt.Params)
		if p == nil {
			p = map[string]string{}
		}
		p[lock.OptIO] = io
		opt.Params = p
		return inner(ctx, ep, opt)
	}
	return info
}

// mustAcquire acquires key on l within 2s.
func mustAcquire(t *testing.T, l lock.Locker, key string, ttl time.Duration) lock.Lease {
	t.Helper()
	lease, err := l.Acquire(ctxFor(t, 2*time.Second), key, ttl)
	if err != nil {
		t.Fatalf("Acquire(%q): %v", key, err)
	}
	if lease.Key != key || lease.Token == "" {
		t.Fatalf("Acquire(%q) = %+v: want the key and an owner token", key, lease)
	}
	return lease
}

// wantHeld checks that a fresh Locker cannot take key right now.
func wantHeld(t *testing.T, info lock.Info, key string) {
	t.Helper()
	probe := newLocker(t, info, lock.Options{})
	// A long ttl: the probe never means to hold the key, and redsync times
	// each node round out at 0.05×ttl — 20 ms at the suite's ttl, which a
	// fresh Locker's dial and AUTH on a loaded machine can miss on all five
	// nodes ("a node did not answer" instead of the refusal, CI once).
	const probeTTL = 5 * time.Second
	if l, err := probe.TryAcquire(ctxFor(t, time.Second), key, probeTTL); err == nil {
		_ = probe.Release(ctxFor(t, time.Second), l)
		t.Fatalf("TryAcquire(%q) by another Locker succeeded: the key should still be held", key)
	} else if !errors.Is(err, lock.ErrNotAcquired) {
		t.Fatalf("TryAcquire(%q) by another Locker: %v, want ErrNotAcquired", key, err)
	}
}

// wantFree checks that a fresh Locker can take (and give back) key now.
func wantFree(t *testing.T, info lock.Info, key string) {
	t.Helper()
	probe := newLocker(t, info, lock.Options{})
	l, err := probe.Acquire(ctxFor(t, time.Second), key, ttl) // Acquire: rides out a slow machine
	if err != nil {
		t.Fatalf("Acquire(%q) by another Locker: %v, want the key free", key, err)
	}
	if err := probe.Release(ctxFor(t, time.Second), l); err != nil {
		t.Fatalf("Release by the probe: %v", err)
	}
}

// acquireWhenFree polls TryAcquire on l until it succeeds or within expires.
func acquireWhenFree(t *testing.T, l lock.Locker, key string, within time.Duration) lock.Lease {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		lease, err := l.TryAcquire(ctxFor(t, time.Second), key, ttl)
		if err == nil {
			return lease
		}
		// Not acquired, or indeterminate (a plain error: a node did not
		// answer in time, as redsync's 0.05×ttl per-node timeout does on a
		// loaded machine; CI saw all five time out at once): both are
		// retried until the deadline. An indeterminate attempt may have
		// left this Locker's key on some nodes, which expires by the ttl.
		if time.Now().After(deadline) {
			t.Fatalf("TryAcquire(%q) never succeeded within %v: %v", key, within, err)
		}
		elapse(5 * time.Millisecond)
	}
}

func TestConformance(t *testing.T) {
	needEnv(t)
	for _, info := range correct(t) {
		t.Run(info.Name, func(t *testing.T) {
			t.Run("acquire-release", func(t *testing.T) {
				a := newLocker(t, info, lock.Options{})
				key := uniqueKey(t)
				before := time.Now()
				l := mustAcquire(t, a, key, ttl)
				if !l.Expiry.After(before) || l.Expiry.After(time.Now().Add(ttl)) {
					t.Errorf("Expiry %v not within (now, now+ttl]", l.Expiry)
				}
				wantHeld(t, info, key)
				if err := a.Release(ctxFor(t, time.Second), l); err != nil {
					t.Fatalf("Release: %v", err)
				}
				if err := a.Release(ctxFor(t, time.Second), l); !errors.Is(err, lock.ErrNotHeld) {
					t.Errorf("second Release: %v, want ErrNotHeld", err)
				}
				wantFree(t, info, key)
			})
			t.Run("try-acquire-held-fails-fast", func(t *testing.T) {
				a, b := newLocker(t, info, lock.Options{}), newLocker(t, info, lock.Options{})
				key := uniqueKey(t)
				l := mustAcquire(t, a, key, 5*time.Second)
				defer a.Release(ctxFor(t, time.Second), l)
				start := time.Now()
				_, err := b.TryAcquire(ctxFor(t, 2*time.Second), key, ttl)
				if !errors.Is(err, lock.ErrNotAcquired) {
					t.Fatalf("TryAcquire on a held key: %v, want ErrNotAcquired", err)
				}
				if d := time.Since(start); d > 150*time.Millisecond {
					t.Errorf("TryAcquire on a held key took %v: it must not wait", d)
				}
			})
			t.Run("acquire-times-out", func(t *testing.T) {
				a, b := newLocker(t, info, lock.Options{}), newLocker(t, info, lock.Options{})
				key := uniqueKey(t)
				l := mustAcquire(t, a, key, 5*time.Second)
				defer a.Release(ctxFor(t, time.Second), l)
				const wait = 300 * time.Millisecond
				start := time.Now()
				_, err := b.Acquire(ctxFor(t, wait), key, ttl)
				d := time.Since(start)
				if !errors.Is(err, lock.ErrNotAcquired) {
					t.Fatalf("Acquire on a held key: %v, want ErrNotAcquired at the deadline", err)
				}
				if d < wait-20*time.Millisecond || d > wait+300*time.Millisecond {
					t.Errorf("Acquire gave up after %v, want about %v (the context deadline)", d, wait)
				}
			})
			t.Run("release-by-non-holder", func(t *testing.T) {
				a, b := newLocker(t, info, lock.Options{}), newLocker(t, info, lock.Options{})
				key := uniqueKey(t)
				l := mustAcquire(t, a, key, 5*time.Second)
				defer a.Release(ctxFor(t, time.Second), l)
				forged := l
				forged.Token = "not-the-owner"
				if err := b.Release(ctxFor(t, time.Second), forged); !errors.Is(err, lock.ErrNotHeld) {
					t.Errorf("Release with a wrong token: %v, want ErrNotHeld", err)
				}
				if _, err := b.Refresh(ctxFor(t, time.Second), forged, ttl); !errors.Is(err, lock.ErrNotHeld) {
					t.Errorf("Refresh with a wrong token: %v, want ErrNotHeld", err)
				}
				wantHeld(t, info, key)
			})
			t.Run("release-after-expiry-L8", func(t *testing.T) {
				if !hasTTL(info) {
					t.Skip(info.Name + " leases never expire (they die with the session)")
				}
				a, b := newLocker(t, info, lock.Options{}), newLocker(t, info, lock.Options{})
				key := uniqueKey(t)
				old := mustAcquire(t, a, key, 200*time.Millisecond)
				nl := acquireWhenFree(t, b, key, 2*time.Second)
				if err := a.Release(ctxFor(t, time.Second), old); !errors.Is(err, lock.ErrNotHeld) {
					t.Errorf("stale Release: %v, want ErrNotHeld", err)
				}
				if _, err := a.Refresh(ctxFor(t, time.Second), old, ttl); !errors.Is(err, lock.ErrNotHeld) {
					t.Errorf("stale Refresh: %v, want ErrNotHeld", err)
				}
				wantHeld(t, info, key) // the new holder's key survived
				if err := b.Release(ctxFor(t, time.Second), nl); err != nil {
					t.Errorf("new holder's Release: %v", err)
				}
			})
			t.Run("refresh-extends", func(t *testing.T) {
				a := newLocker(t, info, lock.Options{})
				key := uniqueKey(t)
				l := mustAcquire(t, a, key, 250*time.Millisecond)
				nl, err := a.Refresh(ctxFor(t, time.Second), l, 2*time.Second)
				if err != nil {
					t.Fatalf("Refresh: %v", err)
				}
				if !nl.Expiry.After(l.Expiry) || nl.Token != l.Token || nl.Fence != l.Fence {
					t.Errorf("Refresh = %+v from %+v: want a later expiry, same token and fence", nl, l)
				}
				elapse(400 * time.Millisecond) // past the original ttl
				wantHeld(t, info, key)
				if err := a.Release(ctxFor(t, time.Second), nl); err != nil {
					t.Errorf("Release after Refresh: %v", err)
				}
			})
			t.Run("fencing-increases", func(t *testing.T) {
				if !info.Fencing {
					t.Skip(info.Name + " has no fencing tokens")
				}
				ls := []lock.Locker{newLocker(t, info, lock.Options{}), newLocker(t, info, lock.Options{})}
				key := uniqueKey(t)
				var last uint64
				for i := range 6 {
					l := mustAcquire(t, ls[i%2], key, ttl)
					if l.Fence <= last {
						t.Fatalf("acquisition %d: fence %d after %d, want strictly increasing", i, l.Fence, last)
					}
					last = l.Fence
					if i == 3 { // let one lease expire instead of releasing it
						acquireWhenFree(t, ls[0], key, 2*time.Second)
						continue
					}
					if err := ls[i%2].Release(ctxFor(t, time.Second), l); err != nil {
						t.Fatalf("Release: %v", err)
					}
				}
			})
			t.Run("reentrant", func(t *testing.T) {
				a := newLocker(t, info, lock.Options{Reentrant: true})
				key := uniqueKey(t)
				l1 := mustAcquire(t, a, key, 5*time.Second)
				l2, err := a.TryAcquire(ctxFor(t, time.Second), key, 5*time.Second)
				if err != nil || l2.Token != l1.Token {
					t.Fatalf("re-acquire by the holder = %+v, %v: want the same lease", l2, err)
				}
				if err := a.Release(ctxFor(t, time.Second), l2); err != nil {
					t.Fatalf("first Release: %v", err)
				}
				wantHeld(t, info, key) // one hold left
				if err := a.Release(ctxFor(t, time.Second), l1); err != nil {
					t.Fatalf("second Release: %v", err)
				}
				wantFree(t, info, key)
			})
			t.Run("not-reentrant-by-default", func(t *testing.T) {
				a := newLocker(t, info, lock.Options{})
				key := uniqueKey(t)
				l := mustAcquire(t, a, key, 5*time.Second)
				defer a.Release(ctxFor(t, time.Second), l)
				if _, err := a.TryAcquire(ctxFor(t, time.Second), key, ttl); !errors.Is(err, lock.ErrNotAcquired) {
					t.Errorf("re-acquire without Reentrant: %v, want ErrNotAcquired", err)
				}
			})
			t.Run("watchdog", func(t *testing.T) {
				a := newLocker(t, info, lock.Options{Watchdog: true})
				key := uniqueKey(t)
				const short = 300 * time.Millisecond
				l := mustAcquire(t, a, key, short)
				elapse(5 * short / 2) // well past 2×ttl
				wantHeld(t, info, key)
				cur, ok := lock.Held(a, key)
				if !ok || cur.Token != l.Token || (hasTTL(info) && !cur.Expiry.After(l.Expiry)) {
					t.Errorf("Held = %+v, %v: want the same lease with a later expiry", cur, ok)
				}
				if err := a.Release(ctxFor(t, time.Second), l); err != nil {
					t.Fatalf("Release: %v", err)
				}
				wantFree(t, info, key)
			})
		})
	}
}
