package lock

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// pg-advisory is a PostgreSQL session advisory lock,
// pg_try_advisory_lock(hashtext(key)), held on one dedicated connection per
// Locker (never a pool: the lock belongs to the session). Acquire polls with
// back-off until ctx ends; Release is pg_advisory_unlock; the lease has no
// ttl and dies with the connection. Refresh only checks that the connection
// is alive and pg_locks still shows the lock granted to this session (the
// lease's Expiry is nominal: now + ttl). Tokens are random; no fencing.
// A context that ends mid-statement makes pgx close the connection, which
// frees every lock of this Locker: give calls deadlines, not cancellations.
// It promises one session holding a key at a time; it breaks for the
// application when the holder's connection is cut (the server frees the lock
// while the old holder, not yet aware, keeps working: SCENARIOS L13), and
// two keys whose hashtext collides share one lock (false contention only).
//
// Params: "dial-timeout" (1s), "retry-min", "retry-max".
func init() {
	Register(Info{
		Name:          "pg-advisory",
		Doc:           "PostgreSQL session advisory lock on a dedicated connection; freed when the session dies, unsafe for a holder that outlives its connection",
		PostgresNodes: 1,
		Options:       pgOptions,
		New:           newPgAdvisory,
	})
}

type pgAdvisory struct {
	pgConn // its session holds the locks
	bo     backoff
	clock  func() time.Time
	held   map[string]string // key → token, guarded by pgConn.mu
}

func newPgAdvisory(ctx context.Context, ep Endpoints, opt Options) (Locker, error) {
	p := params(opt.Params)
	cfg, bo, err := pgConfig(ep, p, "pg-advisory")
	if err != nil {
		return nil, err
	}
	a := &pgAdvisory{pgConn: pgConn{impl: "pg-advisory", cfg: cfg}, bo: bo, clock: opt.Clock(), held: map[string]string{}}
	a.onLoss = func() { clear(a.held) } // the locks died with the session
	a.mu.Lock()
	_, err = a.connLocked(ctx)
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return WithOptions(a, opt), nil
}

func (a *pgAdvisory) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return acquireLoop(ctx, a.bo, func(ctx context.Context) (Lease, error) { return a.TryAcquire(ctx, key, ttl) })
}

func (a *pgAdvisory) TryAcquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.held[key]; ok { // the session would stack it: not reentrant here
		return Lease{}, fmt.Errorf("%w: pg-advisory %q: already held by this Locker", ErrNotAcquired, key)
	}
	c, err := a.connLocked(ctx)
	if err != nil {
		return Lease{}, err
	}
	start := a.clock()
	var ok bool
	if err := c.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, key).Scan(&ok); err != nil {
		// sent false: nothing reached the server (ctx already done), or
		// pgx's "conn closed" after sending, when the session, and any lock
		// it took, is gone (a.conn nil below).
		sent := !pgconn.SafeToRetry(err)
		err = a.failedLocked(err, "acquire "+key)
		if a.conn == nil || !sent { // the session is gone, and any lock it just took with it; or nothing was asked
			return Lease{}, fmt.Errorf("%w: %w", ErrNotAcquired, err)
		}
		return Lease{}, err
	}
	if !ok {
		return Lease{}, ErrNotAcquired
	}
	token := newToken()
	a.held[key] = token
	return Lease{Key: key, Token: token, Expiry: start.Add(ttl)}, nil
}

func (a *pgAdvisory) Release(ctx context.Context, l Lease) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.held[l.Key] != l.Token || a.conn == nil {
		return ErrNotHeld
	}
	var ok bool
	if err := a.conn.QueryRow(ctx, `SELECT pg_advisory_unlock(hashtext($1))`, l.Key).Scan(&ok); err != nil {
		return a.failedLocked(err, "release "+l.Key)
	}
	delete(a.held, l.Key)
	if !ok {
		return ErrNotHeld
	}
	return nil
}

// Refresh extends nothing (a session lock has no ttl): it checks that the
// connection is alive and the lock is still granted to this session.
func (a *pgAdvisory) Refresh(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.held[l.Key] != l.Token || a.conn == nil {
		return Lease{}, ErrNotHeld
	}
	start := a.clock()
	var n int
	err := a.conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1
		  AND ((classid::bigint << 32) | objid::bigint) = hashtext($1)::bigint`, l.Key).Scan(&n)
	if err != nil {
		return Lease{}, a.failedLocked(err, "refresh "+l.Key)
	}
	if n == 0 {
		delete(a.held, l.Key)
		return Lease{}, ErrNotHeld
	}
	l.Expiry = start.Add(ttl)
	return l, nil
}

func (a *pgAdvisory) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dropLocked()
	return nil
}
