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
	"github.com/jackc/pgx/v5/pgxpool"
)

// twoPC is a 2PC coordinator over PostgreSQL PREPARE TRANSACTION with the
// last-resource (logging-last-resource) commit optimisation.
//
// The debit participant (branches' first, the "last resource") is never
// prepared: its local transaction runs BEGIN and its updates while the
// other participants run BEGIN, their updates and PREPARE TRANSACTION.
// If every other participant voted yes, the coordinator inserts the commit
// decision row (gid, 'commit') into twopc_decisions in the last resource's
// OWN bank database, inside that same local transaction, and commits it:
// that COMMIT is the commit point (the debit and the decision are durable
// together or not at all). Then COMMIT PREPARED on the others. Durable
// steps per transfer: PREPARE on the credit node, COMMIT on the debit node,
// COMMIT PREPARED on the credit node (3 fsyncs; the classic protocol with
// a separate decision log needs 5 in three sequential durable steps).
//
// The decision node is encoded in the gid (GID2PC: <prefix>2pc:<node>:<id>),
// so Recover, finding a prepared gid on any participant, knows where to
// read the decision. It inserts (gid, 'abort') there with ON CONFLICT DO
// NOTHING, which waits, through the primary key, for a live coordinator's
// uncommitted commit row; then it reads the row back. The coordinator's own
// insert is a plain INSERT sent with the COMMIT in one round trip: if
// Recover's abort row got there first, it fails with a unique violation,
// the COMMIT is skipped, and the coordinator rolls back its local
// transaction and the prepared ones (the transfer aborts). So a live
// coordinator and a concurrent Recover never decide differently; no row
// means presumed abort. A decision node Recover cannot reach leaves the
// gid in doubt (an error): it never guesses.
//
// durable=false is the 2pc-nolog mutant: the last resource commits without
// any decision row, and Recover rolls back every in-doubt prepared
// transaction, committed elsewhere or not.
type twoPC struct {
	p       *pools
	opt     Options
	durable bool
	prefix  string
	// ignoreConflict is the race test's mutant (export_test.go): its
	// decision insert ignores a row Recover inserted first (ON CONFLICT DO
	// NOTHING) and commits the debit anyway.
	ignoreConflict bool
}

func new2PC(durable bool) Factory {
	return func(ctx context.Context, ep Endpoints, opt Options) (Transferer, error) {
		opt = opt.withDefaults()
		// The decisions live in the participants' own databases: no
		// coordinator database.
		p, err := openPools(ctx, ep, opt, false)
		if err != nil {
			return nil, err
		}
		return &twoPC{p: p, opt: opt, durable: durable, prefix: gidPrefix2PC(ep, durable)}, nil
	}
}

func gidPrefix2PC(ep Endpoints, durable bool) string {
	if durable {
		return ep.PreparedPrefix() + "2pc:"
	}
	return ep.PreparedPrefix() + "2pcnl:"
}

// GID2PC returns the prepared-transaction gid 2pc (durable) or 2pc-nolog
// uses on ep for transfer id whose decision node (the debit participant,
// the last resource) is decisionNode: <ep.PreparedPrefix()>2pc:<node>:<id>
// (2pcnl: for the mutant).
func GID2PC(ep Endpoints, durable bool, decisionNode int, id string) string {
	return gidPrefix2PC(ep, durable) + strconv.Itoa(decisionNode) + ":" + id
}

// decisionNode is the node a gid under prefix names as its decision node.
func decisionNode(prefix, gid string, nodes int) (int, error) {
	rest, ok := strings.CutPrefix(gid, prefix)
	node, _, found := strings.Cut(rest, ":")
	if !ok || !found {
		return 0, fmt.Errorf("gid %q: want %s<node>:<id>", gid, prefix)
	}
	n, err := strconv.Atoi(node)
	if err != nil || n < 0 || n >= nodes {
		return 0, fmt.Errorf("gid %q: no decision node %q among %d participants", gid, node, nodes)
	}
	return n, nil
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
	voteYes                 // prepared (the last resource: its updates done, transaction open)
	voteUnknown             // PREPARE sent, answer lost
)

func (c *twoPC) Transfer(ctx context.Context, t Transfer) (out Outcome, err error) {
	start := time.Now()
	defer func() { out.Total = time.Since(start) }()
	if err = validate(t); err != nil {
		return out, err
	}
	parts := branches(t)
	last, others := parts[0], parts[1:]
	gid := c.prefix + strconv.Itoa(last.node) + ":" + t.ID
	inject := c.opt.CrashAt != "" && c.opt.match(t)
	crash := func(p CrashPoint) bool { return inject && c.opt.CrashAt == p }

	if crash(CrashBeforePrepare) {
		return out, fmt.Errorf("%w at %s (transfer %s)", ErrCrashed, CrashBeforePrepare, t.ID)
	}
	// Phase 1: the last resource's updates in its open local transaction,
	// and prepare on every other participant, in parallel.
	ps := time.Now()
	votes := make([]vote, len(parts))
	causes := make([]error, len(parts))
	var lr *pgxpool.Conn
	parallel(len(parts), func(i int) {
		if i == 0 {
			lr, votes[0], causes[0] = c.begin(ctx, last)
			return
		}
		votes[i], causes[i] = c.prepare(ctx, gid, parts[i])
	})
	out.add(PhasePrepare, ps)
	allYes := true
	for _, v := range votes {
		allYes = allYes && v == voteYes
	}
	cause := errors.Join(causes...)
	// A crash drops the last resource's connection as the dying process
	// would: its local transaction rolls back.
	crashed := func(p CrashPoint) (Outcome, error) {
		c.drop(lr)
		return out, fmt.Errorf("%w at %s (transfer %s)", ErrCrashed, p, t.ID)
	}

	if allYes {
		if crash(CrashAfterPrepare) {
			return crashed(CrashAfterPrepare)
		}
		if c.opt.AfterPrepare != nil {
			if herr := c.opt.AfterPrepare(ctx, t); herr != nil {
				c.drop(lr)
				return out, fmt.Errorf("%w: after-prepare hook (transfer %s): %v", ErrCrashed, t.ID, herr)
			}
		}
		if crash(CrashBeforeCommit) {
			return crashed(CrashBeforeCommit)
		}
		ds := time.Now()
		committed, derr := c.commitLast(ctx, lr, gid, parts)
		lr = nil
		out.add(PhaseDecide, ds)
		if derr != nil && committed {
			// The commit point's answer was lost: Recover resolves it
			// from the decision row (or its absence).
			return out, fmt.Errorf("%w: commit %s on %s (the commit point): %v", ErrIndeterminate, gid, NodeName(last.node), derr)
		}
		if derr == nil && committed {
			if crash(CrashAfterCommit) {
				// The last resource committed with the decision; the
				// others stay prepared.
				return out, fmt.Errorf("%w at %s (transfer %s)", ErrCrashed, CrashAfterCommit, t.ID)
			}
			// Phase 2: COMMIT PREPARED on every other participant.
			cs := time.Now()
			errs := make([]error, len(others))
			parallel(len(others), func(i int) { errs[i] = c.finish(ctx, others[i].node, gid, true) })
			for i, cerr := range errs {
				if cerr != nil {
					out.Incomplete = true // decided: Recover commits it
					c.opt.Logger.Warn("2pc: commit prepared failed; Recover will finish it", "gid", gid, "node", NodeName(others[i].node), "err", cerr)
				}
			}
			out.add(PhaseCommit, cs)
			return out, nil
		}
		if derr != nil {
			cause = derr
		} else {
			cause = errors.New("recovery decided abort first")
		}
	}
	// Abort: roll back every participant that is or may be prepared, and
	// the last resource's local transaction if still open.
	if crash(CrashBeforeRollback) {
		return crashed(CrashBeforeRollback)
	}
	rs := time.Now()
	c.rollbackLast(lr)
	for i, b := range others {
		if votes[i+1] != voteNo {
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

// branchSQL is BEGIN and the branch's updates (fl_debit / fl_credit, which
// raise on a business rejection) as one simple-protocol query text.
func branchSQL(b branch) *strings.Builder {
	var q strings.Builder
	q.WriteString("BEGIN;")
	for _, o := range b.ops {
		if o.delta < 0 {
			fmt.Fprintf(&q, " SELECT fl_debit(%d, %d);", o.account, -o.delta)
		} else {
			fmt.Fprintf(&q, " SELECT fl_credit(%d, %d);", o.account, o.delta)
		}
	}
	return &q
}

// begin runs the last resource's BEGIN and updates on one acquired
// connection (one round trip) and keeps the transaction open: voteYes
// returns the connection, which commitLast, rollbackLast or drop ends.
// Nothing can commit without the coordinator's COMMIT, so any failure is
// a definite no (a lost connection rolls the transaction back).
func (c *twoPC) begin(ctx context.Context, b branch) (*pgxpool.Conn, vote, error) {
	pl, err := c.p.node(b.node)
	if err != nil {
		return nil, voteNo, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opt.OpTimeout)
	defer cancel()
	conn, err := pl.Acquire(ctx)
	if err != nil {
		return nil, voteNo, fmt.Errorf("acquire %s: %w", NodeName(b.node), err)
	}
	if _, err := conn.Exec(ctx, branchSQL(b).String(), pgx.QueryExecModeSimpleProtocol); err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			c.drop(conn)
			return nil, voteNo, fmt.Errorf("updates on %s (connection lost, rolled back): %w", NodeName(b.node), err)
		}
		c.rollbackLast(conn)
		if berr := branchErr(b.node, err); berr != nil {
			return nil, voteNo, fmt.Errorf("on %s: %w", NodeName(b.node), berr)
		}
		return nil, voteNo, fmt.Errorf("updates on %s: %w", NodeName(b.node), err)
	}
	return conn, voteYes, nil
}

// commitLast commits the last resource's local transaction, with the
// commit decision row in it (durable), in one round trip: INSERT; COMMIT.
// It always ends conn. committed=true, err=nil: the transfer committed;
// committed=true, err≠nil: the COMMIT was sent and its answer lost (in
// doubt); committed=false: definitely rolled back (err=nil: Recover had
// decided abort first).
func (c *twoPC) commitLast(ctx context.Context, conn *pgxpool.Conn, gid string, parts []branch) (bool, error) {
	sql := "COMMIT" // the mutant: no decision row
	if c.durable {
		nodes := make([]string, len(parts))
		for i, b := range parts {
			nodes[i] = strconv.Itoa(b.node)
		}
		// A plain INSERT (no ON CONFLICT): a row Recover inserted first
		// makes it fail, and the server skips the COMMIT.
		sql = "INSERT INTO twopc_decisions(gid, decision, participants) VALUES (" + quote(gid) + ", 'commit', " +
			quote(strings.Join(nodes, ",")) + "); COMMIT"
		if c.ignoreConflict {
			sql = strings.Replace(sql, "); COMMIT", ") ON CONFLICT (gid) DO NOTHING; COMMIT", 1)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.opt.OpTimeout)
	defer cancel()
	if conn.Conn().IsClosed() {
		// Closed before the COMMIT was written (so its transaction rolled
		// back): definite, unlike a close while reading the answer.
		c.drop(conn)
		return false, fmt.Errorf("commit never sent to %s: its connection was closed", NodeName(parts[0].node))
	}
	_, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err == nil {
		conn.Release()
		return true, nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		c.rollbackLast(conn)
		if pe.Code == "23505" { // unique_violation on twopc_decisions' key
			return false, nil
		}
		return false, fmt.Errorf("commit refused on %s: %w", NodeName(parts[0].node), err)
	}
	c.drop(conn)
	if neverSent(err) {
		return false, fmt.Errorf("commit never sent to %s: %w", NodeName(parts[0].node), err)
	}
	return true, err
}

// rollbackLast rolls back the last resource's open transaction and
// returns its connection to the pool (nil: nothing to do).
func (c *twoPC) rollbackLast(conn *pgxpool.Conn) {
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opt.OpTimeout)
	defer cancel()
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		c.drop(conn)
		return
	}
	conn.Release()
}

// drop closes the last resource's connection (nil: nothing to do): the
// server rolls back its open transaction, as when a coordinator dies.
func (c *twoPC) drop(conn *pgxpool.Conn) {
	if conn == nil {
		return
	}
	pc := conn.Hijack()
	ctx, cancel := context.WithTimeout(context.Background(), c.opt.OpTimeout)
	defer cancel()
	_ = pc.Close(ctx)
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
	q := branchSQL(b)
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
// prefix on every participant: commit if its decision node's log says
// commit, else log abort there and roll back (presumed abort). A decision
// node that does not answer leaves the gid in doubt (an error). The
// mutant rolls every one back.
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
					errs = append(errs, fmt.Errorf("txn: 2pc recover %s (left in doubt): %w", gid, err))
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

// resolve returns the decision for gid logged on its decision node,
// logging abort there if none. The insert waits for a live coordinator's
// uncommitted commit row (same key) and then does nothing, or wins, and
// that coordinator's insert fails: both read the same decision.
func (c *twoPC) resolve(ctx context.Context, gid string) (bool, error) {
	dn, err := decisionNode(c.prefix, gid, len(c.p.part))
	if err != nil {
		return false, err
	}
	pl := c.p.part[dn]
	ctx, cancel := context.WithTimeout(ctx, c.opt.OpTimeout)
	defer cancel()
	if _, err := pl.Exec(ctx, `INSERT INTO twopc_decisions(gid, decision, participants) VALUES ($1, 'abort', '')
		ON CONFLICT (gid) DO NOTHING`, gid); err != nil {
		return false, fmt.Errorf("log abort on decision node %s: %w", NodeName(dn), err)
	}
	var d string
	if err := pl.QueryRow(ctx, `SELECT decision FROM twopc_decisions WHERE gid = $1`, gid).Scan(&d); err != nil {
		return false, fmt.Errorf("read decision on %s: %w", NodeName(dn), err)
	}
	return d == "commit", nil
}

func (c *twoPC) Close() error { c.p.close(); return nil }
