package workload

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/faultline-dev/faultline/infra"
)

func init() {
	Register(&lockWorkload{
		name: "fenced-counter",
		doc: "counter on the PostgreSQL node \"resource-pg\" that fences: reads register the holder's fencing token, " +
			"a write with a token older than the highest seen is rejected (counted as fenced, not a violation)",
		node:   infra.NodeSpec{Name: "resource-pg", Kind: infra.Postgres},
		fences: true,
		open:   openPGResource,
	})
}

// pgSchema is the fencing resource: counters with the highest fencing token
// seen, a log of accepted writes, and fl_write, which applies a write
// unless its token is older than the highest seen. A write with fence 0
// (an implementation without fencing) is never rejected: such locks get no
// protection from this resource.
const pgSchema = `
CREATE TABLE IF NOT EXISTS fl_counter (
  key        text PRIMARY KEY,
  value      bigint NOT NULL DEFAULT 0,
  seen_fence numeric(20) NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS fl_log (
  seq      bigserial PRIMARY KEY,
  key      text NOT NULL,
  process  integer NOT NULL,
  token    text NOT NULL,
  fence    numeric(20) NOT NULL,
  expected bigint NOT NULL,
  current  bigint NOT NULL,
  new      bigint NOT NULL
);
CREATE OR REPLACE FUNCTION fl_write(k text, f numeric, exp bigint, newv bigint, proc integer, tok text,
                                    OUT fenced boolean, OUT cur bigint) AS $$
DECLARE seen numeric;
BEGIN
  SELECT value, seen_fence INTO cur, seen FROM fl_counter WHERE key = k FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO fl_counter(key) VALUES (k) ON CONFLICT DO NOTHING;
    SELECT value, seen_fence INTO cur, seen FROM fl_counter WHERE key = k FOR UPDATE;
  END IF;
  IF f > 0 AND f < seen THEN
    fenced := true;
    RETURN;
  END IF;
  fenced := false;
  UPDATE fl_counter SET value = newv, seen_fence = greatest(seen_fence, f) WHERE key = k;
  INSERT INTO fl_log(key, process, token, fence, expected, current, new) VALUES (k, proc, tok, f, exp, cur, newv);
END $$ LANGUAGE plpgsql;
`

// pgResource is the fenced-counter workload's oracle on PostgreSQL.
type pgResource struct {
	pool   *pgxpool.Pool // clients' path
	direct *pgxpool.Pool // reset and dump
}

func openPGResource(ctx context.Context, n infra.Node, direct bool, t Target) (resource, error) {
	dsn := n.DSN()
	if direct {
		dsn = n.DirectDSN()
	}
	pool, err := newPool(ctx, dsn, 64, t.OpTimeout)
	if err != nil {
		return nil, fmt.Errorf("resource %s: %w", n.Name(), err)
	}
	dpool, err := newPool(ctx, n.DirectDSN(), 2, 10*time.Second)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("resource %s: %w", n.Name(), err)
	}
	return &pgResource{pool: pool, direct: dpool}, nil
}

func newPool(ctx context.Context, dsn string, size int32, timeout time.Duration) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = size
	cfg.ConnConfig.ConnectTimeout = timeout
	return pgxpool.NewWithConfig(ctx, cfg)
}

func (r *pgResource) reset(ctx context.Context, keys []string) error {
	if _, err := r.direct.Exec(ctx, pgSchema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	tx, err := r.direct.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `TRUNCATE fl_log, fl_counter RESTART IDENTITY`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO fl_counter(key) SELECT unnest($1::text[])`, keys); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (r *pgResource) read(ctx context.Context, key string, fence uint64) (int64, error) {
	var v int64
	err := r.pool.QueryRow(ctx,
		`UPDATE fl_counter SET seen_fence = greatest(seen_fence, $2::numeric) WHERE key = $1 RETURNING value`,
		key, fmt.Sprint(fence)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("counter %s missing on the resource", key)
	}
	return v, err
}

func (r *pgResource) write(ctx context.Context, key string, w logEntry) error {
	var fenced bool
	var cur int64
	err := r.pool.QueryRow(ctx, `SELECT fenced, cur FROM fl_write($1, $2::numeric, $3, $4, $5, $6)`,
		key, fmt.Sprint(w.Fence), w.Expected, w.New, w.Process, w.Token).Scan(&fenced, &cur)
	if err != nil {
		return err
	}
	if fenced {
		return errFenced
	}
	return nil
}

func (r *pgResource) dump(ctx context.Context, keys []string) ([]logEntry, map[string]int64, error) {
	rows, err := r.direct.Query(ctx,
		`SELECT seq, key, process, token, fence::text, expected, current, new FROM fl_log ORDER BY seq`)
	if err != nil {
		return nil, nil, err
	}
	var log []logEntry
	for rows.Next() {
		var e logEntry
		var fence string
		if err := rows.Scan(&e.Seq, &e.Key, &e.Process, &e.Token, &fence, &e.Expected, &e.Current, &e.New); err != nil {
			rows.Close()
			return nil, nil, err
		}
		if _, err := fmt.Sscan(fence, &e.Fence); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("log entry %d: fence %q: %w", e.Seq, fence, err)
		}
		log = append(log, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	finals := map[string]int64{}
	rows, err = r.direct.Query(ctx, `SELECT key, value FROM fl_counter`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var v int64
		if err := rows.Scan(&k, &v); err != nil {
			return nil, nil, err
		}
		finals[k] = v
	}
	return log, finals, rows.Err()
}

func (r *pgResource) close() {
	r.pool.Close()
	r.direct.Close()
}
