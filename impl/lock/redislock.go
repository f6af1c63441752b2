package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"
)

// redislock adapts github.com/bsm/redislock on one Redis node (SET NX PX via
// Lua, compare-and-delete release, compare-and-pexpire refresh); Acquire
// uses the library's exponential retry strategy ("retry-min" .. "retry-max")
// until ctx ends. A lease can be released or refreshed only through the
// Locker that acquired it (the library's *Lock is kept by token). It promises
// what redis-setnx promises and breaks the same ways: no fencing, a holder
// pausing past the ttl, node failover or restart (bsm/redislock #30).
func init() {
	Register(Info{
		Name:       "redislock",
		Doc:        "bsm/redislock on one Redis; same guarantees and failure modes as redis-setnx",
		RedisNodes: 1,
		Options:    redisSingleOptions,
		New:        newRedislock,
	})
}

type redislockLocker struct {
	rc    *redis.Client
	c     *redislock.Client
	bo    backoff
	clock func() time.Time

	mu    sync.Mutex
	locks map[string]*redislock.Lock // by owner token
}

func newRedislock(ctx context.Context, ep Endpoints, opt Options) (Locker, error) {
	p := params(opt.Params)
	bo, err := backoffFrom(p, JitterFull)
	if err != nil {
		return nil, fmt.Errorf("lock redislock: %w", err)
	}
	cs, err := newRedisClients(ep, p, 0, "redislock")
	if err != nil {
		return nil, err
	}
	l := &redislockLocker{rc: cs[0], c: redislock.New(cs[0]), bo: bo, clock: opt.Clock(), locks: map[string]*redislock.Lock{}}
	return WithOptions(l, opt), nil
}

func (r *redislockLocker) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	// The library stops after ttl when ctx has no deadline: go round again.
	return acquireLoop(ctx, r.bo, func(ctx context.Context) (Lease, error) {
		return r.obtain(ctx, key, ttl, redislock.ExponentialBackoff(r.bo.min, r.bo.max))
	})
}

func (r *redislockLocker) TryAcquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return r.obtain(ctx, key, ttl, redislock.NoRetry())
}

func (r *redislockLocker) obtain(ctx context.Context, key string, ttl time.Duration, retry redislock.RetryStrategy) (Lease, error) {
	if err := checkTTL(ttl); err != nil {
		return Lease{}, err
	}
	token := newToken() // ours, so an attempt of unknown outcome can be cleaned up
	start := r.clock()
	lk, err := r.c.Obtain(ctx, key, ttl, &redislock.Options{RetryStrategy: retry, Token: token})
	switch {
	case err == nil:
		r.mu.Lock()
		r.locks[token] = lk
		r.mu.Unlock()
		return Lease{Key: key, Token: token, Expiry: start.Add(ttl)}, nil
	case errors.Is(err, redislock.ErrNotObtained):
		return Lease{}, fmt.Errorf("%w: redislock %q: %w", ErrNotAcquired, key, err)
	}
	// A context error or a connection error: the last attempt may have landed.
	return Lease{}, settle(ctx, fmt.Errorf("lock redislock: acquire %q: %w", key, err), func(ctx context.Context) error {
		return casRelease(ctx, r.rc, key, token)
	})
}

func (r *redislockLocker) lock(l Lease) *redislock.Lock {
	r.mu.Lock()
	defer r.mu.Unlock()
	lk := r.locks[l.Token]
	if lk == nil || lk.Key() != l.Key {
		return nil
	}
	return lk
}

func (r *redislockLocker) Release(ctx context.Context, l Lease) error {
	lk := r.lock(l)
	if lk == nil {
		return fmt.Errorf("%w: redislock %q: not acquired through this Locker", ErrNotHeld, l.Key)
	}
	err := lk.Release(ctx)
	if err == nil || errors.Is(err, redislock.ErrLockNotHeld) {
		r.mu.Lock()
		delete(r.locks, l.Token)
		r.mu.Unlock()
	}
	if errors.Is(err, redislock.ErrLockNotHeld) {
		return fmt.Errorf("%w: %w", ErrNotHeld, err)
	}
	return err
}

func (r *redislockLocker) Refresh(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	lk := r.lock(l)
	if lk == nil {
		return Lease{}, fmt.Errorf("%w: redislock %q: not acquired through this Locker", ErrNotHeld, l.Key)
	}
	start := r.clock()
	if err := lk.Refresh(ctx, ttl, nil); err != nil {
		if errors.Is(err, redislock.ErrNotObtained) {
			return Lease{}, fmt.Errorf("%w: %w", ErrNotHeld, err)
		}
		return Lease{}, err
	}
	l.Expiry = start.Add(ttl)
	return l, nil
}

func (r *redislockLocker) Close() error { return r.rc.Close() }
