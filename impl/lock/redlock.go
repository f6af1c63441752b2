package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redlock is our own Redlock over 5 independent Redis masters: SET NX PX on
// every node in parallel (each call bounded by a small per-node timeout),
// held when a quorum N/2+1 answered yes and the validity ttl − elapsed −
// drift (drift = ttl·1% + 2ms) is still positive; on failure and on release
// it deletes its token from every node; Acquire retries with random back-off.
// Time is Options.Clock(). It promises one holder while clocks advance at
// about the same rate and holders finish within the validity; it breaks
// without fencing when a holder pauses past its validity, when a node's clock
// jumps, and when nodes holding the lock restart empty sooner than a ttl
// later (then another client reaches a quorum).
//
// Params: "node-timeout" (default ttl/4 clamped to 50ms..500ms),
// "retry-min", "retry-max", and the Redis client timeouts.
func init() {
	Register(Info{
		Name:       "redlock",
		Doc:        "Redlock over 5 Redis masters (quorum 3, validity = ttl-elapsed-drift); unsafe on pauses past validity, clock jumps, fast empty restarts",
		RedisNodes: 5,
		Options:    redlockOptions,
		New:        redlockFactory("redlock", redlockConfig{quorum: func(n int) int { return n/2 + 1 }, checkValidity: true}),
	})
}

// redlockConfig is what distinguishes redlock from its mutant.
type redlockConfig struct {
	quorum        func(nodes int) int
	checkValidity bool
}

// redlockNodes is how many independent masters Redlock runs on.
const redlockNodes = 5

type redlock struct {
	name        string
	cfg         redlockConfig
	nodes       []*redis.Client
	quorum      int
	clock       func() time.Time
	bo          backoff
	nodeTimeout time.Duration // 0: derived from the ttl
}

func redlockFactory(name string, cfg redlockConfig) Factory {
	return func(ctx context.Context, ep Endpoints, opt Options) (Locker, error) {
		p := params(opt.Params)
		bo, err := backoffFrom(p)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		nt, err := p.duration("node-timeout", 0)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		cs, err := newRedisClients(ep, p, redlockNodes, name)
		if err != nil {
			return nil, err
		}
		r := &redlock{name: name, cfg: cfg, nodes: cs, quorum: cfg.quorum(len(cs)), clock: opt.Clock(), bo: bo, nodeTimeout: nt}
		return WithOptions(r, opt), nil
	}
}

func (r *redlock) perNode(ttl time.Duration) time.Duration {
	if r.nodeTimeout > 0 {
		return r.nodeTimeout
	}
	return min(max(ttl/4, 50*time.Millisecond), 500*time.Millisecond)
}

// drift is the clock-drift allowance of the Redlock algorithm.
func drift(ttl time.Duration) time.Duration { return ttl/100 + 2*time.Millisecond }

// onAll runs fn on every node in parallel, each bounded by timeout, and
// returns how many said yes (nil) and the other errors.
func (r *redlock) onAll(ctx context.Context, timeout time.Duration, fn func(context.Context, *redis.Client) error) (yes int, no int, errs []error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range r.nodes {
		wg.Go(func() {
			nctx, cancel := context.WithTimeout(ctx, timeout)
			err := fn(nctx, c)
			cancel()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				yes++
			case errors.Is(err, ErrNotAcquired), errors.Is(err, ErrNotHeld):
				no++
			default:
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	return yes, no, errs
}

func (r *redlock) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return acquireLoop(ctx, r.bo, func(ctx context.Context) (Lease, error) { return r.TryAcquire(ctx, key, ttl) })
}

func (r *redlock) TryAcquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	if err := checkTTL(ttl); err != nil {
		return Lease{}, err
	}
	token := newToken()
	start := r.clock()
	yes, _, errs := r.onAll(ctx, r.perNode(ttl), func(ctx context.Context, c *redis.Client) error {
		_, err := obtainSetNX(ctx, c, key, token, ttl, redisHooks{})
		return err
	})
	validity := ttl - r.clock().Sub(start) - drift(ttl)
	if yes >= r.quorum && (validity > 0 || !r.cfg.checkValidity) {
		return Lease{Key: key, Token: token, Expiry: start.Add(ttl - drift(ttl))}, nil
	}
	// Failed: delete our token everywhere (it may have landed where the reply was lost).
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	r.onAll(cctx, r.perNode(ttl), func(ctx context.Context, c *redis.Client) error { return casRelease(ctx, c, key, token) })
	return Lease{}, fmt.Errorf("%w: %s %q: %d of %d nodes (quorum %d), validity %v, node errors %v",
		ErrNotAcquired, r.name, key, yes, len(r.nodes), r.quorum, validity, errors.Join(errs...))
}

// Release deletes the token from every node. It returns nil when at least
// one node still held it, ErrNotHeld when none did and every node answered,
// and the node errors otherwise (outcome unknown).
func (r *redlock) Release(ctx context.Context, l Lease) error {
	yes, _, errs := r.onAll(ctx, r.perNode(time.Hour), func(ctx context.Context, c *redis.Client) error {
		return casRelease(ctx, c, l.Key, l.Token)
	})
	switch {
	case yes > 0:
		return nil
	case len(errs) == 0:
		return ErrNotHeld
	}
	return fmt.Errorf("lock %s: release %q: no node confirmed: %w", r.name, l.Key, errors.Join(errs...))
}

// Refresh extends the token on every node; held again when a quorum
// extended it within the new validity.
func (r *redlock) Refresh(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	if err := checkTTL(ttl); err != nil {
		return Lease{}, err
	}
	start := r.clock()
	yes, _, errs := r.onAll(ctx, r.perNode(ttl), func(ctx context.Context, c *redis.Client) error {
		return casRefresh(ctx, c, l.Key, l.Token, ttl)
	})
	validity := ttl - r.clock().Sub(start) - drift(ttl)
	if yes >= r.quorum && (validity > 0 || !r.cfg.checkValidity) {
		l.Expiry = start.Add(ttl - drift(ttl))
		return l, nil
	}
	return Lease{}, fmt.Errorf("%w: %s refresh %q: %d of %d nodes (quorum %d), validity %v, node errors %v",
		ErrNotHeld, r.name, l.Key, yes, len(r.nodes), r.quorum, validity, errors.Join(errs...))
}

func (r *redlock) Close() error { return closeRedis(r.nodes) }
