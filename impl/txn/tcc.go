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
	OpResolve    = "resolve"    // tcc: fence a try that has not committed, or find it applied
	OpAction     = "action"     // saga forward step
	OpCompensate = "compensate" // saga compensation
)

// Saga states (global_txn.state).
const (
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
// frozen back / drops pending. With the barrier, a try or cancel first
// inserts (gid, branch, op) into the barrier table, ON CONFLICT DO NOTHING,
// and a confirm marks its applied try's row (confirm_seq), in the same
// local transaction: a repeated confirm/cancel finds its mark or row and
// does nothing; cancel inserts the 'try' row too (a fence, if no try
// committed), so a cancel without a try does nothing (empty cancel) and a
// try arriving after it (hanging try) finds its row and does nothing. Every
// handler call is journaled (applied or neutralised) in its local
// transaction.
//
// The decision needs no record of its own: a transfer confirms if and only
// if both its tries applied (both try rows are real, not fences). A try row
// is written once and never changes, so whoever reads the two rows — the
// coordinator, or Recover after it crashed — reaches the same decision,
// and the coordinator's only choice, cancelling a transfer whose try did
// not answer, is made by fencing that try (resolve). A transfer is two
// rounds of two concurrent one-statement transactions: both tries, then
// both confirms (or cancels). Recover finds what a crash left in the
// barrier tables: an applied try with neither confirm nor cancel on its
// node, whose row names the other branch (barrier scan).
type tcc struct {
	p       *pools
	opt     Options
	barrier bool
	proto   string
	lost    sync.Map // gid/branch → lost-reply injected once
}

func newTCC(barrier bool) Factory {
	return func(ctx context.Context, ep Endpoints, opt Options) (Transferer, error) {
		opt = opt.withDefaults()
		p, err := openPools(ctx, ep, opt, false)
		if err != nil {
			return nil, err
		}
		proto := "tcc"
		if !barrier {
			proto = "tcc-nobarrier"
		}
		return &tcc{p: p, opt: opt, barrier: barrier, proto: proto}, nil
	}
}

// tccBranch is one branch of a global transaction; peer is the other
// branch's account (recorded with an applied try, for Recover).
type tccBranch struct {
	name    string
	node    int
	account int
	amount  int64
	peer    Account
}

func tccBranches(from, to Account, amount int64) []tccBranch {
	return []tccBranch{
		{BranchDebit, from.Node, from.ID, amount, to},
		{BranchCredit, to.Node, to.ID, amount, from},
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
	bs := tccBranches(t.From, t.To, t.Amount)

	ts := time.Now()
	errs := make([]error, len(bs))
	late := -1
	parallel(len(bs), func(i int) {
		if inject && c.opt.TCC.LateTry == bs[i].name {
			late = i // held back until its cancel: the coordinator times it out
			errs[i] = fmt.Errorf("%w: try %s timed out (held back)", ErrAborted, bs[i].name)
			return
		}
		errs[i] = c.try(ctx, gid, bs[i])
	})
	out.add(PhaseTry, ts)
	tryErr := errors.Join(errs...)

	confirm, err := c.decide(ctx, gid, bs, errs, &out)
	if err != nil {
		// A try did not answer and could not be fenced: Recover decides.
		return out, fmt.Errorf("%w: tcc %s: %v (tries: %v)", ErrIndeterminate, gid, err, tryErr)
	}
	if confirm {
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
		out.Incomplete = !done // decided (both tries applied): Recover confirms the rest
		return out, nil
	}
	if tryErr == nil {
		tryErr = errors.New("a try was fenced before it committed")
	}
	cs := time.Now()
	cancelled := make([]bool, len(bs))
	done := c.each(ctx, bs, func(b tccBranch) (int, error) {
		n, err := retry(ctx, maxRetries, func() error { return c.cancel(ctx, gid, b) })
		if err == nil && inject && c.opt.TCC.DuplicateCancel {
			_ = c.cancel(ctx, gid, b)
			n++
		}
		if err == nil {
			cancelled[branchIndex(bs, b)] = true
		}
		return n, err
	}, &out)
	out.add(PhaseCancel, cs)
	if late >= 0 && cancelled[late] {
		// The held try arrives after its cancel: the barrier must reject it.
		_ = c.try(ctx, gid, bs[late])
	}
	if !done {
		// Not every try is undone yet: money is frozen until Recover.
		return out, fmt.Errorf("%w: tcc %s: cancel unfinished after try failed (%v)", ErrAborted, gid, tryErr)
	}
	if isBusiness(tryErr) {
		return out, fmt.Errorf("tcc %s: %w", t.ID, tryErr)
	}
	return out, fmt.Errorf("%w: tcc %s cancelled: %v", ErrAborted, t.ID, tryErr)
}

func branchIndex(bs []tccBranch, b tccBranch) int {
	for i := range bs {
		if bs[i].name == b.name {
			return i
		}
	}
	return -1
}

// decide says whether the transfer confirms, from its tries' results: it
// does if and only if every try applied. A try that failed definitely (the
// server refused or rolled it back, the barrier rejected it, it was never
// sent) never applies: cancel. A try with no answer is resolved: fenced if
// it has not committed (then cancel), found applied if it has; an error
// means it could not be resolved. The mutant has no barrier to fence with
// and cancels blindly.
func (c *tcc) decide(ctx context.Context, gid string, bs []tccBranch, errs []error, out *Outcome) (bool, error) {
	var unknown []int
	for i, err := range errs {
		switch Classify(err) {
		case ClassFail:
			return false, nil
		case ClassInfo:
			unknown = append(unknown, i)
		}
	}
	if len(unknown) > 0 && !c.barrier {
		return false, nil
	}
	return c.resolve(ctx, gid, bs, unknown, out)
}

// resolve fences (or finds applied) the tries of bs[i] for i in which,
// retrying each until it answers: true if all of them applied.
func (c *tcc) resolve(ctx context.Context, gid string, bs []tccBranch, which []int, out *Outcome) (bool, error) {
	for _, i := range which {
		var applied bool
		n, err := retry(ctx, maxRetries, func() (err error) {
			applied, err = c.branchCall(ctx, gid, OpResolve, bs[i])
			return err
		})
		out.Retries += n
		if err != nil {
			return false, fmt.Errorf("resolve the %s try: %w", bs[i].name, err)
		}
		if !applied {
			return false, nil // fenced: it never applies
		}
	}
	return true, nil
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

// errRejected: the barrier neutralised a try (its cancel came first).
var errRejected = fmt.Errorf("%w: try rejected by the barrier (already cancelled)", ErrAborted)

// branchCall runs one TCC branch handler (fl_tcc in schema.go: the barrier
// insert, the business update and the journal row) as one statement, its
// own local transaction: one round trip. It reports whether it applied
// (resolve: whether the try had applied).
func (c *tcc) branchCall(ctx context.Context, gid, op string, b tccBranch) (bool, error) {
	return c.p.call(ctx, b.node, c.opt.OpTimeout, `SELECT fl_tcc($1, $2, $3, $4, $5, $6, $7, $8)`,
		gid, b.name, op, b.account, b.amount, b.peer.Node, b.peer.ID, c.barrier)
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

func minAge(opt Options) string {
	return fmt.Sprintf("%d milliseconds", opt.RecoverMinAge.Milliseconds())
}

// scanTimeout bounds one participant's barrier scan when Recover's
// context has no deadline.
const scanTimeout = time.Minute

// inDoubt is a transfer with an applied try that has neither confirm nor
// cancel on its node (open: what a crash, or a call that never answered,
// left), rebuilt from that try's barrier row; open is that branch.
type inDoubt struct {
	gid  string
	t    Transfer
	open map[string]bool
}

// openTries scans every participant's barrier for in-doubt transfers whose
// open try is at least RecoverMinAge old (younger ones may belong to a live
// coordinator), in the order their tries were first found. A scan reads
// the whole barrier table, whose size grows with the run (600,000 rows
// after 150 s at 8 clients), so it is bounded by ctx (at least OpTimeout),
// not by one call's OpTimeout; with no deadline on ctx, by scanTimeout.
func (c *tcc) openTries(ctx context.Context) ([]*inDoubt, error) {
	var out []*inDoubt
	byGID := map[string]*inDoubt{}
	for node, pl := range c.p.part {
		limit := scanTimeout
		if dl, ok := ctx.Deadline(); ok {
			limit = time.Until(dl)
		}
		qctx, cancel := context.WithTimeout(ctx, max(limit, c.opt.OpTimeout))
		rows, _ := pl.Query(qctx, `SELECT t.gid, t.branch, t.account, t.amount, t.peer_node, t.peer_account FROM barrier t
			WHERE t.op = 'try' AND t.seq IS NOT NULL AND t.peer_node IS NOT NULL AND left(t.gid, length($1)) = $1
			AND t.at <= clock_timestamp() - $2::interval
			AND t.confirm_seq IS NULL
			AND NOT EXISTS (SELECT 1 FROM barrier x WHERE x.gid = t.gid AND x.branch = t.branch AND x.op IN ('confirm', 'cancel'))
			ORDER BY t.seq`, GIDTCC(""), minAge(c.opt))
		type openRow struct {
			gid, branch    string
			account        int
			amount         int64
			peerN, peerAcc int
		}
		rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (openRow, error) {
			var o openRow
			return o, r.Scan(&o.gid, &o.branch, &o.account, &o.amount, &o.peerN, &o.peerAcc)
		})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("scan %s's barrier: %w", NodeName(node), err)
		}
		for _, r := range rs {
			d := byGID[r.gid]
			if d == nil {
				own, peer := Account{Node: node, ID: r.account}, Account{Node: r.peerN, ID: r.peerAcc}
				d = &inDoubt{gid: r.gid, open: map[string]bool{}, t: Transfer{From: own, To: peer, Amount: r.amount}}
				if r.branch == BranchCredit {
					d.t.From, d.t.To = peer, own
				}
				byGID[r.gid] = d
				out = append(out, d)
			}
			d.open[r.branch] = true
		}
	}
	return out, nil
}

// Recover finishes every in-doubt transfer the barrier scan finds: the
// branches whose try has no answer are resolved (fenced or found applied),
// then both branches confirmed if both tries applied, else cancelled —
// the decision the coordinator made or would have made. The mutant writes
// no barrier rows: it finds nothing.
func (c *tcc) Recover(ctx context.Context) error {
	ds, err := c.openTries(ctx)
	if err != nil {
		return fmt.Errorf("txn: %s recover: %w", c.proto, err)
	}
	var errs []error
	for _, d := range ds {
		bs := tccBranches(d.t.From, d.t.To, d.t.Amount)
		var unknown []int
		for i, b := range bs {
			if !d.open[b.name] {
				unknown = append(unknown, i)
			}
		}
		var out Outcome
		confirm, err := c.resolve(ctx, d.gid, bs, unknown, &out)
		if err != nil {
			errs = append(errs, fmt.Errorf("txn: %s recover %s: %w", c.proto, d.gid, err))
			continue
		}
		op := c.cancel
		if confirm {
			op = func(ctx context.Context, gid string, b tccBranch) error { return c.confirm(ctx, gid, b, false) }
		}
		if !c.each(ctx, bs, func(b tccBranch) (int, error) {
			return retry(ctx, maxRetries, func() error { return op(ctx, d.gid, b) })
		}, &out) {
			errs = append(errs, fmt.Errorf("txn: %s recover %s: confirm=%v unfinished", c.proto, d.gid, confirm))
			continue
		}
		c.opt.Logger.Info("tcc: recovered an in-doubt transfer", "gid", d.gid, "confirmed", confirm)
	}
	return errors.Join(errs...)
}

func (c *tcc) Close() error {
	c.p.close()
	return nil
}
