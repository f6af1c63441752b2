package txn

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// twoPC is a 2PC coordinator over PostgreSQL PREPARE TRANSACTION.
//
// Commit point: the row (gid, 'commit') in twopc_decisions, inserted with
// ON CONFLICT DO NOTHING. Recover inserts (gid, 'abort') the same way before
// rolling an undecided gid back, so a live coordinator and a concurrent
// Recover can never decide differently (presumed abort made race-free).
//
// durable=false is the 2pc-nolog mutant: the decision lives only in the
// coordinator's memory, and Recover rolls back every in-doubt prepared
// transaction, committed elsewhere or not.
type twoPC struct {
	p       *pools
	opt     Options
	durable bool
	prefix  string
}

func new2PC(durable bool) Factory {
	return func(ctx context.Context, ep Endpoints, opt Options) (Transferer, error) {
		opt = opt.withDefaults()
		p, err := openPools(ctx, ep, opt, durable)
		if err != nil {
			return nil, err
		}
		return &twoPC{p: p, opt: opt, durable: durable, prefix: GID2PC(ep, durable, "")}, nil
	}
}

// GID2PC returns the prepared-transaction gid 2pc (durable) or 2pc-nolog
// uses for transfer id on ep (under ep.PreparedPrefix()).
func GID2PC(ep Endpoints, durable bool, id string) string {
	if durable {
		return ep.PreparedPrefix() + "2pc:" + id
	}
	return ep.PreparedPrefix() + "2pcnl:" + id
}

// branch is one participant's share of a transfer.
type branch struct {
	node  int
	ops   []op // in account-id order (no local deadlock)
	label string
}

type op struct {
	account int
	delta   int64 // <0 debit (checked), >0 credit
}

// branches groups a transfer's two updates by node, the source's node first.
func branches(t Transfer) []branch {
	if t.From.Node == t.To.Node {
		ops := []op{{t.From.ID, -t.Amount}, {t.To.ID, t.Amount}}
		sort.Slice(ops, func(i, j int) bool { return ops[i].account < ops[j].account })
		return []branch{{node: t.From.Node, ops: ops, label: "both"}}
	}
	return []branch{
		{node: t.From.Node, ops: []op{{t.From.ID, -t.Amount}}, label: "debit"},
		{node: t.To.Node, ops: []op{{t.To.ID, t.Amount}}, label: "credit"},
	}
}

type vote int

const (
	voteNo      vote = iota // definitely not prepared
	voteYes                 // prepared
	voteUnknown             // PREPARE sent, answer lost
)

func (c *twoPC) Transfer(ctx context.Context, t Transfer) (out Outcome, err error) {
	start := time.Now()
	defer func() { out.Total = time.Since(start) }()
	if err = validate(t); err != nil {
		return out, err
	}
	gid := c.prefix + t.ID
	inject := c.opt.CrashAt != "" && c.opt.match(t)
	crash := func(p CrashPoint) bool { return inject && c.opt.CrashAt == p }
	parts := branches(t)

	if crash(CrashBeforePrepare) {
		return out, fmt.Errorf("%w at %s (transfer %s)", ErrCrashed, CrashBeforePrepare, t.ID)
	}
	// Phase 1: prepare on every participant, in parallel.
	ps := time.Now()
	votes := make([]vote, len(parts))
	causes := make([]error, len(parts))
	parallel(len(parts), func(i int) { votes[i], causes[i] = c.prepare(ctx, gid, parts[i]) })
	out.add(PhasePrepare, ps)
	allYes := true
	for _, v := range votes {
		allYes = allYes && v == voteYes
	}
	cause := errors.Join(causes...)

	if allYes {
		if crash(CrashAfterPrepare) {
			return out, fmt.Errorf("%w at %s (transfer %s)", ErrCrashed, CrashAfterPrepare, t.ID)
		}
		if c.opt.AfterPrepare != nil {
			if herr := c.opt.AfterPrepare(ctx, t); herr != nil {
				return out, fmt.Errorf("%w: after-prepare hook (transfer %s): %v", ErrCrashed, t.ID, herr)
			}
		}
		ds := time.Now()
		committed, derr := c.decide(ctx, gid, parts)
		out.add(PhaseDecide, ds)
		if derr != nil {
			// The decision may or may not be logged: Recover resolves it.
			return out, fmt.Errorf("%w: log decision for %s: %v", ErrIndeterminate, gid, derr)
		}
		if committed {
			if crash(CrashBeforeCommit) {
				return out, fmt.Errorf("%w at %s (transfer %s)", ErrCrashed, CrashBeforeCommit, t.ID)
			}
			cs := time.Now()
			if crash(CrashAfterCommit) {
				// Commit the first participant only, then crash.
				if cerr := c.finish(ctx, parts[0].node, gid, true); cerr != nil {
					c.opt.Logger.Warn("2pc: commit prepared failed; Recover will finish it", "gid", gid, "node", NodeName(parts[0].node), "err", cerr)
				}
				return out, fmt.Errorf("%w at %s (transfer %s)", ErrCrashed, CrashAfterCommit, t.ID)
			}
			// Phase 2: COMMIT PREPARED on every participant, in parallel.
			errs := make([]error, len(parts))
			parallel(len(parts), func(i int) { errs[i] = c.finish(ctx, parts[i].node, gid, true) })
			for i, cerr := range errs {
				if cerr != nil {
					out.Incomplete = true // decided: Recover commits it
					c.opt.Logger.Warn("2pc: commit prepared failed; Recover will finish it", "gid", gid, "node", NodeName(parts[i].node), "err", cerr)
				}
			}
			out.add(PhaseCommit, cs)
			return out, nil
		}
		cause = errors.New("recovery decided abort first")
	}
	// Abort: roll back every participant that is or may be prepared.
	if crash(CrashBeforeRollback) {
		return out, fmt.Errorf("%w at %s (transfer %s)", ErrCrashed, CrashBeforeRollback, t.ID)
	}
	rs := time.Now()
	for i, b := range parts {
		if votes[i] != voteNo {
			if rerr := c.finish(ctx, b.node, gid, false); rerr != nil {
				c.opt.Logger.Warn("2pc: rollback prepared failed; Recover will roll it back", "gid", gid, "node", NodeName(b.node), "err", rerr)
			}
		}
	}
	out.add(PhaseRollback, rs)
	if crash(CrashAfterRollback) {
		return out, fmt.Errorf("%w at %s (transfer %s)", ErrCrashed, CrashAfterRollback, t.ID)
	}
	if isBusiness(cause) {
		return out, fmt.Errorf("2pc %s: %w", t.ID, cause)
	}
	return out, fmt.Errorf("%w: 2pc %s rolled back: %v", ErrAborted, t.ID, cause)
}

// prepare sends BEGIN, the branch's updates (fl_debit / fl_credit, which
// raise on a business rejection) and PREPARE TRANSACTION as one
// simple-protocol query on one acquired connection of the branch's node:
// one round trip. The server runs them in order and skips the rest after
// an error, so an error it answered means not prepared (vote no); a lost
// answer means the prepare may have happened (vote unknown).
func (c *twoPC) prepare(ctx context.Context, gid string, b branch) (vote, error) {
	pl, err := c.p.node(b.node)
	if err != nil {
		return voteNo, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opt.OpTimeout)
	defer cancel()
	conn, err := pl.Acquire(ctx)
	if err != nil {
		return voteNo, fmt.Errorf("acquire %s: %w", NodeName(b.node), err)
	}
	defer conn.Release() // the pool closes it if a transaction is still open
	var q strings.Builder
	q.WriteString("BEGIN;")
	for _, o := range b.ops {
		if o.delta < 0 {
			fmt.Fprintf(&q, " SELECT fl_debit(%d, %d);", o.account, -o.delta)
		} else {
			fmt.Fprintf(&q, " SELECT fl_credit(%d, %d);", o.account, o.delta)
		}
	}
	q.WriteString(" PREPARE TRANSACTION " + quote(gid))
	if _, err := conn.Exec(ctx, q.String(), pgx.QueryExecModeSimpleProtocol); err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			return voteUnknown, fmt.Errorf("prepare on %s (answer lost): %w", NodeName(b.node), err)
		}
		// The server refused: the transaction block is aborted (or, for a
		// refused PREPARE, already rolled back): end it on this session.
		rb, rbCancel := context.WithTimeout(context.Background(), c.opt.OpTimeout)
		_, _ = conn.Exec(rb, "ROLLBACK")
		rbCancel()
		if berr := branchErr(b.node, err); berr != nil {
			return voteNo, fmt.Errorf("on %s: %w", NodeName(b.node), berr)
		}
		return voteNo, fmt.Errorf("prepare on %s: %w", NodeName(b.node), err)
	}
	return voteYes, nil
}

// decide logs the commit decision. false: Recover already logged abort.
func (c *twoPC) decide(ctx context.Context, gid string, parts []branch) (bool, error) {
	if !c.durable {
		return true, nil // the mutant: decided in memory only
	}
	nodes := make([]string, len(parts))
	for i, b := range parts {
		nodes[i] = strconv.Itoa(b.node)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opt.OpTimeout)
	defer cancel()
	var d string
	err := c.p.coord.QueryRow(ctx, `INSERT INTO twopc_decisions(gid, decision, participants) VALUES ($1, 'commit', $2)
		ON CONFLICT (gid) DO NOTHING RETURNING decision`, gid, strings.Join(nodes, ",")).Scan(&d)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// finish sends COMMIT PREPARED or ROLLBACK PREPARED; an unknown gid means
// it is already resolved.
func (c *twoPC) finish(ctx context.Context, node int, gid string, commit bool) error {
	pl, err := c.p.node(node)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opt.OpTimeout)
	defer cancel()
	stmt := "ROLLBACK PREPARED "
	if commit {
		stmt = "COMMIT PREPARED "
	}
	if _, err := pl.Exec(ctx, stmt+quote(gid), pgx.QueryExecModeSimpleProtocol); err != nil && !isUnknownGID(err) {
		return err
	}
	return nil
}

// Recover resolves every prepared transaction with this coordinator's gid
// prefix on every participant: commit if the log says commit, else log
// abort and roll back (presumed abort). The mutant rolls every one back.
func (c *twoPC) Recover(ctx context.Context) error {
	var errs []error
	for node, pl := range c.p.part {
		qctx, cancel := context.WithTimeout(ctx, c.opt.OpTimeout)
		rows, _ := pl.Query(qctx, `SELECT gid FROM pg_prepared_xacts WHERE database = current_database()
			AND left(gid, length($1)) = $1 AND prepared <= now() - $2::interval`,
			c.prefix, fmt.Sprintf("%d milliseconds", c.opt.RecoverMinAge.Milliseconds()))
		gids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("txn: 2pc recover: list prepared xacts on %s: %w", NodeName(node), err))
			continue
		}
		for _, gid := range gids {
			commit := false
			if c.durable {
				if commit, err = c.resolve(ctx, gid); err != nil {
					errs = append(errs, fmt.Errorf("txn: 2pc recover %s: read decision log: %w", gid, err))
					continue
				}
			}
			if err := c.finish(ctx, node, gid, commit); err != nil {
				errs = append(errs, fmt.Errorf("txn: 2pc recover %s on %s (commit=%v): %w", gid, NodeName(node), commit, err))
				continue
			}
			c.opt.Logger.Info("2pc: recovered in-doubt transaction", "gid", gid, "node", NodeName(node), "commit", commit)
		}
	}
	return errors.Join(errs...)
}

// resolve returns the logged decision for gid, logging abort if none.
func (c *twoPC) resolve(ctx context.Context, gid string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opt.OpTimeout)
	defer cancel()
	if _, err := c.p.coord.Exec(ctx, `INSERT INTO twopc_decisions(gid, decision, participants) VALUES ($1, 'abort', '')
		ON CONFLICT (gid) DO NOTHING`, gid); err != nil {
		return false, err
	}
	var d string
	if err := c.p.coord.QueryRow(ctx, `SELECT decision FROM twopc_decisions WHERE gid = $1`, gid).Scan(&d); err != nil {
		return false, err
	}
	return d == "commit", nil
}

func (c *twoPC) Close() error { c.p.close(); return nil }
