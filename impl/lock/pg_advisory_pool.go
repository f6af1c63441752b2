package lock

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// pg-advisory-pool (mutant) takes pg-advisory's session advisory lock
// through a connection pool (pgxpool), the way code that treats a session
// lock like any other query does: pg_try_advisory_lock and
// pg_advisory_unlock each run on whichever pooled connection is idle. A
// session lock belongs to one connection, so two callers sharing the pool
// break it: a release that lands on another connection unlocks nothing
// (the lock stays with an idle pooled session until the pool closes: a
// leak that no final probe after Close can see), and a caller handed the
// holder's connection re-enters the session's lock beside the holder (two
// holders). With one caller at a time every query finds the same idle
// connection and it looks correct. The workers catch it when they share one
// Locker (faultline run --share 2).
//
// Params: "pool-size" (4), "dial-timeout" (1s), "retry-min", "retry-max".
func init() {
	Register(Info{
		Name:          "pg-advisory-pool",
		Doc:           "MUTANT: pg-advisory through a connection pool; acquire and release run on any pooled connection, so sharers re-enter or leak the session lock (caught with --share 2)",
		Mutant:        true,
		PostgresNodes: 1,
		New:           newPgAdvisoryPool,
	})
}

type pgAdvisoryPool struct {
	pool  *pgxpool.Pool
	bo    backoff
	clock func() time.Time
}

func newPgAdvisoryPool(ctx context.Context, ep Endpoints, opt Options) (Locker, error) {
	p := params(opt.Params)
	conn, bo, err := pgConfig(ep, p, "pg-advisory-pool")
	if err != nil {
		return nil, err
	}
	size, err := p.int("pool-size", 4)
	if err != nil || size < 1 {
		return nil, fmt.Errorf("lock pg-advisory-pool: pool-size %q: want a positive integer", p["pool-size"])
	}
	cfg, err := pgxpool.ParseConfig(ep.Postgres[0].DSN)
	if err != nil {
		return nil, fmt.Errorf("lock pg-advisory-pool: endpoint %q: bad DSN: %w", ep.Postgres[0].Name, err)
	}
	cfg.ConnConfig.ConnectTimeout = conn.ConnectTimeout
	cfg.MaxConns = int32(size)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("lock pg-advisory-pool: pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("lock pg-advisory-pool: connect to %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return WithOptions(&pgAdvisoryPool{pool: pool, bo: bo, clock: opt.Clock()}, opt), nil
}

func (a *pgAdvisoryPool) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return acquireLoop(ctx, a.bo, func(ctx context.Context) (Lease, error) { return a.TryAcquire(ctx, key, ttl) })
}

func (a *pgAdvisoryPool) TryAcquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	start := a.clock()
	var ok bool
	if err := a.pool.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, key).Scan(&ok); err != nil {
		return Lease{}, fmt.Errorf("lock pg-advisory-pool: acquire %s: %w", key, err)
	}
	if !ok {
		return Lease{}, ErrNotAcquired
	}
	return Lease{Key: key, Token: newToken(), Expiry: start.Add(ttl)}, nil
}

// Release unlocks on whichever pooled connection is idle: false (not held
// by that session) is ErrNotHeld, and the lock stays where it was.
func (a *pgAdvisoryPool) Release(ctx context.Context, l Lease) error {
	var ok bool
	if err := a.pool.QueryRow(ctx, `SELECT pg_advisory_unlock(hashtext($1))`, l.Key).Scan(&ok); err != nil {
		return fmt.Errorf("lock pg-advisory-pool: release %s: %w", l.Key, err)
	}
	if !ok {
		return ErrNotHeld
	}
	return nil
}

// Refresh extends nothing (a session lock has no ttl) and checks nothing.
func (a *pgAdvisoryPool) Refresh(_ context.Context, l Lease, ttl time.Duration) (Lease, error) {
	l.Expiry = a.clock().Add(ttl)
	return l, nil
}

func (a *pgAdvisoryPool) Close() error {
	a.pool.Close()
	return nil
}
