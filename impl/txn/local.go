package txn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/faultline-dev/faultline/internal/clock"
)

// runLocal runs fn in one local transaction on participant node, bounded
// by timeout. A failure before COMMIT was sent rolls back and wraps
// ErrAborted (fn's own ErrAborted errors pass through); a failure of the
// COMMIT itself is indeterminate unless the server answered it.
func (p *pools) runLocal(ctx context.Context, node int, timeout time.Duration, fn func(ctx context.Context, tx pgx.Tx) error) error {
	pl, err := p.node(node)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tx, err := pl.Begin(ctx)
	if err != nil {
		return fmt.Errorf("%w: begin on %s: %v", ErrAborted, NodeName(node), err)
	}
	if err := fn(ctx, tx); err != nil {
		rbCtx, rbCancel := context.WithTimeout(context.Background(), timeout)
		_ = tx.Rollback(rbCtx)
		rbCancel()
		if errors.Is(err, ErrAborted) {
			return err
		}
		return fmt.Errorf("%w: on %s: %v", ErrAborted, NodeName(node), err)
	}
	if err := tx.Commit(ctx); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) || errors.Is(err, pgx.ErrTxCommitRollback) {
			return fmt.Errorf("%w: commit refused on %s: %v", ErrAborted, NodeName(node), err)
		}
		return fmt.Errorf("%w: commit on %s: %v", ErrIndeterminate, NodeName(node), err)
	}
	return nil
}

// call runs one statement returning a boolean as its own local
// transaction on participant node (one round trip), bounded by timeout.
// Errors: a business rejection raised by the server-side handlers
// (branchErr), else ErrAborted when the server refused it or it was never
// sent, else ErrIndeterminate (the statement may have committed).
func (p *pools) call(ctx context.Context, node int, timeout time.Duration, sql string, args ...any) (bool, error) {
	pl, err := p.node(node)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var applied bool
	if err := pl.QueryRow(ctx, sql, args...).Scan(&applied); err != nil {
		return false, callErr(node, err)
	}
	return applied, nil
}

// callErr classifies the error of a one-statement call on node.
func callErr(node int, err error) error {
	if berr := branchErr(node, err); berr != nil {
		return berr
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) || neverSent(err) {
		return fmt.Errorf("%w: on %s: %v", ErrAborted, NodeName(node), err)
	}
	return fmt.Errorf("%w: on %s: %v", ErrIndeterminate, NodeName(node), err)
}

// neverSent reports whether err certainly happened before the statement
// reached the server. pgconn.SafeToRetry alone says too much: pgx v5.12
// reports a connection lost while reading the answer of a statement it
// had sent as "conn closed" (pgconn.ErrConnClosed in a lock error, whose
// SafeToRetry is true) when the failed read closed the connection before
// the result reader looked at it. A statement whose connection closed
// under it may have run: only other safe-to-retry errors (a context done
// before sending, a write of zero bytes) are definite.
func neverSent(err error) bool {
	return pgconn.SafeToRetry(err) && !errors.Is(err, pgconn.ErrConnClosed)
}

// SQLSTATEs the server-side handlers (participantFuncs) raise.
const (
	codeNoAccount    = "FL001"
	codeInsufficient = "FL002"
)

// branchErr maps a business rejection raised by a server-side handler to
// ErrNoAccount / ErrInsufficientFunds; nil for any other error.
func branchErr(node int, err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return nil
	}
	switch pe.Code {
	case codeNoAccount:
		return fmt.Errorf("%w: %s on %s", ErrNoAccount, pe.Message, NodeName(node))
	case codeInsufficient:
		return fmt.Errorf("%w: %s on %s", ErrInsufficientFunds, pe.Message, NodeName(node))
	}
	return nil
}

// parallel runs fn(0) … fn(n-1) at once and waits for all: the last on the
// calling goroutine (one goroutine fewer to schedule on a busy machine).
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	for i := range n - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i)
		}()
	}
	if n > 0 {
		fn(n - 1)
	}
	wg.Wait()
}

// querier is a pgx.Tx or an acquired connection inside BEGIN.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// debit takes amount from account id if its balance covers it.
func debit(ctx context.Context, tx querier, id int, amount int64) error {
	ct, err := tx.Exec(ctx, `UPDATE accounts SET balance = balance - $2 WHERE id = $1 AND balance >= $2`, id, amount)
	if err != nil {
		return err
	}
	if ct.RowsAffected() == 0 {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM accounts WHERE id = $1`, id).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: debit account %d", ErrNoAccount, id)
		}
		return fmt.Errorf("%w: debit account %d of %d", ErrInsufficientFunds, id, amount)
	}
	return nil
}

// credit adds amount to account id.
func credit(ctx context.Context, tx querier, id int, amount int64) error {
	ct, err := tx.Exec(ctx, `UPDATE accounts SET balance = balance + $2 WHERE id = $1`, id, amount)
	if err != nil {
		return err
	}
	if ct.RowsAffected() == 0 {
		return fmt.Errorf("%w: credit account %d", ErrNoAccount, id)
	}
	return nil
}

func validate(t Transfer) error {
	if t.Amount <= 0 {
		return fmt.Errorf("%w: amount %d must be positive", ErrAborted, t.Amount)
	}
	if t.ID == "" {
		return fmt.Errorf("%w: transfer needs an ID", ErrAborted)
	}
	for _, r := range t.ID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == ':') {
			return fmt.Errorf("%w: transfer ID %q: use [A-Za-z0-9_.:-]", ErrAborted, t.ID)
		}
	}
	if t.From == t.To {
		return fmt.Errorf("%w: transfer from an account to itself", ErrAborted)
	}
	return nil
}

// isBusiness reports whether err is a business rejection (deterministic:
// retrying will not help).
func isBusiness(err error) bool {
	return errors.Is(err, ErrInsufficientFunds) || errors.Is(err, ErrNoAccount)
}

// retry calls fn until it returns nil or a business error, ctx ends, or
// max attempts; it returns the number of retries and the last error.
func retry(ctx context.Context, max int, fn func() error) (int, error) {
	backoff := 5 * time.Millisecond
	var err error
	for i := 0; i < max; i++ {
		if err = fn(); err == nil || isBusiness(err) {
			return i, err
		}
		if cerr := clock.Sleep(ctx, backoff); cerr != nil {
			return i, fmt.Errorf("%w (gave up: %v)", err, cerr)
		}
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
	}
	return max - 1, err
}
