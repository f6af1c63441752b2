// Package workload holds faultline's workloads: what each worker does in a
// loop against the implementation under test, the protected resource that
// serves as the oracle, and the checks that judge the resulting history.
//
// A Workload is registered by name (like lock implementations). The runner
// (package bench) drives it: Nodes once for the whole run, then per
// implementation Start (a Session), one Client per worker process, Step in a
// loop, Finish after the quiet period, and Check offline on the saved
// history. A crashed process is replaced by a new Client with a new id.
package workload

import (
	"context"
	"time"

	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/infra"
	"github.com/faultline-dev/faultline/internal/option"
	"github.com/faultline-dev/faultline/internal/registry"
)

// Workload is one kind of load and its oracle.
type Workload interface {
	Name() string
	// Doc is one line: what a worker does and what is checked.
	Doc() string
	// Kinds are the operation kinds whose latencies are recorded, in a fixed
	// order: a kind's index is its id on the recorder's hot path. Kinds()[0]
	// is the headline kind, one whole iteration of Client.Step (e.g. "cycle"
	// for locks, "transfer" for the bank), which the runner times itself.
	// Transactions add per-phase kinds (prepare, commit…) here.
	Kinds() []string
	// Impls lists the implementations this workload can drive (names and
	// whether each is a mutant), for `faultline list` and usage errors.
	Impls() []ImplInfo
	// Nodes validates impls and returns every server the run needs: the
	// union of the implementations' own nodes and the workload's resource
	// nodes. Unknown names are an error listing the known ones.
	Nodes(impls []string) ([]infra.NodeSpec, error)
	// NodesFor is the nodes one implementation's phase uses: the faults of
	// its phase are drawn among them, and its results say which were hit.
	NodesFor(impl string) (PhaseNodes, error)
	// Start prepares one implementation's phase: it resets the resource
	// (and whatever the implementation left on the servers) and returns the
	// phase whose Clients the workers run.
	Start(ctx context.Context, t Target) (Session, error)
	// Check judges one implementation's history (history.ForImpl) offline:
	// verdicts, and counters such as "fenced". It never touches a server.
	Check(ops []history.Op, c CheckConfig) Report
}

// PhaseNodes are the nodes of one implementation's phase, by name.
type PhaseNodes struct {
	// Impl are the implementation's own servers (Redis, PostgreSQL).
	Impl []string
	// Resource are the workload's protected-resource nodes, when it has
	// its own (the lock workloads' counter store); faults may slow their
	// link.
	Resource []string
}

// All is every node of the phase.
func (n PhaseNodes) All() []string { return append(append([]string(nil), n.Impl...), n.Resource...) }

func specNames(specs []infra.NodeSpec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

// ImplInfo names one implementation a workload can drive.
type ImplInfo struct {
	Name   string
	Doc    string
	Mutant bool
	// Options are the implementation options it accepts (--lock-opt,
	// --txn-opt).
	Options option.Set
}

// PhaseChecker is a Workload whose checks read a checker.Phase (the lock
// workloads): the runner streams the history into one, never holding its
// entries, instead of loading them for Check.
type PhaseChecker interface {
	// CheckPhase is Check of one implementation's history as a Phase.
	CheckPhase(p *checker.Phase, c CheckConfig) Report
}

// StreamChecker is a Workload whose checks take one implementation's
// history entry by entry (the bank): the runner streams the history file
// into a StreamCheck, never holding its entries, instead of loading them
// for Check.
type StreamChecker interface {
	// NewStreamCheck starts the check of one implementation's phase.
	NewStreamCheck() StreamCheck
}

// StreamCheck is one phase's check, fed its history in order.
type StreamCheck interface {
	// Grow makes room for about n operations (an upper bound: the phase's
	// invocations).
	Grow(n int)
	// Add takes the next entry; it keeps nothing of op but copies.
	Add(op *history.Op)
	// DropCut leaves out the invocations still in flight within window of
	// the phase's last entry (the run died there) and says how many.
	DropCut(window time.Duration) int
	// Spans are the client operations, invocation to completion (or
	// math.MaxInt64: never completed), as fault coverage counts them.
	Spans() []checker.Span
	// Failovers are the phase's failovers.
	Failovers() []results.Failover
	// Report is Check of what was added.
	Report(c CheckConfig) Report
}

// Optioner is a workload with options of its own (--opt k=v).
type Optioner interface {
	Options() option.Set
}

// Env is what a workload needs of the environment: nodes by name.
// *infra.Env satisfies it.
type Env interface {
	Node(name string) (infra.Node, bool)
}

// Target is one implementation's phase: what to run, where, with which
// settings.
type Target struct {
	Impl string
	Env  Env
	// Direct connects clients to the servers' own addresses, bypassing
	// Toxiproxy (faster; no network faults possible).
	Direct bool
	Keys   int
	TTL    time.Duration
	// OpTimeout bounds every call but the acquire; AcquireTimeout bounds
	// a blocking acquire.
	OpTimeout, AcquireTimeout time.Duration
	// Params are implementation options (--lock-opt k=v for locks, where
	// "reentrant" and "watchdog" set lock.Options fields; --txn-opt k=v
	// for transactions).
	Params map[string]string
	// Opts are the workload's own options (--opt k=v; see Optioner).
	Opts map[string]string
	// Faults is the phase's client-fault injector (never nil from the
	// runner).
	Faults *Faults
	// KeyPrefix starts every Redis key the phase writes ("" = none: the
	// servers are faultline's own). On external targets it is the run's
	// infra.KeyPrefix: lock keys, resource keys and the keys the
	// implementations derive from them all carry it.
	KeyPrefix string
	// RunToken names the run among others on the same servers
	// (infra.Env.RunToken): the bank's prepared-transaction gids start
	// with txn.RunGIDPrefix(RunToken) ("" = txn.GIDPrefix).
	RunToken string
	// LogDir is the run directory: implementations that run processes of
	// their own (exec:) write their stderr logs below it ("" = none).
	LogDir string
}

// Session is one implementation's run of the workload.
type Session interface {
	// Client opens the client of one process (a worker, or the worker's
	// next incarnation after a crash); seed makes its choices reproducible.
	Client(ctx context.Context, process int, seed int64) (Client, error)
	// Finish runs after the load stopped, faults healed and the quiet period
	// passed: final probes (e.g. can every key be acquired) logged under
	// process id probe (probe < 0: no probes — the run was interrupted and
	// keys may still be held legitimately), and the resource's ground truth
	// appended to the history (process history.Resource). Probes are not
	// counted in the statistics.
	Finish(ctx context.Context, h *recorder.History, probe int) error
	// Close frees the phase's connections.
	Close() error
}

// SharedSession is a Session whose processes can share one implementation
// client, as goroutines of a service share its client (bench's --share).
type SharedSession interface {
	Session
	// SharedClients opens one client per process, all driving one
	// implementation client; it closes when the last of them closes.
	SharedClients(ctx context.Context, processes []int, seed int64) ([]Client, error)
}

// Sharer is a Workload whose sessions are SharedSessions.
type Sharer interface {
	Workload
	SharesClients() bool
}

// CanShare says whether w's sessions let processes share an
// implementation client.
func CanShare(w Workload) bool {
	s, ok := w.(Sharer)
	return ok && s.SharesClients()
}

// LiveProber is a Session that can probe every key while the workers'
// clients are still open (after the quiet period, before they close): a key
// still held then is held by a live session nobody uses any more, which the
// final probe, after the close, cannot see. Probe entries carry Attrs
// {"probe": "live"} and log under process id probe.
type LiveProber interface {
	ProbeLive(ctx context.Context, h *recorder.History, probe int) error
}

// Client is one process's client.
type Client interface {
	// Step runs one iteration (lock cycle, transfer…), logging each of its
	// operations through w with the workload's vocabulary and timing each
	// under its kind. ctx is the hard stop; every call inside has its own
	// deadline.
	Step(ctx context.Context, w *recorder.Worker) StepResult
	Close() error
}

// StepResult is how one Step ended.
type StepResult struct {
	Type history.Type // OK, Fail (definitely no effect) or Info
	Err  string       // error kind when not OK: not-acquired, fenced, timeout…
	// Crashed: the process died (a holder-crash fault or a simulated
	// crash); the runner continues the worker under a new process id.
	Crashed bool
}

// CheckConfig is what offline checks need to know about the run.
type CheckConfig struct {
	Impl string
	TTL  time.Duration
}

// Report is the result of Check.
type Report struct {
	Verdicts []results.Verdict
	Counters map[string]int64
}

var workloads = registry.New[Workload]("workload")

// Register makes a workload available by its name; it panics on a
// duplicate, as lock.Register does.
func Register(w Workload) { workloads.Register(w.Name(), w) }

// Lookup returns the workload called name; the error lists the known ones.
func Lookup(name string) (Workload, error) { return workloads.Lookup(name) }

// All returns every workload, sorted by name.
func All() []Workload { return workloads.All() }

// Names returns the workload names, sorted.
func Names() []string { return workloads.Names() }
