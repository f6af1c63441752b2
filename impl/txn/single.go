package txn

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// single is the baseline: both accounts on one node, one local transaction.
type single struct {
	p   *pools
	opt Options
}

func newSingle(ctx context.Context, ep Endpoints, opt Options) (Transferer, error) {
	opt = opt.withDefaults()
	p, err := openPools(ctx, ep, opt, false)
	if err != nil {
		return nil, err
	}
	return &single{p: p, opt: opt}, nil
}

func (s *single) Transfer(ctx context.Context, t Transfer) (out Outcome, err error) {
	start := time.Now()
	defer func() { out.Total = time.Since(start) }()
	if err = validate(t); err != nil {
		return out, err
	}
	if t.From.Node != t.To.Node {
		return out, fmt.Errorf("%w: single-db needs both accounts on one node (%s → %s)", ErrAborted, t.From, t.To)
	}
	err = s.p.runLocal(ctx, t.From.Node, s.opt.OpTimeout, func(ctx context.Context, tx pgx.Tx) error {
		// Lock in id order: opposite transfers do not deadlock.
		if t.From.ID < t.To.ID {
			if err := debit(ctx, tx, t.From.ID, t.Amount); err != nil {
				return err
			}
			return credit(ctx, tx, t.To.ID, t.Amount)
		}
		if err := credit(ctx, tx, t.To.ID, t.Amount); err != nil {
			return err
		}
		return debit(ctx, tx, t.From.ID, t.Amount)
	})
	out.add(PhaseLocal, start)
	return out, err
}

func (s *single) Recover(context.Context) error { return nil }

func (s *single) Close() error { s.p.close(); return nil }
