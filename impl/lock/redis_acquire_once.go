package lock

import (
	"context"
	"time"
)

// redis-acquire-once (mutant) is redis-setnx whose blocking Acquire makes
// one attempt and gives up when the key is held, however much of its
// timeout is left. It is safe — mutual exclusion, expiry and release are
// redis-setnx's — but under contention most acquires fail at once, so a
// service built on it reports "lock busy" where a correct lock would have
// waited a millisecond. Only the availability checker (gave-up-early)
// shows it.
func init() {
	Register(Info{
		Name:       "redis-acquire-once",
		Doc:        "MUTANT: redis-setnx whose Acquire tries once and gives up when the key is held, with its timeout unused",
		Mutant:     true,
		RedisNodes: 1,
		New:        acquireOnceFactory(redisFactory("redis-acquire-once", redisOps{obtain: obtainSetNX, release: releaseCAS, refresh: casRefresh})),
	})
}

// acquireOnceFactory makes Acquire a single TryAcquire.
func acquireOnceFactory(inner Factory) Factory {
	return wrapBare(inner, func(l Locker) Locker { return acquireOnce{l} })
}

// wrapBare builds the inner Locker without the Reentrant and Watchdog
// options, wraps it, and adds the options on top of the wrapper (so a
// re-entrant acquire or a watchdog refresh goes through the mutant's
// behaviour once, as a user's wrapper would).
func wrapBare(inner Factory, wrap func(Locker) Locker) Factory {
	return func(ctx context.Context, ep Endpoints, opt Options) (Locker, error) {
		bare := opt
		bare.Reentrant, bare.Watchdog = false, false
		l, err := inner(ctx, ep, bare)
		if err != nil {
			return nil, err
		}
		return WithOptions(wrap(l), opt), nil
	}
}

// acquireOnce gives up after its first attempt.
type acquireOnce struct{ Locker }

func (a acquireOnce) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return a.Locker.TryAcquire(ctx, key, ttl)
}
