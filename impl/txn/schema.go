package txn

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// CoordDatabase is the coordinator database Setup creates on participant A's
// server when Endpoints.Coordinator.DSN is empty.
const CoordDatabase = "faultline_coord"

// GIDPrefix starts every global transaction id (prepared-xact gid, barrier
// gid, message id) this package creates. Prepared-transaction gids are
// server-wide (one namespace for every database and schema of a
// PostgreSQL cluster), so they start with the run's own prefix
// (Endpoints.GIDPrefix, RunGIDPrefix: "fl:<run>:"), itself starting with
// GIDPrefix. Setup rolls back and Snapshot reports only prepared
// transactions under the run's prefix (exec: adapters get it as
// endpoints.gid_prefix; see docs/protocol.md), so neither another
// application's in-doubt transactions nor those of another faultline run
// on the same server are touched.
const GIDPrefix = "fl:"

// runGIDPrefixRE is what a run's gid prefix looks like.
var runGIDPrefixRE = regexp.MustCompile(`^fl:[a-z0-9_]{1,40}:$`)

// RunGIDPrefix is the prepared-transaction gid prefix of the run named
// token (a-z, 0-9, _; at most 40): "fl:<token>:".
func RunGIDPrefix(token string) string { return GIDPrefix + token + ":" }

// PreparedPrefix is the prefix of every prepared-transaction gid on ep:
// ep.GIDPrefix, or GIDPrefix when it is empty (a library user's own
// servers).
func (ep Endpoints) PreparedPrefix() string {
	if ep.GIDPrefix == "" {
		return GIDPrefix
	}
	return ep.GIDPrefix
}

// Outbox stream, consumer group and stream epoch.
const (
	OutboxStream = "faultline:outbox"
	OutboxGroup  = "bank"
	// OutboxEpochKey holds the stream's epoch: a random token the first
	// relay to find it missing sets. It lives on the stream's Redis node
	// and vanishes with the stream (a restart without persistence), so a
	// new token tells every relay that messages published under the old
	// one may be lost (see outbox).
	OutboxEpochKey = "faultline:outbox:epoch"
)

const participantDDL = `
CREATE TABLE IF NOT EXISTS accounts (
	id      int PRIMARY KEY,
	balance bigint NOT NULL,           -- no CHECK (balance >= 0): the checker must see negatives
	frozen  bigint NOT NULL DEFAULT 0, -- TCC: debited by a try, awaiting confirm/cancel (still the owner's money)
	pending bigint NOT NULL DEFAULT 0  -- TCC: credited by a try, not yet the owner's money
);
CREATE TABLE IF NOT EXISTS barrier (  -- TCC barrier / saga step log
	gid    text NOT NULL,
	branch text NOT NULL,
	op     text NOT NULL,
	at     timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (gid, branch, op)
);
CREATE TABLE IF NOT EXISTS journal (  -- every TCC/saga branch call, written in the call's own local txn
	seq     bigserial PRIMARY KEY,
	gid     text NOT NULL,
	branch  text NOT NULL,
	op      text NOT NULL,
	account int NOT NULL,
	amount  bigint NOT NULL,
	applied boolean NOT NULL,          -- false: the barrier neutralised it
	at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- A barrier row with a seq is also the journal entry of the call that
-- inserted it (an applied try, confirm or saga action: one insert instead
-- of two on the common path); the journal holds every other call.
ALTER TABLE barrier ADD COLUMN IF NOT EXISTS seq bigint;        -- tables of an older faultline
ALTER TABLE barrier ADD COLUMN IF NOT EXISTS account int;
ALTER TABLE barrier ADD COLUMN IF NOT EXISTS amount bigint;
-- An applied TCC try's row also names the other branch's node and account,
-- so Recover rebuilds an in-doubt transfer from either participant's
-- barrier alone (tcc keeps no coordinator record).
ALTER TABLE barrier ADD COLUMN IF NOT EXISTS peer_node int;
ALTER TABLE barrier ADD COLUMN IF NOT EXISTS peer_account int;
-- A TCC confirm marks its applied try's row (its journal entry: seq and
-- time) instead of inserting a row of its own: one HOT update found by the
-- primary key, not an insert into the heap and the index; the page keeps
-- room for it.
ALTER TABLE barrier ADD COLUMN IF NOT EXISTS confirm_seq bigint;
ALTER TABLE barrier ADD COLUMN IF NOT EXISTS confirm_at timestamptz;
ALTER TABLE barrier SET (fillfactor = 85);
CREATE TABLE IF NOT EXISTS outbox (
	id          bigserial PRIMARY KEY,
	msg_id      text NOT NULL UNIQUE,
	transfer_id text NOT NULL,
	to_node     int NOT NULL,
	to_id       int NOT NULL,
	amount      bigint NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
	sent_at     timestamptz,
	epoch       text,                  -- the stream epoch it was marked sent under
	publishes   int NOT NULL DEFAULT 0 -- how many times the relay published it
);
-- the relay's scan and Recover's count read only the unsent rows
CREATE INDEX IF NOT EXISTS outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS epoch text;        -- tables of an older faultline
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS publishes int NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS inbox (    -- every message the consumer handled, in the credit's local txn
	seq         bigserial PRIMARY KEY,
	msg_id      text NOT NULL,
	transfer_id text NOT NULL,
	account     int NOT NULL,
	amount      bigint NOT NULL,
	applied     boolean NOT NULL,      -- false: dedup skipped a duplicate
	at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS inbox_dedup (msg_id text PRIMARY KEY);
-- 2pc's decision log: a transfer's row lives in its debit participant's
-- database (the last resource), committed in the debit's own local
-- transaction (see twopc.go)
CREATE TABLE IF NOT EXISTS twopc_decisions (
	gid          text PRIMARY KEY,
	decision     text NOT NULL,        -- commit | abort
	participants text NOT NULL,        -- e.g. "0,1"
	at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
` + participantFuncs

// participantFuncs are the branch handlers as server-side functions, so a
// branch call is one statement and one round trip: the barrier insert, the
// business update and the journal row run in the statement's own local
// transaction exactly as the separate statements did inside BEGIN…COMMIT.
// A business rejection raises SQLSTATE FL001 (no such account) or FL002
// (insufficient funds), which rolls the whole call back (see branchErr).
// The advisory lock serialises concurrent Setups' CREATE OR REPLACE
// (which otherwise fail with "tuple concurrently updated").
const participantFuncs = `
SELECT pg_advisory_xact_lock(7210366071);
-- fl_debit / fl_credit: the updates of a 2pc branch and of a saga step.
CREATE OR REPLACE FUNCTION fl_debit(acc int, amt bigint) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
	UPDATE accounts SET balance = balance - amt WHERE id = acc AND balance >= amt;
	IF NOT FOUND THEN
		IF EXISTS (SELECT 1 FROM accounts WHERE id = acc) THEN
			RAISE EXCEPTION 'debit account % of %: insufficient funds', acc, amt USING ERRCODE = 'FL002';
		END IF;
		RAISE EXCEPTION 'debit account %: no such account', acc USING ERRCODE = 'FL001';
	END IF;
END $f$;
CREATE OR REPLACE FUNCTION fl_credit(acc int, amt bigint) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
	UPDATE accounts SET balance = balance + amt WHERE id = acc;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'credit account %: no such account', acc USING ERRCODE = 'FL001';
	END IF;
END $f$;
-- fl_tcc is one TCC branch call (op try | confirm | cancel | resolve): the
-- barrier insert, the business update and the journal row (applied or
-- neutralised). with_barrier false is the tcc-nobarrier mutant. Returns
-- whether it applied (false for a try the barrier rejected).
--
-- A try row with a seq is an applied ("real") try; one without is a fence,
-- inserted by a cancel or a resolve where no try had committed: a try
-- arriving after it (hanging) finds its row and does nothing. A transfer
-- confirms if and only if both its branches' try rows are real (see tcc.go),
-- so a cancel releases only a real try, and resolve (fence the try if it
-- has not committed, then say whether it is real; no journal row, no money)
-- is how a coordinator or Recover learns the outcome of a try it has no
-- answer for. A try still in flight makes the fence insert wait for it.
DROP FUNCTION IF EXISTS fl_tcc(text, text, text, int, bigint, boolean); -- before the peer columns
CREATE OR REPLACE FUNCTION fl_tcc(g text, br text, o text, acc int, amt bigint, pnode int, pacc int, with_barrier boolean)
RETURNS boolean LANGUAGE plpgsql AS $f$
DECLARE
	applied   boolean := true;
	real_try  boolean;
	journaled boolean := false;
BEGIN
	IF o NOT IN ('try', 'confirm', 'cancel', 'resolve') THEN
		RAISE EXCEPTION 'fl_tcc: unknown op %', o;
	END IF;
	IF with_barrier AND o = 'confirm' THEN
		-- The only commit that need not be durable: a confirm lost in a
		-- server crash leaves its try open (the barrier row goes with the
		-- update), and Recover's barrier scan confirms it again, as the
		-- two durable tries decided. Tries, fences and cancels must stay:
		-- the decision is read from them. A later durable commit on this
		-- server flushes this one's WAL first.
		PERFORM set_config('synchronous_commit', 'off', true);
	END IF;
	IF with_barrier AND o IN ('cancel', 'resolve') THEN
		-- the fence: a try that has not committed never will
		INSERT INTO barrier(gid, branch, op) VALUES (g, br, 'try') ON CONFLICT DO NOTHING;
		IF FOUND THEN
			real_try := false;
		ELSE
			SELECT seq IS NOT NULL INTO real_try FROM barrier WHERE gid = g AND branch = br AND op = 'try';
		END IF;
		IF o = 'resolve' THEN
			RETURN real_try;
		END IF;
		INSERT INTO barrier(gid, branch, op) VALUES (g, br, 'cancel') ON CONFLICT DO NOTHING;
		applied := FOUND AND real_try; -- not an empty nor a repeated cancel
	ELSIF o = 'resolve' THEN
		RAISE EXCEPTION 'fl_tcc: resolve needs the barrier';
	ELSIF with_barrier AND o = 'confirm' THEN
		-- the confirm marks its try's row (its journal entry): only a real
		-- try, once (a repeated confirm finds the mark and does nothing)
		UPDATE barrier SET confirm_seq = nextval('journal_seq_seq'), confirm_at = clock_timestamp()
			WHERE gid = g AND branch = br AND op = 'try' AND seq IS NOT NULL AND confirm_seq IS NULL;
		applied := FOUND;
		journaled := applied;
	ELSIF with_barrier THEN
		-- the barrier row is this call's journal entry if it applies (a
		-- refused try raises and rolls it back)
		INSERT INTO barrier(gid, branch, op, seq, account, amount, peer_node, peer_account)
			VALUES (g, br, o, nextval('journal_seq_seq'), acc, amt, pnode, pacc) ON CONFLICT DO NOTHING;
		applied := FOUND; -- not a repeated confirm nor a try after its cancel
		journaled := applied;
	END IF;
	IF applied THEN
		IF o = 'try' AND br = 'debit' THEN
			UPDATE accounts SET balance = balance - amt, frozen = frozen + amt WHERE id = acc AND balance >= amt;
			IF NOT FOUND THEN
				RAISE EXCEPTION 'try debit % of account %', amt, acc USING ERRCODE = 'FL002';
			END IF;
		ELSIF o = 'try' THEN
			UPDATE accounts SET pending = pending + amt WHERE id = acc;
			IF NOT FOUND THEN
				RAISE EXCEPTION 'try credit account %', acc USING ERRCODE = 'FL001';
			END IF;
		ELSIF o = 'confirm' AND br = 'debit' THEN
			UPDATE accounts SET frozen = frozen - amt WHERE id = acc;
		ELSIF o = 'confirm' THEN
			UPDATE accounts SET pending = pending - amt, balance = balance + amt WHERE id = acc;
		-- cancel releases only if that much is reserved: the mutant's usual
		-- ad-hoc guard against an empty cancel (it cannot tell whose
		-- reservation it releases); redundant behind the barrier.
		ELSIF br = 'debit' THEN
			UPDATE accounts SET balance = balance + amt, frozen = frozen - amt WHERE id = acc AND frozen >= amt;
			applied := FOUND;
		ELSE
			UPDATE accounts SET pending = pending - amt WHERE id = acc AND pending >= amt;
			applied := FOUND;
		END IF;
	END IF;
	IF NOT journaled THEN
		INSERT INTO journal(gid, branch, op, account, amount, applied) VALUES (g, br, o, acc, amt, applied);
	END IF;
	RETURN applied;
END $f$;
-- fl_saga is one saga step (op action | compensate) with its step log and
-- journal row. A compensation inserts the action row too (both rows,
-- always): a step that never ran is not undone and can no longer run late.
CREATE OR REPLACE FUNCTION fl_saga(g text, br text, o text, acc int, amt bigint) RETURNS boolean LANGUAGE plpgsql AS $f$
DECLARE
	applied boolean;
	never   boolean;
BEGIN
	IF o = 'action' THEN
		-- the step-log row is this call's journal entry if it applies (a
		-- refused step raises and rolls it back)
		INSERT INTO barrier(gid, branch, op, seq, account, amount)
			VALUES (g, br, 'action', nextval('journal_seq_seq'), acc, amt) ON CONFLICT DO NOTHING;
		applied := FOUND; -- not done before, nor compensated before it ran
		IF applied AND br = 'debit' THEN
			PERFORM fl_debit(acc, amt);
		ELSIF applied THEN
			PERFORM fl_credit(acc, amt);
		END IF;
		IF applied THEN
			RETURN true;
		END IF;
	ELSIF o = 'compensate' THEN
		INSERT INTO barrier(gid, branch, op) VALUES (g, br, 'action') ON CONFLICT DO NOTHING;
		never := FOUND;
		INSERT INTO barrier(gid, branch, op) VALUES (g, br, 'compensate') ON CONFLICT DO NOTHING;
		applied := FOUND AND NOT never;
		IF applied THEN
			UPDATE accounts SET balance = balance + CASE WHEN br = 'debit' THEN amt ELSE -amt END WHERE id = acc;
		END IF;
	ELSE
		RAISE EXCEPTION 'fl_saga: unknown op %', o;
	END IF;
	INSERT INTO journal(gid, branch, op, account, amount, applied) VALUES (g, br, o, acc, amt, applied);
	RETURN applied;
END $f$;
`

// coordDDL: twopc_decisions here is the decision log of a coordinator
// that keeps it apart from the participants (examples/python/twopc.py);
// 2pc keeps its decisions in the participants' own databases.
const coordDDL = `
CREATE TABLE IF NOT EXISTS twopc_decisions (
	gid          text PRIMARY KEY,
	decision     text NOT NULL,        -- commit | abort
	participants text NOT NULL,        -- e.g. "0,1"
	at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS global_txn (   -- saga transactions (tcc keeps no coordinator record)
	gid         text PRIMARY KEY,
	protocol    text NOT NULL,
	state       text NOT NULL,
	transfer_id text NOT NULL,
	from_node   int NOT NULL,
	from_id     int NOT NULL,
	to_node     int NOT NULL,
	to_id       int NOT NULL,
	amount      bigint NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
	updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
`

// Layout is the bank Setup created.
type Layout struct {
	Accounts []Account
	Initial  map[Account]int64
	Total    int64
}

// OutboxKeys are the outbox stream's and its epoch's Redis keys:
// OutboxStream and OutboxEpochKey under ep.KeyPrefix.
func (ep Endpoints) OutboxKeys() (stream, epoch string) {
	return ep.KeyPrefix + OutboxStream, ep.KeyPrefix + OutboxEpochKey
}

// CoordinatorDSN returns the coordinator database's DSN: ep.Coordinator.DSN,
// or database CoordDatabase on participant A's server.
func (ep Endpoints) CoordinatorDSN() (string, error) {
	if ep.Coordinator.DSN != "" {
		return ep.Coordinator.DSN, nil
	}
	if len(ep.Participants) == 0 {
		return "", errors.New("txn: no participant endpoints: pass two PostgreSQL endpoints")
	}
	u, err := url.Parse(ep.Participants[0].DSN)
	if err != nil || u.Scheme == "" {
		return "", fmt.Errorf("txn: participant DSN must be a postgres:// URL to derive the coordinator database: %v", err)
	}
	u.Path = "/" + CoordDatabase
	return u.String(), nil
}

func (ep Endpoints) check() error {
	if len(ep.Participants) < 2 {
		return fmt.Errorf("txn: need 2 participant databases, got %d", len(ep.Participants))
	}
	if ep.GIDPrefix != "" && !runGIDPrefixRE.MatchString(ep.GIDPrefix) {
		return fmt.Errorf("txn: gid prefix %q: want fl:<1-40 of a-z, 0-9, _>: (RunGIDPrefix)", ep.GIDPrefix)
	}
	return nil
}

func connect(ctx context.Context, dsn string, timeout time.Duration) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("txn: bad DSN: %w", err)
	}
	cfg.ConnectTimeout = timeout
	return pgx.ConnectConfig(ctx, cfg)
}

// openPool opens a pool with lock_timeout set on every session.
func openPool(ctx context.Context, dsn string, opt Options) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("txn: bad DSN: %w", err)
	}
	cfg.MaxConns = opt.MaxConns
	cfg.ConnConfig.ConnectTimeout = opt.OpTimeout
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = strconv.FormatInt(opt.LockTimeout.Milliseconds(), 10)
	cfg.ConnConfig.RuntimeParams["application_name"] = "faultline-txn"
	return pgxpool.NewWithConfig(ctx, cfg)
}

// pools are the connections every implementation needs.
type pools struct {
	part  []*pgxpool.Pool
	coord *pgxpool.Pool
}

func openPools(ctx context.Context, ep Endpoints, opt Options, withCoord bool) (*pools, error) {
	if err := ep.check(); err != nil {
		return nil, err
	}
	p := &pools{}
	for _, e := range ep.Participants {
		pl, err := openPool(ctx, e.DSN, opt)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("txn: open participant %s: %w", e.Name, err)
		}
		p.part = append(p.part, pl)
	}
	if withCoord {
		dsn, err := ep.CoordinatorDSN()
		if err != nil {
			p.close()
			return nil, err
		}
		if p.coord, err = openPool(ctx, dsn, opt); err != nil {
			p.close()
			return nil, fmt.Errorf("txn: open coordinator: %w", err)
		}
	}
	return p, nil
}

func (p *pools) close() {
	for _, pl := range p.part {
		pl.Close()
	}
	if p.coord != nil {
		p.coord.Close()
	}
}

func (p *pools) node(i int) (*pgxpool.Pool, error) {
	if i < 0 || i >= len(p.part) {
		return nil, fmt.Errorf("%w: node %d does not exist", ErrNoAccount, i)
	}
	return p.part[i], nil
}

// Setup creates (if needed) and resets the bank: on each participant the
// tables, every prepared transaction of its database rolled back, every
// table emptied, accounts 1..accountsPerNode with initialBalance each; the
// coordinator database (created on A's server if ep.Coordinator.DSN is
// empty) and its tables emptied; the outbox stream deleted. Close every
// Transferer before calling it.
func Setup(ctx context.Context, ep Endpoints, accountsPerNode int, initialBalance int64) (Layout, error) {
	if err := ep.check(); err != nil {
		return Layout{}, err
	}
	const timeout = 10 * time.Second
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	lay := Layout{Initial: map[Account]int64{}}
	for i, e := range ep.Participants {
		if err := setupParticipant(ctx, e.DSN, ep.PreparedPrefix(), timeout, accountsPerNode, initialBalance); err != nil {
			return Layout{}, fmt.Errorf("txn: setup participant %s (%s): %w", NodeName(i), e.Name, err)
		}
		for id := 1; id <= accountsPerNode; id++ {
			a := Account{Node: i, ID: id}
			lay.Accounts = append(lay.Accounts, a)
			lay.Initial[a] = initialBalance
			lay.Total += initialBalance
		}
	}
	if ep.Coordinator.DSN == "" {
		if err := createCoordDB(ctx, ep.Participants[0].DSN, timeout); err != nil {
			return Layout{}, err
		}
	}
	dsn, err := ep.CoordinatorDSN()
	if err != nil {
		return Layout{}, err
	}
	c, err := connect(ctx, dsn, timeout)
	if err != nil {
		return Layout{}, fmt.Errorf("txn: connect coordinator database: %w", err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, coordDDL); err != nil {
		return Layout{}, fmt.Errorf("txn: create coordinator tables: %w", err)
	}
	if _, err := c.Exec(ctx, `TRUNCATE twopc_decisions, global_txn`); err != nil {
		return Layout{}, fmt.Errorf("txn: reset coordinator tables: %w", err)
	}
	if len(ep.Redis) > 0 {
		rc := newRedis(ep.Redis[0], timeout)
		defer rc.Close()
		stream, epoch := ep.OutboxKeys()
		if err := rc.Del(ctx, stream, epoch).Err(); err != nil {
			return Layout{}, fmt.Errorf("txn: reset outbox stream on %s: %w", ep.Redis[0].Addr, err)
		}
	}
	return lay, nil
}

func createCoordDB(ctx context.Context, dsn string, timeout time.Duration) error {
	c, err := connect(ctx, dsn, timeout)
	if err != nil {
		return fmt.Errorf("txn: connect participant A to create %s: %w", CoordDatabase, err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, CoordDatabase).Scan(&n); err != nil {
		return fmt.Errorf("txn: look up database %s: %w", CoordDatabase, err)
	}
	if n > 0 {
		return nil
	}
	if _, err := c.Exec(ctx, `CREATE DATABASE `+CoordDatabase); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P04" { // created concurrently
			return nil
		}
		return fmt.Errorf("txn: create database %s (the user needs CREATEDB, or pass Endpoints.Coordinator): %w", CoordDatabase, err)
	}
	return nil
}

func setupParticipant(ctx context.Context, dsn, prefix string, timeout time.Duration, n int, initial int64) error {
	c, err := connect(ctx, dsn, timeout)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, participantDDL); err != nil {
		return fmt.Errorf("create tables: %w", err)
	}
	// Only this run's (prefix): on a shared server another application's
	// or another run's in-doubt transactions are none of ours.
	rows, err := c.Query(ctx, `SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND left(gid, length($1)) = $1`, prefix)
	if err != nil {
		return fmt.Errorf("list prepared xacts: %w", err)
	}
	gids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list prepared xacts: %w", err)
	}
	for _, g := range gids {
		if _, err := c.Exec(ctx, `ROLLBACK PREPARED `+quote(g)); err != nil && !isUnknownGID(err) {
			return fmt.Errorf("roll back leftover prepared xact %s: %w", g, err)
		}
	}
	if _, err := c.Exec(ctx, `TRUNCATE accounts, barrier, journal, outbox, inbox, inbox_dedup, twopc_decisions RESTART IDENTITY`); err != nil {
		return fmt.Errorf("reset tables: %w", err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO accounts(id, balance) SELECT g, $2 FROM generate_series(1, $1) g`, n, initial); err != nil {
		return fmt.Errorf("create accounts: %w", err)
	}
	return nil
}

// quote makes a SQL string literal (gids cannot be $n parameters).
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func isUnknownGID(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42704"
}

func newRedis(e RedisEndpoint, timeout time.Duration) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: e.Addr, Password: e.Password,
		MaxRetries:  -1,
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
	})
}

// AccountState is one account's row.
type AccountState struct {
	Account
	Balance int64 `json:"balance"`
	Frozen  int64 `json:"frozen"`  // TCC: reserved by a try on the source (owner's money)
	Pending int64 `json:"pending"` // TCC: incoming, not yet the owner's money
}

// PreparedXact is a row of pg_prepared_xacts.
type PreparedXact struct {
	Node     int       `json:"node"`
	GID      string    `json:"gid"`
	Prepared time.Time `json:"prepared"`
	Database string    `json:"database"`
}

// JournalEntry is one TCC/saga branch call that reached a participant (in
// commit order per node).
type JournalEntry struct {
	Node    int       `json:"node"`
	Seq     int64     `json:"seq"`
	GID     string    `json:"gid"`
	Branch  string    `json:"branch"` // debit | credit
	Op      string    `json:"op"`     // try | confirm | cancel | action | compensate
	Account int       `json:"account"`
	Amount  int64     `json:"amount"`
	Applied bool      `json:"applied"` // false: neutralised by the barrier
	At      time.Time `json:"at"`
}

// OutboxRow is one committed outbox message.
type OutboxRow struct {
	Node       int       `json:"node"`
	MsgID      string    `json:"msg_id"`
	TransferID string    `json:"transfer_id"`
	To         Account   `json:"to"`
	Amount     int64     `json:"amount"`
	CreatedAt  time.Time `json:"created_at"`
	SentAt     time.Time `json:"sent_at"` // zero: not marked sent
	// Published counts the relay's publishes of the row (XADDs it sent,
	// whether or not the stream still holds them).
	Published int `json:"published"`
}

// InboxEntry is one message the consumer handled on a node.
type InboxEntry struct {
	Node       int       `json:"node"`
	Seq        int64     `json:"seq"`
	MsgID      string    `json:"msg_id"`
	TransferID string    `json:"transfer_id"`
	Account    int       `json:"account"`
	Amount     int64     `json:"amount"`
	Applied    bool      `json:"applied"` // false: dedup skipped it
	At         time.Time `json:"at"`
}

// GlobalTxn is a saga transaction in the coordinator's table (tcc keeps
// none: an unfinished tcc transfer shows as an open reservation).
type GlobalTxn struct {
	GID        string    `json:"gid"`
	Protocol   string    `json:"protocol"`
	State      string    `json:"state"`
	TransferID string    `json:"transfer_id"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Decision is a 2PC decision-log row.
type Decision struct {
	// Node is the participant whose database holds it (-1: the
	// coordinator database).
	Node     int       `json:"node"`
	GID      string    `json:"gid"`
	Decision string    `json:"decision"`
	At       time.Time `json:"at"`
}

// Snapshot is everything the bank checkers read, taken after quiescence.
type Snapshot struct {
	TakenAt   time.Time      `json:"taken_at"` // participant A's clock
	Accounts  []AccountState `json:"accounts"`
	Prepared  []PreparedXact `json:"prepared,omitempty"`
	Journal   []JournalEntry `json:"journal,omitempty"`
	Outbox    []OutboxRow    `json:"outbox,omitempty"`
	Inbox     []InboxEntry   `json:"inbox,omitempty"`
	Decisions []Decision     `json:"decisions,omitempty"`
	Globals   []GlobalTxn    `json:"globals,omitempty"`
}

// TakeSnapshot reads the bank's state from every participant (one
// repeatable-read transaction each) and the coordinator database. Take it
// after quiescence and Recover.
func TakeSnapshot(ctx context.Context, ep Endpoints) (Snapshot, error) {
	if err := ep.check(); err != nil {
		return Snapshot{}, err
	}
	const timeout = 10 * time.Second
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var s Snapshot
	for i, e := range ep.Participants {
		if err := snapParticipant(ctx, i, e.DSN, ep.PreparedPrefix(), timeout, &s); err != nil {
			return Snapshot{}, fmt.Errorf("txn: snapshot participant %s (%s): %w", NodeName(i), e.Name, err)
		}
	}
	dsn, err := ep.CoordinatorDSN()
	if err != nil {
		return Snapshot{}, err
	}
	c, err := connect(ctx, dsn, timeout)
	if err != nil {
		return Snapshot{}, fmt.Errorf("txn: snapshot: connect coordinator: %w", err)
	}
	defer c.Close(context.Background())
	rows, _ := c.Query(ctx, `SELECT gid, decision, at FROM twopc_decisions ORDER BY at`)
	cd, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Decision, error) {
		d := Decision{Node: -1}
		return d, r.Scan(&d.GID, &d.Decision, &d.At)
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("txn: snapshot decisions: %w", err)
	}
	s.Decisions = append(s.Decisions, cd...)
	rows, _ = c.Query(ctx, `SELECT gid, protocol, state, transfer_id, created_at, updated_at FROM global_txn ORDER BY created_at`)
	if s.Globals, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (GlobalTxn, error) {
		var g GlobalTxn
		return g, r.Scan(&g.GID, &g.Protocol, &g.State, &g.TransferID, &g.CreatedAt, &g.UpdatedAt)
	}); err != nil {
		return Snapshot{}, fmt.Errorf("txn: snapshot globals: %w", err)
	}
	return s, nil
}

func snapParticipant(ctx context.Context, node int, dsn, prefix string, timeout time.Duration, s *Snapshot) error {
	c, err := connect(ctx, dsn, timeout)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close(context.Background())
	// One repeatable-read transaction: a consistent view of this node.
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if node == 0 {
		if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&s.TakenAt); err != nil {
			return err
		}
	}
	rows, _ := tx.Query(ctx, `SELECT id, balance, frozen, pending FROM accounts ORDER BY id`)
	acc, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AccountState, error) {
		a := AccountState{Account: Account{Node: node}}
		return a, r.Scan(&a.ID, &a.Balance, &a.Frozen, &a.Pending)
	})
	if err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	s.Accounts = append(s.Accounts, acc...)
	rows, _ = tx.Query(ctx, `SELECT gid, prepared, database FROM pg_prepared_xacts
		WHERE database = current_database() AND left(gid, length($1)) = $1 ORDER BY prepared`, prefix)
	px, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PreparedXact, error) {
		p := PreparedXact{Node: node}
		return p, r.Scan(&p.GID, &p.Prepared, &p.Database)
	})
	if err != nil {
		return fmt.Errorf("pg_prepared_xacts: %w", err)
	}
	s.Prepared = append(s.Prepared, px...)
	// The journal: its own rows and the barrier rows that journal the call
	// that inserted them (see participantDDL).
	rows, _ = tx.Query(ctx, `SELECT seq, gid, branch, op, account, amount, applied, at FROM journal
		UNION ALL SELECT seq, gid, branch, op, account, amount, true, at FROM barrier WHERE seq IS NOT NULL
		UNION ALL SELECT confirm_seq, gid, branch, 'confirm', account, amount, true, confirm_at FROM barrier WHERE confirm_seq IS NOT NULL
		ORDER BY 1`)
	j, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (JournalEntry, error) {
		e := JournalEntry{Node: node}
		return e, r.Scan(&e.Seq, &e.GID, &e.Branch, &e.Op, &e.Account, &e.Amount, &e.Applied, &e.At)
	})
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	s.Journal = append(s.Journal, j...)
	rows, _ = tx.Query(ctx, `SELECT msg_id, transfer_id, to_node, to_id, amount, created_at, sent_at, publishes FROM outbox ORDER BY id`)
	ob, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OutboxRow, error) {
		o := OutboxRow{Node: node}
		var sent *time.Time
		err := r.Scan(&o.MsgID, &o.TransferID, &o.To.Node, &o.To.ID, &o.Amount, &o.CreatedAt, &sent, &o.Published)
		if sent != nil {
			o.SentAt = *sent
		}
		return o, err
	})
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	s.Outbox = append(s.Outbox, ob...)
	rows, _ = tx.Query(ctx, `SELECT seq, msg_id, transfer_id, account, amount, applied, at FROM inbox ORDER BY seq`)
	ib, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (InboxEntry, error) {
		e := InboxEntry{Node: node}
		return e, r.Scan(&e.Seq, &e.MsgID, &e.TransferID, &e.Account, &e.Amount, &e.Applied, &e.At)
	})
	if err != nil {
		return fmt.Errorf("inbox: %w", err)
	}
	s.Inbox = append(s.Inbox, ib...)
	rows, _ = tx.Query(ctx, `SELECT gid, decision, at FROM twopc_decisions ORDER BY at`)
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Decision, error) {
		d := Decision{Node: node}
		return d, r.Scan(&d.GID, &d.Decision, &d.At)
	})
	if err != nil {
		return fmt.Errorf("twopc_decisions: %w", err)
	}
	s.Decisions = append(s.Decisions, ds...)
	return nil
}
