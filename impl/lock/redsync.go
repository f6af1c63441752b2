package lock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/go-redsync/redsync/v4"
	rsredis "github.com/go-redsync/redsync/v4/redis"
	rsgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
)

// redsync adapts github.com/go-redsync/redsync/v4 (go-redis v9 pools) on 5
// independent Redis masters, at the library's defaults: 32 tries 50–250ms
// apart per Lock call, drift factor 0.01, per-round timeout expiry×0.05,
// quorum 3. Acquire repeats the library's Lock until ctx ends. It promises
// what Redlock promises; it breaks the same ways (pauses past validity, clock
// jumps, nodes restarting empty), and its Unlock and Extend have no per-node
// timeout beyond the context (a slow node slows them).
//
// Params passed through: "tries", "retry-delay" (fixed delay), "drift-factor",
// "timeout-factor", "fail-fast", "shuffle"; plus the Redis client timeouts.
func init() {
	Register(Info{
		Name:       "redsync",
		Doc:        "go-redsync/redsync v4 on 5 Redis masters at library defaults; Redlock's guarantees and failure modes",
		RedisNodes: 5,
		Options:    redsyncOptions,
		New:        newRedsync,
	})
}

type redsyncLocker struct {
	rs    *redsync.Redsync
	opts  []redsync.Option
	close func() error
	bo    backoff
}

func newRedsync(ctx context.Context, ep Endpoints, opt Options) (Locker, error) {
	p := params(opt.Params)
	var opts []redsync.Option
	if n, err := p.int("tries", 0); err != nil {
		return nil, fmt.Errorf("lock redsync: %w", err)
	} else if n > 0 {
		opts = append(opts, redsync.WithTries(n))
	}
	if d, err := p.duration("retry-delay", 0); err != nil {
		return nil, fmt.Errorf("lock redsync: %w", err)
	} else if d > 0 {
		opts = append(opts, redsync.WithRetryDelay(d))
	}
	for name, with := range map[string]func(float64) redsync.Option{
		"drift-factor": redsync.WithDriftFactor, "timeout-factor": redsync.WithTimeoutFactor,
	} {
		if f, err := p.float(name, 0); err != nil {
			return nil, fmt.Errorf("lock redsync: %w", err)
		} else if f > 0 {
			opts = append(opts, with(f))
		}
	}
	for name, with := range map[string]func(bool) redsync.Option{
		"fail-fast": redsync.WithFailFast, "shuffle": redsync.WithShufflePools,
	} {
		if b, err := p.bool(name); err != nil {
			return nil, fmt.Errorf("lock redsync: %w", err)
		} else if b {
			opts = append(opts, with(true))
		}
	}
	bo, err := backoffFrom(p, JitterFull)
	if err != nil {
		return nil, fmt.Errorf("lock redsync: %w", err)
	}
	cs, err := newRedisClients(ep, p, redlockNodes, "redsync")
	if err != nil {
		return nil, err
	}
	pools := make([]rsredis.Pool, len(cs))
	for i, c := range cs {
		pools[i] = rsgoredis.NewPool(c)
	}
	l := &redsyncLocker{rs: redsync.New(pools...), opts: opts, close: func() error { return closeRedis(cs) }, bo: bo}
	return WithOptions(l, opt), nil
}

func (r *redsyncLocker) mutex(key string, extra ...redsync.Option) *redsync.Mutex {
	return r.rs.NewMutex(key, append(append([]redsync.Option(nil), r.opts...), extra...)...)
}

// Acquire calls the library's LockContext (its own tries and delays) again
// after a short back-off until it succeeds or ctx ends.
func (r *redsyncLocker) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return acquireLoop(ctx, r.bo, func(ctx context.Context) (Lease, error) {
		m := r.mutex(key, redsync.WithExpiry(ttl))
		return r.lease(m, m.LockContext(ctx))
	})
}

func (r *redsyncLocker) TryAcquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	m := r.mutex(key, redsync.WithExpiry(ttl))
	return r.lease(m, m.TryLockContext(ctx))
}

// lease maps a Lock result. redsync releases every node after a failed
// round but ignores the release's result, so a round in which a command
// may have reached a node without an answer (a timeout, a dropped
// connection) may have left our key there until its ttl: that outcome is
// indeterminate (a plain error, recorded as info). "Taken" answers,
// refused dials and ErrFailed are a definite "not acquired".
func (r *redsyncLocker) lease(m *redsync.Mutex, err error) (Lease, error) {
	if err != nil {
		if maybeApplied(err) {
			return Lease{}, fmt.Errorf("lock redsync: acquire %q: a node did not answer: %w", m.Name(), err)
		}
		return Lease{}, fmt.Errorf("%w: redsync %q: %w", ErrNotAcquired, m.Name(), err)
	}
	return Lease{Key: m.Name(), Token: m.Value(), Expiry: m.Until()}, nil
}

func (r *redsyncLocker) Release(ctx context.Context, l Lease) error {
	ok, err := r.mutex(l.Key, redsync.WithValue(l.Token)).UnlockContext(ctx)
	if ok {
		return nil
	}
	if notHeld(err) {
		return fmt.Errorf("%w: redsync %q: %w", ErrNotHeld, l.Key, err)
	}
	return fmt.Errorf("lock redsync: release %q: %w", l.Key, err)
}

func (r *redsyncLocker) Refresh(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	m := r.mutex(l.Key, redsync.WithValue(l.Token), redsync.WithExpiry(ttl))
	ok, err := m.ExtendContext(ctx)
	if !ok {
		return Lease{}, fmt.Errorf("%w: redsync extend %q: %w", ErrNotHeld, l.Key, err)
	}
	l.Expiry = m.Until()
	return l, nil
}

func (r *redsyncLocker) Close() error { return r.close() }

// notHeld: every error redsync joined is a node saying "not yours / gone".
func notHeld(err error) bool {
	if err == nil {
		return true
	}
	var taken *redsync.ErrTaken
	if errors.As(err, &taken) {
		return true
	}
	var re *redsync.RedisError
	return !errors.As(err, &re)
}

// maybeApplied reports whether any node error in err (redsync joins one per
// node) may hide a command that reached its node: every RedisError except
// a failed dial, after which nothing was sent.
func maybeApplied(err error) bool {
	switch e := err.(type) {
	case *redsync.RedisError:
		var op *net.OpError
		return !errors.As(e.Err, &op) || op.Op != "dial"
	case interface{ Unwrap() []error }:
		for _, x := range e.Unwrap() {
			if maybeApplied(x) {
				return true
			}
		}
	case interface{ Unwrap() error }:
		return maybeApplied(e.Unwrap())
	}
	return false
}
