package lock

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgConn is one dedicated PostgreSQL connection used by one Locker, one
// statement at a time, re-dialled lazily after a loss. onLoss runs (mu
// held) when the connection is dropped.
type pgConn struct {
	impl   string
	cfg    *pgx.ConnConfig
	onLoss func()

	mu   sync.Mutex
	conn *pgx.Conn
}

// pgConfig parses the first PostgreSQL endpoint's DSN with a connect
// timeout ("dial-timeout", default 1s) and the back-off Params.
func pgConfig(ep Endpoints, p params, impl string) (*pgx.ConnConfig, backoff, error) {
	if len(ep.Postgres) == 0 {
		return nil, backoff{}, fmt.Errorf("lock %s: needs a PostgreSQL endpoint, got none", impl)
	}
	bo, err := backoffFrom(p, JitterFull)
	if err != nil {
		return nil, backoff{}, fmt.Errorf("lock %s: %w", impl, err)
	}
	dial, err := p.duration("dial-timeout", time.Second)
	if err != nil {
		return nil, backoff{}, fmt.Errorf("lock %s: %w", impl, err)
	}
	cfg, err := pgx.ParseConfig(ep.Postgres[0].DSN)
	if err != nil {
		return nil, backoff{}, fmt.Errorf("lock %s: endpoint %q: bad DSN: %w", impl, ep.Postgres[0].Name, err)
	}
	cfg.ConnectTimeout = dial
	return cfg, bo, nil
}

// connLocked returns the live connection, dialling a new one after a loss.
func (p *pgConn) connLocked(ctx context.Context) (*pgx.Conn, error) {
	if p.conn != nil && !p.conn.IsClosed() {
		return p.conn, nil
	}
	p.dropLocked()
	c, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		return nil, fmt.Errorf("lock %s: connect to %s:%d: %w", p.impl, p.cfg.Host, p.cfg.Port, err)
	}
	p.conn = c
	return c, nil
}

// dropLocked closes and forgets the connection.
func (p *pgConn) dropLocked() {
	if p.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		_ = p.conn.Close(ctx)
		cancel()
		p.conn = nil
		if p.onLoss != nil {
			p.onLoss()
		}
	}
}

// failedLocked wraps a statement error; when it broke the connection, the
// connection is dropped (and with it the session's state).
func (p *pgConn) failedLocked(err error, what string) error {
	if p.conn != nil && p.conn.IsClosed() {
		p.dropLocked()
		return fmt.Errorf("lock %s: %s: connection lost: %w", p.impl, what, err)
	}
	return fmt.Errorf("lock %s: %s: %w", p.impl, what, err)
}
