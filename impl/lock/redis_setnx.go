package lock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// redis-setnx is the single-node Redis lock: SET key token NX PX ttl to
// acquire, a Lua compare-and-delete to release and a Lua compare-and-pexpire
// to refresh, so a client never frees or extends a lock it no longer holds.
// It promises mutual exclusion only while the holder finishes within the ttl
// and the one Redis node keeps its data; it breaks when the holder pauses or
// its writes are delayed past the ttl (no fencing), and on node failover or a
// restart without persistence.
func init() {
	Register(Info{
		Name:       "redis-setnx",
		Doc:        "SET NX PX + Lua compare-and-delete on one Redis; unsafe past the ttl (no fencing) and on node loss",
		RedisNodes: 1,
		Options:    redisHookOptions,
		New:        redisFactory("redis-setnx", redisOps{obtain: obtainSetNX, release: releaseCAS, refresh: casRefresh}),
	})
}

// redisOps are the commands a single-node Redis lock variant runs. Each
// returns ErrNotAcquired / ErrNotHeld for a definite "no".
type redisOps struct {
	obtain  func(ctx context.Context, c *redis.Client, key, token string, ttl time.Duration, hooks redisHooks) (fence uint64, err error)
	release func(ctx context.Context, c *redis.Client, key, token string, hooks redisHooks) error
	refresh func(ctx context.Context, c *redis.Client, key, token string, ttl time.Duration) error
}

// redisHooks are the test hooks of the mutants (see Params in their files).
type redisHooks struct {
	crashAfterSetNX bool
	releaseGap      time.Duration
}

// redisLocker runs one redisOps variant against one Redis node.
type redisLocker struct {
	name  string
	c     *redis.Client
	ops   redisOps
	hooks redisHooks
	clock func() time.Time
	bo    backoff
}

func redisFactory(name string, ops redisOps) Factory {
	return func(ctx context.Context, ep Endpoints, opt Options) (Locker, error) {
		p := params(opt.Params)
		bo, err := backoffFrom(p, JitterEqual)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		var h redisHooks
		if h.crashAfterSetNX, err = p.bool("crash-after-setnx"); err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if h.releaseGap, err = p.duration("release-gap", 0); err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		cs, err := newRedisClients(ep, p, 0, name)
		if err != nil {
			return nil, err
		}
		return WithOptions(&redisLocker{name: name, c: cs[0], ops: ops, hooks: h, clock: opt.Clock(), bo: bo}, opt), nil
	}
}

func (r *redisLocker) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return acquireLoop(ctx, r.bo, func(ctx context.Context) (Lease, error) { return r.TryAcquire(ctx, key, ttl) })
}

func (r *redisLocker) TryAcquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	if err := checkTTL(ttl); err != nil {
		return Lease{}, err
	}
	token := newToken()
	start := r.clock()
	fence, err := r.ops.obtain(ctx, r.c, key, token, ttl, r.hooks)
	switch {
	case err == nil:
		return Lease{Key: key, Token: token, Fence: fence, Expiry: start.Add(ttl)}, nil
	case errors.Is(err, ErrNotAcquired), errors.Is(err, ErrSimulatedCrash):
		return Lease{}, err
	}
	return Lease{}, settle(ctx, fmt.Errorf("lock %s: acquire %q: %w", r.name, key, err), func(ctx context.Context) error {
		return casRelease(ctx, r.c, key, token)
	})
}

func (r *redisLocker) Release(ctx context.Context, l Lease) error {
	return r.ops.release(ctx, r.c, l.Key, l.Token, r.hooks)
}

func (r *redisLocker) Refresh(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	if err := checkTTL(ttl); err != nil {
		return Lease{}, err
	}
	start := r.clock()
	if err := r.ops.refresh(ctx, r.c, l.Key, l.Token, ttl); err != nil {
		return Lease{}, err
	}
	l.Expiry = start.Add(ttl)
	return l, nil
}

func (r *redisLocker) Close() error { return r.c.Close() }

// obtainSetNX is SET key token NX PX ttl: one atomic command.
func obtainSetNX(ctx context.Context, c *redis.Client, key, token string, ttl time.Duration, _ redisHooks) (uint64, error) {
	err := c.SetArgs(ctx, key, token, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return 0, ErrNotAcquired
	case isReadOnly(err):
		return 0, fmt.Errorf("%w: %w", ErrNotAcquired, err) // a demoted primary refused the write
	}
	return 0, err
}

// releaseCAS is the correct release: Lua compare-and-delete.
func releaseCAS(ctx context.Context, c *redis.Client, key, token string, _ redisHooks) error {
	return casRelease(ctx, c, key, token)
}
