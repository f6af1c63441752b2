package txn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// TCC branch and op names (journal and barrier rows).
const (
	BranchDebit  = "debit"
	BranchCredit = "credit"
	OpTry        = "try"
	OpConfirm    = "confirm"
	OpCancel     = "cancel"
	OpAction     = "action"     // saga forward step
	OpCompensate = "compensate" // saga compensation
)

// Global transaction states (global_txn.state).
const (
	stateTrying       = "trying"
	stateConfirming   = "confirming"
	stateConfirmed    = "confirmed"
	stateCancelling   = "cancelling"
	stateCancelled    = "cancelled"
	stateRunning      = "running"
	stateCompensating = "compensating"
	stateDone         = "done"
	stateAborted      = "aborted"
)

// maxRetries bounds every retried confirm/cancel/step (ctx bounds it too).
const maxRetries = 40

// tcc is a TCC coordinator; its participants' branch handlers run here too
// (each a local transaction on the branch's node).
//
// Try on the debit branch moves amount from balance to frozen (the source
// keeps owning it); try on the credit branch adds it to the target's
// pending. Confirm clears frozen / moves pending to balance; cancel gives
// frozen back / drops pending. With the barrier, every handler first
// inserts (gid, branch, op) into the barrier table, ON CONFLICT DO NOTHING,
// in the same local transaction: a repeated confirm/cancel finds its row
// and does nothing; cancel inserts the 'try' row too, so a cancel without a
// try does nothing (empty cancel) and a try arriving after it finds its row
// and does nothing (hanging try). Every handler call writes a journal row
// (applied or neutralised) in its local transaction.
type tcc struct {
	p       *pools
	opt     Options
	barrier bool
	proto   string
	lost    sync.Map  // gid/branch → lost-reply injected once
	done    *finisher // confirming → confirmed, batched
}

func newTCC(barrier bool) Factory {
	return func(ctx context.Context, ep Endpoints, opt Options) (Transferer, error) {
		opt = opt.withDefaults()
		p, err := openPools(ctx, ep, opt, true)
		if err != nil {
			return nil, err
		}
		proto := "tcc"
		if !barrier {
			proto = "tcc-nobarrier"
		}
		return &tcc{p: p, opt: opt, barrier: barrier, proto: proto,
			done: newFinisher(p, opt, stateConfirming, stateConfirmed)}, nil
	}
}

// tccBranch is one branch of a global transaction.
type tccBranch struct {
	name    string
	node    int
	account int
	amount  int64
}

func tccBranches(from, to Account, amount int64) []tccBranch {
	return []tccBranch{
		{BranchDebit, from.Node, from.ID, amount},
		{BranchCredit, to.Node, to.ID, amount},
	}
}

// GIDTCC is the global transaction id tcc / tcc-nobarrier use for a transfer.
func GIDTCC(id string) string { return GIDPrefix + "tcc:" + id }

func (c *tcc) Transfer(ctx context.Context, t Transfer) (out Outcome, err error) {
	start := time.Now()
	defer func() { out.Total = time.Since(start) }()
	if err = validate(t); err != nil {
		return out, err
	}
	gid := GIDTCC(t.ID)
	inject := c.opt.match(t)
	if err := c.begin(ctx, gid, t); err != nil {
		return out, err
	}
	bs := tccBranches(t.From, t.To, t.Amount)

	ts := time.Now()
	errs := make([]error, len(bs))
	late := -1
	parallel(len(bs), func(i int) {
		if inject && c.opt.TCC.LateTry == bs[i].name {
			late = i // held back: the coordinator will time it out
			errs[i] = fmt.Errorf("%w: try %s timed out (held back)", ErrAborted, bs[i].name)
			return
		}
		errs[i] = c.try(ctx, gid, bs[i])
	})
	out.add(PhaseTry, ts)
	tryErr := errors.Join(errs...)

	if tryErr == nil {
		ok, serr := c.setState(ctx, gid, stateTrying, stateConfirming)
		if serr != nil {
			return out, fmt.Errorf("%w: tcc %s: record confirm decision: %v", ErrIndeterminate, gid, serr)
		}
		if ok {
			cs := time.Now()
			done := c.each(ctx, bs, func(b tccBranch) (int, error) {
				n, err := retry(ctx, maxRetries, func() error { return c.confirm(ctx, gid, b, inject) })
				if err == nil && inject && c.opt.TCC.DuplicateConfirm {
					_ = c.confirm(ctx, gid, b, false)
					n++
				}
				return n, err
			}, &out)
			out.add(PhaseConfirm, cs)
			if done {
				c.done.add(gid)
			} else {
				out.Incomplete = true // decided: Recover confirms the rest
			}
			return out, nil
		}
		tryErr = errors.New("recovery cancelled it first")
	} else {
		_, _ = c.setState(ctx, gid, stateTrying, stateCancelling)
	}
	cs := time.Now()
	done := c.each(ctx, bs, func(b tccBranch) (int, error) {
		n, err := retry(ctx, maxRetries, func() error { return c.cancel(ctx, gid, b) })
		if err == nil && inject && c.opt.TCC.DuplicateCancel {
			_ = c.cancel(ctx, gid, b)
			n++
		}
		return n, err
	}, &out)
	out.add(PhaseCancel, cs)
	if late >= 0 {
		// The held try arrives after its cancel: the barrier must reject it.
		_ = c.try(ctx, gid, bs[late])
	}
	if !done {
		// Not every try is undone yet: money is frozen until Recover.
		return out, fmt.Errorf("%w: tcc %s: cancel unfinished after try failed (%v)", ErrAborted, gid, tryErr)
	}
	_, _ = c.setState(ctx, gid, stateCancelling, stateCancelled)
	if isBusiness(tryErr) {
		return out, fmt.Errorf("tcc %s: %w", t.ID, tryErr)
	}
	return out, fmt.Errorf("%w: tcc %s cancelled: %v", ErrAborted, t.ID, tryErr)
}

// each runs fn on every branch in parallel; true when all succeeded.
func (c *tcc) each(ctx context.Context, bs []tccBranch, fn func(tccBranch) (int, error), out *Outcome) bool {
	ns := make([]int, len(bs))
	errs := make([]error, len(bs))
	parallel(len(bs), func(i int) { ns[i], errs[i] = fn(bs[i]) })
	ok := true
	for i := range bs {
		out.Retries += ns[i]
		if errs[i] != nil {
			ok = false
			c.opt.Logger.Warn("tcc: branch call unfinished; Recover will finish it", "branch", bs[i].name, "err", errs[i])
		}
	}
	return ok
}

// begin records the global transaction (state trying) before any try.
func (c *tcc) begin(ctx context.Context, gid string, t Transfer) error {
	if err := c.done.begin(ctx, gid, c.proto, stateTrying, t); err != nil {
		// No branch ran yet: even if the row was written, Recover cancels a
		// trying transaction, which undoes (empty) branches.
		return fmt.Errorf("%w: %v", ErrAborted, err)
	}
	return nil
}

// setState moves gid from one state to another; false if it was not in from.
func (c *tcc) setState(ctx context.Context, gid, from, to string) (bool, error) {
	return setGlobalState(ctx, c.p, c.opt, gid, from, to)
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

// errRejected: the barrier neutralised a try (its cancel came first).
var errRejected = fmt.Errorf("%w: try rejected by the barrier (already cancelled)", ErrAborted)

// branchCall runs one TCC branch handler (fl_tcc in schema.go: the barrier
// insert, the business update and the journal row) as one statement, its
// own local transaction: one round trip. It reports whether it applied.
func (c *tcc) branchCall(ctx context.Context, gid, op string, b tccBranch) (bool, error) {
	return c.p.call(ctx, b.node, c.opt.OpTimeout, `SELECT fl_tcc($1, $2, $3, $4, $5, $6)`,
		gid, b.name, op, b.account, b.amount, c.barrier)
}

func (c *tcc) try(ctx context.Context, gid string, b tccBranch) error {
	applied, err := c.branchCall(ctx, gid, OpTry, b)
	if err == nil && !applied {
		return errRejected
	}
	return err
}

func (c *tcc) confirm(ctx context.Context, gid string, b tccBranch, inject bool) error {
	_, err := c.branchCall(ctx, gid, OpConfirm, b)
	if err == nil && inject && c.opt.TCC.LostConfirmReply {
		if _, seen := c.lost.LoadOrStore(gid+"/"+b.name, true); !seen {
			return fmt.Errorf("%w: confirm %s reply lost (injected)", ErrIndeterminate, b.name)
		}
	}
	return err
}

func (c *tcc) cancel(ctx context.Context, gid string, b tccBranch) error {
	_, err := c.branchCall(ctx, gid, OpCancel, b)
	return err
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
		proto, states, fmt.Sprintf("%d milliseconds", opt.RecoverMinAge.Milliseconds()))
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (globalRow, error) {
		var g globalRow
		return g, r.Scan(&g.gid, &g.state, &g.from.Node, &g.from.ID, &g.to.Node, &g.to.ID, &g.amount)
	})
}

// Recover finishes every unfinished global transaction: 'confirming' ones
// are confirmed, 'trying' and 'cancelling' ones cancelled.
func (c *tcc) Recover(ctx context.Context) error {
	if err := c.done.flush(ctx); err != nil {
		return fmt.Errorf("txn: %s recover: record confirmed transactions: %w", c.proto, err)
	}
	gs, err := unfinished(ctx, c.p, c.opt, c.proto, stateTrying, stateConfirming, stateCancelling)
	if err != nil {
		return fmt.Errorf("txn: %s recover: list unfinished transactions: %w", c.proto, err)
	}
	var errs []error
	for _, g := range gs {
		bs := tccBranches(g.from, g.to, g.amount)
		if g.state == stateTrying {
			ok, err := c.setState(ctx, g.gid, stateTrying, stateCancelling)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if !ok { // the coordinator moved on meanwhile: next Recover
				continue
			}
			g.state = stateCancelling
		}
		var out Outcome
		var done bool
		final := stateCancelled
		if g.state == stateConfirming {
			final = stateConfirmed
			done = c.each(ctx, bs, func(b tccBranch) (int, error) {
				return retry(ctx, maxRetries, func() error { return c.confirm(ctx, g.gid, b, false) })
			}, &out)
		} else {
			done = c.each(ctx, bs, func(b tccBranch) (int, error) {
				return retry(ctx, maxRetries, func() error { return c.cancel(ctx, g.gid, b) })
			}, &out)
		}
		if !done {
			errs = append(errs, fmt.Errorf("txn: %s recover %s: %s unfinished", c.proto, g.gid, g.state))
			continue
		}
		if _, err := c.setState(ctx, g.gid, g.state, final); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *tcc) Close() error {
	c.done.close()
	c.p.close()
	return nil
}
