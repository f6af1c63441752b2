// Package txn defines the distributed-transaction interface faultline
// benchmarks and chaos-tests with its bank workload, a registry of named
// implementations (2PC on PostgreSQL PREPARE TRANSACTION, TCC with a barrier,
// saga, transactional outbox, a single-database baseline and deliberately
// broken mutants), and the bank schema (Setup) and state dump (Snapshot) the
// invariant checkers read.
//
// Implementations never import the harness: this package is usable as a
// plain library.
//
// The bank: accounts live on two PostgreSQL servers, participant A
// (Endpoints.Participants[0]) and B (Participants[1]). Every participant
// database holds the same tables (see schema.go). The saga coordinator
// keeps its durable log in a third database, by default "faultline_coord"
// on A's server (Endpoints.Coordinator overrides it, e.g. with a separate
// node; see CoordinatorDSN); 2pc commits each decision row in its debit
// participant's own database (the last resource, twopc.go); tcc keeps
// none, its decision is read from the participants' barrier rows (tcc.go).
package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/faultline-dev/faultline/impl/internal/execproc"
	"github.com/faultline-dev/faultline/internal/option"
	"github.com/faultline-dev/faultline/internal/registry"
)

// Errors. Every error a Transferer returns either wraps ErrAborted (the
// transfer definitely did not move money, and never will) or is
// indeterminate (wraps ErrIndeterminate, or is any other error): the money
// may or may not move. Use Classify.
var (
	// ErrAborted: the transfer was rolled back / cancelled / compensated;
	// money was not moved.
	ErrAborted = errors.New("txn: aborted, money not moved")
	// ErrInsufficientFunds: the source balance was below the amount.
	ErrInsufficientFunds = fmt.Errorf("%w: insufficient funds", ErrAborted)
	// ErrNoAccount: the source or target account does not exist.
	ErrNoAccount = fmt.Errorf("%w: no such account", ErrAborted)
	// ErrIndeterminate: the outcome is unknown until Recover has run (a
	// timeout, a lost connection at the commit point, a coordinator crash).
	ErrIndeterminate = errors.New("txn: outcome unknown, run Recover and read the balances")
	// ErrCrashed is returned by a coordinator stopped at an injected crash
	// point (Options.CrashAt): it stopped right there without cleaning up.
	ErrCrashed = fmt.Errorf("txn: coordinator crashed (injected): %w", ErrIndeterminate)
)

// Outcome classes of a transfer, as recorded in a history.
const (
	ClassOK   = "ok"   // money moved (or will: the decision is durable)
	ClassFail = "fail" // definitely not moved
	ClassInfo = "info" // indeterminate
)

// Classify maps a Transfer error to ClassOK, ClassFail or ClassInfo. Unknown
// errors are indeterminate: never a false "fail".
func Classify(err error) string {
	switch {
	case err == nil:
		return ClassOK
	case errors.Is(err, ErrIndeterminate):
		return ClassInfo
	case errors.Is(err, ErrAborted):
		return ClassFail
	default:
		return ClassInfo
	}
}

// Account names one account: Node is the participant index (0 = A, 1 = B),
// ID its primary key there.
type Account struct {
	Node int `json:"node"`
	ID   int `json:"id"`
}

// String is "A:3" / "B:7".
func (a Account) String() string { return fmt.Sprintf("%s:%d", NodeName(a.Node), a.ID) }

// NodeName is "A" for 0, "B" for 1, … .
func NodeName(i int) string {
	if i >= 0 && i < 26 {
		return string(rune('A' + i))
	}
	return fmt.Sprintf("N%d", i)
}

// Transfer moves Amount from From to To. ID must be unique per run and made
// of [A-Za-z0-9_.:-] (it names prepared transactions and messages).
type Transfer struct {
	ID     string  `json:"id"`
	From   Account `json:"from"`
	To     Account `json:"to"`
	Amount int64   `json:"amount"`
}

// Phase names, as they appear in Outcome.Phases.
const (
	PhaseLocal      = "local"      // single-db: the one local transaction
	PhasePrepare    = "prepare"    // 2pc: BEGIN…PREPARE TRANSACTION on the credit, BEGIN and the debit on the last resource
	PhaseDecide     = "decide"     // 2pc: the last resource's COMMIT with the decision row (the commit point)
	PhaseCommit     = "commit"     // 2pc: COMMIT PREPARED; outbox: local commit
	PhaseRollback   = "rollback"   // 2pc: ROLLBACK PREPARED
	PhaseTry        = "try"        // tcc
	PhaseConfirm    = "confirm"    // tcc
	PhaseCancel     = "cancel"     // tcc
	PhaseForward    = "forward"    // saga: debit then credit
	PhaseCompensate = "compensate" // saga
)

// Phase is one timed phase of a transfer.
type Phase struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration"`
}

// Outcome is what a transfer did, for the runner's per-phase histograms.
type Outcome struct {
	Phases []Phase       `json:"phases"`
	Total  time.Duration `json:"total"`
	// Incomplete: the commit decision is durable but some participant has
	// not applied it yet (down, timed out); Recover finishes it. The
	// transfer counts as ok.
	Incomplete bool `json:"incomplete,omitempty"`
	// Retries counts retried confirm/cancel/step calls.
	Retries int `json:"retries,omitempty"`
}

// Phase returns the duration of the named phase (0 if absent).
func (o Outcome) Phase(name string) time.Duration {
	var d time.Duration
	for _, p := range o.Phases {
		if p.Name == name {
			d += p.Duration
		}
	}
	return d
}

func (o *Outcome) add(name string, start time.Time) {
	o.Phases = append(o.Phases, Phase{Name: name, Duration: time.Since(start)})
}

// Transferer is one client (one coordinator process) of a transaction
// protocol. Safe for concurrent use.
type Transferer interface {
	// Transfer moves t.Amount from t.From to t.To. A nil error means the
	// money moved (or, for outbox and Outcome.Incomplete, durably will);
	// errors classify with Classify.
	Transfer(ctx context.Context, t Transfer) (Outcome, error)
	// Recover resolves everything a crash, a fault or a timeout left
	// half-done (in-doubt prepared transactions, unfinished TCC/saga
	// transactions — tcc finds its in-doubt transfers by scanning the
	// participants' barrier tables — undelivered messages), bounded by ctx. Run it after the
	// faults heal; it is idempotent.
	Recover(ctx context.Context) error
	// Close stops background work and frees connections.
	Close() error
}

// PostgresEndpoint is one PostgreSQL database.
type PostgresEndpoint struct {
	Name string
	DSN  string // postgres://user:pass@127.0.0.1:port/db?sslmode=disable
}

// RedisEndpoint is one Redis server.
type RedisEndpoint struct {
	Name, Addr, Password string
}

// Endpoints are the servers handed to a factory (proxied or direct, as the
// harness chose).
type Endpoints struct {
	// Participants are the account databases: [0] = A, [1] = B.
	Participants []PostgresEndpoint
	// Coordinator holds the decision log / global transaction table. Empty
	// DSN: database "faultline_coord" on Participants[0]'s server, created
	// by Setup.
	Coordinator PostgresEndpoint
	// Redis carries the outbox stream (outbox implementations only).
	Redis []RedisEndpoint
	// KeyPrefix starts every Redis key the implementation writes ("" on
	// servers faultline owns; the run's prefix on external ones).
	KeyPrefix string
	// GIDPrefix starts every prepared-transaction gid of the run
	// (RunGIDPrefix; "" = GIDPrefix, shared by every run): PostgreSQL's
	// gids are server-wide, and Setup, Snapshot and Recover touch only
	// the gids under it, so two runs on one server stay apart.
	GIDPrefix string
}

// CrashPoint names a moment where the 2PC coordinator can crash.
type CrashPoint string

// The six coordinator crash points of 2pc / 2pc-nolog. A crash returns
// ErrCrashed at once, leaving every participant as it is (no rollback, no
// cleanup); the connections of a crashed coordinator are dropped, as they
// would be by the dying process.
const (
	// CrashBeforePrepare: before sending any prepare. Nothing remains.
	CrashBeforePrepare CrashPoint = "before-prepare"
	// CrashAfterPrepare: every participant voted yes (the credit is
	// prepared, the debit's local transaction, the last resource, has its
	// update and is open), no decision logged. The crash drops the debit's
	// connection (rolled back); the prepared credit holds its row lock
	// until Recover (presumed abort: rolled back).
	CrashAfterPrepare CrashPoint = "after-prepare"
	// CrashBeforeRollback: the decision is abort (a participant voted no),
	// before sending any ROLLBACK PREPARED: the yes-voters stay prepared.
	CrashBeforeRollback CrashPoint = "before-rollback"
	// CrashAfterRollback: after ROLLBACK PREPARED reached every yes-voter,
	// before answering. Nothing remains; the transfer did not happen.
	CrashAfterRollback CrashPoint = "after-rollback"
	// CrashBeforeCommit: the decision is commit, before sending the debit's
	// COMMIT with its decision row (the commit point): the debit rolls
	// back with the dropped connection, the credit stays prepared; Recover
	// finds no commit row and rolls it back.
	CrashBeforeCommit CrashPoint = "before-commit"
	// CrashAfterCommit: after the source account's node (the last
	// resource) committed the debit with its decision row, before COMMIT
	// PREPARED on the other: a partial commit, the credit is still
	// prepared. 2pc's Recover commits it from the decision row; 2pc-nolog
	// (no row) rolls it back (money destroyed).
	CrashAfterCommit CrashPoint = "after-commit"
)

// CrashPoints lists the six crash points in protocol order.
var CrashPoints = []CrashPoint{CrashBeforePrepare, CrashAfterPrepare, CrashBeforeRollback,
	CrashAfterRollback, CrashBeforeCommit, CrashAfterCommit}

// TCCFaults inject the classic TCC anomalies, for deterministic tests.
type TCCFaults struct {
	// LateTry names a branch ("debit" or "credit") whose try is held back:
	// the coordinator times it out, cancels the transfer (an empty cancel on
	// that branch), then the held try arrives after its cancel (a hanging
	// try). The transfer fails.
	LateTry string
	// DuplicateConfirm sends every confirm twice.
	DuplicateConfirm bool
	// DuplicateCancel sends every cancel twice.
	DuplicateCancel bool
	// LostConfirmReply: the first confirm of each branch commits but its
	// reply is lost; the coordinator retries it.
	LostConfirmReply bool
}

// OutboxFaults inject relay failures.
type OutboxFaults struct {
	// CrashRelayAfterPublish: the relay crashes this many times right after
	// publishing a message (XADD) and before marking its row sent; it is
	// restarted and publishes the row again.
	CrashRelayAfterPublish int
}

// Options tune an implementation; each ignores what does not apply to it.
type Options struct {
	// OpTimeout bounds every single network call (default 2s).
	OpTimeout time.Duration
	// LockTimeout is PostgreSQL's lock_timeout on participant sessions: how
	// long a transfer waits for a row locked by another (e.g. prepared)
	// transaction before failing (default 1s).
	LockTimeout time.Duration
	// MaxConns per database pool (default 8).
	MaxConns int32
	// CrashAt makes the 2PC coordinator crash at that point ("" = never) for
	// every transfer Match accepts.
	CrashAt CrashPoint
	// AfterPrepare, if set, runs after every participant is prepared and
	// before the decision (2pc), e.g. to kill a participant. An error makes
	// the coordinator stop there as if crashed (ErrCrashed).
	AfterPrepare func(ctx context.Context, t Transfer) error
	// Match selects which transfers get the injected faults (nil = all).
	Match func(t Transfer) bool
	// TCC and Outbox faults.
	TCC    TCCFaults
	Outbox OutboxFaults
	// RecoverMinAge: Recover leaves alone in-doubt work younger than this
	// (in-flight transfers of a live coordinator). Default 0.
	RecoverMinAge time.Duration
	// RelayInterval is how often the outbox relay polls without a nudge
	// (default 100ms).
	RelayInterval time.Duration
	// Logger (nil = slog.Default()).
	Logger *slog.Logger
	// Params are implementation-specific settings; the bank workload passes
	// its target's options (--lock-opt k=v on the command line) through.
	Params map[string]string
	// LogDir is the run directory: an exec: coordinator process writes its
	// stderr to LogDir/exec/NAME.coordinatorN.stderr.log ("" = kept in
	// memory only, for error messages).
	LogDir string
}

func (o Options) withDefaults() Options {
	if o.OpTimeout <= 0 {
		o.OpTimeout = 2 * time.Second
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = time.Second
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	if o.RelayInterval <= 0 {
		o.RelayInterval = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

func (o Options) match(t Transfer) bool { return o.Match == nil || o.Match(t) }

// Factory makes one Transferer on the given endpoints. Call Setup first.
type Factory func(ctx context.Context, ep Endpoints, opt Options) (Transferer, error)

// Info describes a registered implementation.
type Info struct {
	Name string
	Doc  string // one line: what it is, what it promises, when it breaks
	// Mutant implementations are deliberately broken to prove checkers.
	Mutant bool
	// PostgresNodes and RedisNodes are how many servers of each kind it needs.
	PostgresNodes, RedisNodes int
	// SingleNode: both accounts of a transfer must be on the same node
	// (the single-db baseline).
	SingleNode bool
	// Baseline names the implementation this one is compared against.
	Baseline string
	// Services the harness must run once per phase for it (ServiceRelay,
	// ServiceConsumer): it is then opened once, as that service, and
	// every client uses it.
	Services []string
	// Checks are the bank checks that judge it beyond the common ones
	// (CheckTCCAnomalies, CheckOutboxDelivery).
	Checks []string
	// Options are the --txn-opt settings it accepts (Options.Apply).
	Options option.Set
	// Topologies are the replicated topologies it also runs on (besides
	// independent nodes): "pg-standby" = participant A on a primary and
	// its streaming standby, reached through one multi-host DSN that
	// follows the promoted node, the rows it keeps there (2pc: the
	// decision rows of the transfers A debits) replicated with it.
	Topologies []string
	New        Factory
}

// HasService says whether info asks for service s.
func (info Info) HasService(s string) bool { return slices.Contains(info.Services, s) }

var impls = registry.New[Info]("txn implementation")

// Register makes an implementation available by info.Name. It panics on a
// duplicate name or a nil factory, as database/sql.Register does.
func Register(info Info) {
	if info.New == nil {
		panic("txn: Register factory is nil for " + info.Name)
	}
	impls.Register(info.Name, info)
}

// Lookup returns the implementation registered under name; the error lists
// the known ones. A name "exec:PATH[:NAME]" runs an executable speaking
// faultline's process protocol (docs/protocol.md; see exec.go).
func Lookup(name string) (Info, error) {
	if execproc.IsSpec(name) {
		return lookupExec(name)
	}
	return impls.Lookup(name)
}

// All returns every registered implementation, sorted by name.
func All() []Info { return impls.All() }

// pgStandby: the implementations whose state is PostgreSQL rows and
// prepared transactions only, all WAL-logged, run on pg-standby (tcc and
// saga would too, but have no failover row yet; outbox needs a Redis
// stream the topology lacks).
var pgStandby = []string{"pg-standby"}

func init() {
	Register(Info{Name: "single-db", Doc: "baseline: both accounts on one node, one local transaction",
		PostgresNodes: 2, SingleNode: true, Topologies: pgStandby, New: newSingle})
	Register(Info{Name: "2pc", Doc: "two-phase commit over PREPARE TRANSACTION with the last-resource commit (the debit's local COMMIT carries the decision row), presumed-abort recovery; blocks while in doubt",
		PostgresNodes: 2, Baseline: "single-db", Options: twoPCOptions, Topologies: pgStandby, New: new2PC(true)})
	Register(Info{Name: "2pc-nolog", Doc: "MUTANT: 2PC whose debit commits without a decision row; naive recovery rolls back a partially committed transfer",
		Mutant: true, PostgresNodes: 2, Baseline: "single-db", Options: twoPCOptions, Topologies: pgStandby, New: new2PC(false)})
	Register(Info{Name: "tcc", Doc: "try-confirm-cancel with a barrier table: empty cancel, repeated confirm/cancel and hanging try are harmless",
		PostgresNodes: 2, Baseline: "single-db", Checks: []string{CheckTCCAnomalies}, Options: tccOptions, New: newTCC(true)})
	Register(Info{Name: "tcc-nobarrier", Doc: "MUTANT: TCC without the barrier: a late try freezes money forever, a repeated confirm applies twice",
		Mutant: true, PostgresNodes: 2, Baseline: "single-db", Checks: []string{CheckTCCAnomalies}, Options: tccOptions, New: newTCC(false)})
	Register(Info{Name: "saga", Doc: "saga: debit then credit as local transactions with an idempotent step log, compensation (refund) on failure",
		PostgresNodes: 2, Baseline: "single-db", New: newSaga})
	Register(Info{Name: "outbox", Doc: "transactional outbox: debit + message in one local txn, relay to a Redis stream, idempotent (dedup) consumer credits; eventual",
		PostgresNodes: 2, RedisNodes: 1, Baseline: "single-db", Services: outboxServices, Checks: []string{CheckOutboxDelivery},
		Options: outboxOptions, New: newOutbox(true)})
	Register(Info{Name: "outbox-no-dedup", Doc: "MUTANT: outbox whose consumer has no dedup table: a relay crash between publish and mark applies the credit twice",
		Mutant: true, PostgresNodes: 2, RedisNodes: 1, Baseline: "single-db", Services: outboxServices, Checks: []string{CheckOutboxDelivery},
		Options: outboxOptions, New: newOutbox(false)})
}
