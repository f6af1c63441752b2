package txn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// saga runs a transfer as two local transactions, debit (on the source's
// node) then credit (on the target's node), each with a step-log row in the
// barrier table (gid, branch, 'action') inserted ON CONFLICT DO NOTHING in
// the same local transaction, so a retried step applies once. A business
// failure (insufficient funds, no such account) runs the compensations in
// reverse order (refund the debit); a compensation inserts the 'action' row
// too, so a step that never ran is not undone and can no longer run late.
// Infrastructure failures are retried until done (bounded by ctx); the
// global state (running / compensating / done / aborted) in the
// coordinator database lets Recover finish what a crash left.
type saga struct {
	p    *pools
	opt  Options
	done *finisher // running → done, batched
}

func newSaga(ctx context.Context, ep Endpoints, opt Options) (Transferer, error) {
	opt = opt.withDefaults()
	p, err := openPools(ctx, ep, opt, true)
	if err != nil {
		return nil, err
	}
	return &saga{p: p, opt: opt, done: newFinisher(p, opt, stateRunning, stateDone)}, nil
}

// GIDSaga is the global transaction id saga uses for a transfer.
func GIDSaga(id string) string { return GIDPrefix + "saga:" + id }

func (s *saga) Transfer(ctx context.Context, t Transfer) (out Outcome, err error) {
	start := time.Now()
	defer func() { out.Total = time.Since(start) }()
	if err = validate(t); err != nil {
		return out, err
	}
	gid := GIDSaga(t.ID)
	if err := s.done.begin(ctx, gid, "saga", stateRunning, t); err != nil {
		// The row may have landed (a timeout after the INSERT applied), and
		// Recover drives a running saga forward: the outcome is unknown.
		return out, fmt.Errorf("%w: %v", ErrIndeterminate, err)
	}
	return s.run(ctx, gid, t.From, t.To, t.Amount, stateRunning, out)
}

// run drives a saga from state (running or compensating) to its end.
func (s *saga) run(ctx context.Context, gid string, from, to Account, amount int64, state string, out Outcome) (Outcome, error) {
	bs := tccBranches(from, to, amount)
	var cause error
	if state == stateRunning {
		fs := time.Now()
		for _, b := range bs {
			n, err := retry(ctx, maxRetries, func() error { return s.action(ctx, gid, b) })
			out.Retries += n
			if err != nil && !isBusiness(err) {
				out.add(PhaseForward, fs)
				return out, fmt.Errorf("%w: saga %s: step %s unfinished (Recover continues it): %v", ErrIndeterminate, gid, b.name, err)
			}
			if err != nil {
				cause = err
				break
			}
		}
		out.add(PhaseForward, fs)
		if cause == nil {
			s.done.add(gid)
			return out, nil
		}
		if _, err := setGlobalState(ctx, s.p, s.opt, gid, stateRunning, stateCompensating); err != nil {
			return out, fmt.Errorf("%w: saga %s: record compensation: %v", ErrIndeterminate, gid, err)
		}
	}
	cs := time.Now()
	for i := len(bs) - 1; i >= 0; i-- {
		b := bs[i]
		n, err := retry(ctx, maxRetries, func() error { return s.compensate(ctx, gid, b) })
		out.Retries += n
		if err != nil {
			out.add(PhaseCompensate, cs)
			// The refund is owed and Recover pays it; the transfer will not happen.
			return out, fmt.Errorf("%w: saga %s: compensation of %s unfinished (Recover finishes it): %v", ErrAborted, gid, b.name, err)
		}
	}
	out.add(PhaseCompensate, cs)
	_, _ = setGlobalState(ctx, s.p, s.opt, gid, stateCompensating, stateAborted)
	if cause == nil {
		cause = ErrAborted
	}
	if isBusiness(cause) {
		return out, fmt.Errorf("saga %s compensated: %w", gid, cause)
	}
	return out, fmt.Errorf("%w: saga %s compensated: %v", ErrAborted, gid, cause)
}

// action and compensate run fl_saga (schema.go): the step-log insert, the
// business update and the journal row as one statement, its own local
// transaction: one round trip.
func (s *saga) action(ctx context.Context, gid string, b tccBranch) error {
	_, err := s.p.call(ctx, b.node, s.opt.OpTimeout, `SELECT fl_saga($1, $2, $3, $4, $5)`, gid, b.name, OpAction, b.account, b.amount)
	return err
}

func (s *saga) compensate(ctx context.Context, gid string, b tccBranch) error {
	_, err := s.p.call(ctx, b.node, s.opt.OpTimeout, `SELECT fl_saga($1, $2, $3, $4, $5)`, gid, b.name, OpCompensate, b.account, b.amount)
	return err
}

// Recover continues every running saga forward and finishes every
// compensating one.
func (s *saga) Recover(ctx context.Context) error {
	if err := s.done.flush(ctx); err != nil {
		return fmt.Errorf("txn: saga recover: record finished sagas: %w", err)
	}
	gs, err := unfinished(ctx, s.p, s.opt, "saga", stateRunning, stateCompensating)
	if err != nil {
		return fmt.Errorf("txn: saga recover: list unfinished sagas: %w", err)
	}
	var errs []error
	for _, g := range gs {
		_, _ = s.run(ctx, g.gid, g.from, g.to, g.amount, g.state, Outcome{})
		if err := s.done.flush(ctx); err != nil { // run queued its done mark
			errs = append(errs, fmt.Errorf("txn: saga recover %s: record done: %w", g.gid, err))
			continue
		}
		if still, err := unfinishedOne(ctx, s.p, s.opt, g.gid); still || err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unfinishedOne reports whether gid is still unfinished.
func unfinishedOne(ctx context.Context, p *pools, opt Options, gid string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, opt.OpTimeout)
	defer cancel()
	var st string
	if err := p.coord.QueryRow(ctx, `SELECT state FROM global_txn WHERE gid = $1`, gid).Scan(&st); err != nil {
		return false, err
	}
	if st == stateRunning || st == stateCompensating {
		return true, fmt.Errorf("txn: saga %s still %s", gid, st)
	}
	return false, nil
}

func (s *saga) Close() error {
	s.done.close()
	s.p.close()
	return nil
}

func setGlobalState(ctx context.Context, p *pools, opt Options, gid, from, to string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, opt.OpTimeout)
	defer cancel()
	ct, err := p.coord.Exec(ctx, `UPDATE global_txn SET state = $3, updated_at = clock_timestamp() WHERE gid = $1 AND state = $2`, gid, from, to)
	if err != nil {
		return false, err
	}
	return ct.RowsAffected() == 1, nil
}

// globalRow is an unfinished global transaction.
type globalRow struct {
	gid, state string
	from, to   Account
	amount     int64
}

func unfinished(ctx context.Context, p *pools, opt Options, proto string, states ...string) ([]globalRow, error) {
	ctx, cancel := context.WithTimeout(ctx, opt.OpTimeout)
	defer cancel()
	rows, _ := p.coord.Query(ctx, `SELECT gid, state, from_node, from_id, to_node, to_id, amount FROM global_txn
		WHERE protocol = $1 AND state = ANY($2) AND updated_at <= clock_timestamp() - $3::interval ORDER BY created_at`,
		proto, states, minAge(opt))
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (globalRow, error) {
		var g globalRow
		return g, r.Scan(&g.gid, &g.state, &g.from.Node, &g.from.ID, &g.to.Node, &g.to.ID, &g.amount)
	})
}
