package lock

import (
	"context"
	"sync/atomic"
	"time"
)

// redis-fence-per-client (mutant) locks like redis-setnx but its fencing
// token counts this client's own acquisitions instead of the key's, so the
// fences of successive holders of a key go up and down. Mutual exclusion
// holds and a fencing resource never accepts a stale write, so every
// resource-side check passes; but the resource rejects most correct writes
// (a holder's fence is below one another client used before), and a late
// write of an expired holder is not reliably rejected. Only the order of
// the fences handed out (checker fence-order) shows it.
func init() {
	Register(Info{
		Name:       "redis-fence-per-client",
		Doc:        "MUTANT: redis-setnx whose fence is a per-client counter, not per key: successive holders' fences go backwards and a fencing resource rejects correct writes",
		Mutant:     true,
		RedisNodes: 1,
		Fencing:    true,
		New:        fencePerClientFactory(redisFactory("redis-fence-per-client", redisOps{obtain: obtainSetNX, release: releaseCAS, refresh: casRefresh})),
	})
}

// fencePerClientFactory numbers the inner Locker's acquisitions; the
// options go on top (so a re-entrant acquire returns the same lease and
// fence).
func fencePerClientFactory(inner Factory) Factory {
	return wrapBare(inner, func(l Locker) Locker { return &fencePerClient{Locker: l} })
}

// fencePerClient gives each lease the next value of its own counter.
type fencePerClient struct {
	Locker
	n atomic.Uint64
}

func (f *fencePerClient) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return f.number(f.Locker.Acquire(ctx, key, ttl))
}

func (f *fencePerClient) TryAcquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return f.number(f.Locker.TryAcquire(ctx, key, ttl))
}

func (f *fencePerClient) number(l Lease, err error) (Lease, error) {
	if err == nil {
		l.Fence = f.n.Add(1)
	}
	return l, err
}
