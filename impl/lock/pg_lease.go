package lock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// pg-lease is a lease table in PostgreSQL: one row per key with the owner
// token, expires_at on the server's clock (now() + ttl) and a fencing token
// from a bigint sequence that never wraps (NO CYCLE). Acquire is one
// INSERT … ON CONFLICT DO UPDATE … WHERE expires_at < now() RETURNING fence;
// release and refresh touch the row only WHERE token = the holder's token.
// It promises that a resource which rejects stale fences sees one writer at
// a time, since fences strictly increase per key; without fencing it breaks
// like every lease when the holder outlives its ttl, and it is only as
// available as its one PostgreSQL server.
//
// Params: "dial-timeout" (1s), "retry-min", "retry-max".
func init() {
	Register(Info{
		Name:          "pg-lease",
		Doc:           "PostgreSQL lease table (server-clock expiry) with a NO CYCLE sequence fence; safe with a fencing resource, one server",
		PostgresNodes: 1,
		Fencing:       true,
		Topologies:    []string{"pg-standby"}, // one multi-host DSN that follows the primary
		Options:       pgOptions,
		New:           newPgLease,
	})
}

// Schema objects of pg-lease (created on first use, race-safe).
const (
	PgLeaseTable    = "faultline_lock_lease"
	PgLeaseSequence = "faultline_lock_fence"
)

// replyGrace is how long a pg-lease statement in flight when its context
// ends may still deliver its reply before pgx closes the connection (pgx's
// default is no delay). A deadline that falls mid-statement (a held key's
// read-only refusal, on a loaded machine) then mostly gets the statement's
// own definite answer on a live connection, instead of a closed connection
// whose clean-up must first re-dial (a SASL handshake) within
// cleanupTimeout, which failed under load and left the outcome unknown
// (TestConformance/pg-lease/acquire-times-out 2/60 at load 17-31;
// TestPgLeaseDeadlineMidStatement). A reply later than this is a lost
// connection as before.
const replyGrace = cleanupTimeout

type pgLease struct {
	pgConn // one dedicated connection per Locker (no pool)
	bo     backoff
	clock  func() time.Time
}

func newPgLease(ctx context.Context, ep Endpoints, opt Options) (Locker, error) {
	p := params(opt.Params)
	cc, bo, err := pgConfig(ep, p, "pg-lease")
	if err != nil {
		return nil, err
	}
	cc.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn(), DeadlineDelay: replyGrace}
	}
	g := &pgLease{pgConn: pgConn{impl: "pg-lease", cfg: cc}, bo: bo, clock: opt.Clock()}
	g.mu.Lock()
	defer g.mu.Unlock()
	c, err := g.connLocked(ctx)
	if err != nil {
		return nil, err
	}
	if err := createLeaseSchema(ctx, c); err != nil {
		g.dropLocked()
		return nil, err
	}
	return WithOptions(g, opt), nil
}

// createLeaseSchema creates the table and sequence once; concurrent
// creators serialise on a transaction-scoped advisory lock, since CREATE …
// IF NOT EXISTS alone can still fail with a unique violation when two
// sessions race.
func createLeaseSchema(ctx context.Context, c *pgx.Conn) error {
	err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('faultline-pg-lease-schema'))`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE SEQUENCE IF NOT EXISTS `+PgLeaseSequence+` AS bigint MINVALUE 1 NO CYCLE`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+PgLeaseTable+` (
			key        text PRIMARY KEY,
			token      text NOT NULL,
			fence      bigint NOT NULL,
			expires_at timestamptz NOT NULL)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("lock pg-lease: create %s/%s (the user needs CREATE on the database): %w", PgLeaseTable, PgLeaseSequence, err)
	}
	return nil
}

func (g *pgLease) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return acquireLoop(ctx, g.bo, func(ctx context.Context) (Lease, error) { return g.TryAcquire(ctx, key, ttl) })
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (g *pgLease) TryAcquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, err := g.connLocked(ctx)
	if err != nil {
		return Lease{}, err
	}
	token := newToken()
	start := g.clock()
	var fence int64
	// The fence is drawn only once this statement holds the key's
	// transaction advisory lock: an upsert that draws it first and then
	// waits on another session's row (a release in progress) would hand
	// out a fence older than the ones that session drew meanwhile.
	// A key the statement's snapshot shows held by a live lease is refused
	// before any of that: no advisory lock, no fence drawn, no row lock,
	// so the attempt stays read-only (no transaction id, no WAL, no
	// commit record) — the common case of a contended key.
	err = c.QueryRow(ctx, `WITH serial AS (SELECT pg_advisory_xact_lock(hashtext('faultline-pg-lease:' || $1::text))
		  WHERE NOT EXISTS (SELECT 1 FROM `+PgLeaseTable+` WHERE key = $1 AND expires_at >= now()))
		INSERT INTO `+PgLeaseTable+` AS l (key, token, fence, expires_at)
		SELECT $1, $2, nextval('`+PgLeaseSequence+`'), now() + $3::float8 * interval '1 millisecond' FROM serial
		ON CONFLICT (key) DO UPDATE
		  SET token = EXCLUDED.token, fence = EXCLUDED.fence, expires_at = EXCLUDED.expires_at
		  WHERE l.expires_at < now()
		RETURNING fence`, key, token, ms(ttl)).Scan(&fence)
	switch {
	case err == nil:
		return Lease{Key: key, Token: token, Fence: uint64(fence), Expiry: start.Add(ttl)}, nil
	case errors.Is(err, pgx.ErrNoRows):
		return Lease{}, ErrNotAcquired
	}
	err = g.failedLocked(err, "acquire "+key)
	return Lease{}, settle(ctx, err, func(ctx context.Context) error {
		c, err := g.connLocked(ctx)
		if err != nil {
			return err
		}
		_, err = c.Exec(ctx, `DELETE FROM `+PgLeaseTable+` WHERE key = $1 AND token = $2`, key, token)
		return err
	})
}

// Release deletes the holder's row; ErrNotHeld when the row is another
// owner's, gone, or already expired.
func (g *pgLease) Release(ctx context.Context, l Lease) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, err := g.connLocked(ctx)
	if err != nil {
		return err
	}
	var live bool
	err = c.QueryRow(ctx, `DELETE FROM `+PgLeaseTable+` WHERE key = $1 AND token = $2
		RETURNING expires_at >= now()`, l.Key, l.Token).Scan(&live)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotHeld
	case err != nil:
		return g.failedLocked(err, "release "+l.Key)
	case !live:
		return fmt.Errorf("%w: pg-lease %q: lease had expired", ErrNotHeld, l.Key)
	}
	return nil
}

func (g *pgLease) Refresh(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, err := g.connLocked(ctx)
	if err != nil {
		return Lease{}, err
	}
	start := g.clock()
	var fence int64
	err = c.QueryRow(ctx, `UPDATE `+PgLeaseTable+` SET expires_at = now() + $3::float8 * interval '1 millisecond'
		WHERE key = $1 AND token = $2 AND expires_at >= now() RETURNING fence`, l.Key, l.Token, ms(ttl)).Scan(&fence)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Lease{}, ErrNotHeld
	case err != nil:
		return Lease{}, g.failedLocked(err, "refresh "+l.Key)
	}
	l.Expiry = start.Add(ttl)
	return l, nil
}

func (g *pgLease) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dropLocked()
	return nil
}
