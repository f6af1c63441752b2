package workload

// The bank workload: distributed transactions (impl/txn) moving money
// between accounts on two PostgreSQL servers, judged by bench/checker.Bank.
//
// History vocabulary (process = the worker; a crashed coordinator continues
// under a new process id):
//
//	f=transfer invoke{token=transfer id, value=amount, attrs from, to, amount[, inject]}
//	           ok | fail{error: insufficient-funds, lock-timeout, aborted…} | info{error: crashed, timeout, indeterminate…}
//	           completion attrs: detail (error text), incomplete, retries, phases ("prepare=812µs …")
//	f=read     invoke{key=bank} | ok{value=total seen, attrs A, B (per-node sums), negative} | info
//	           (readers are processes 100000+i; see bankReaders)
//
// The transfer is timed by the runner as the headline kind "transfer"; each
// protocol phase (txn.Outcome.Phases) is recorded under its own kind.
// Finish appends the ground truth as process history.Resource entries:
// bank-layout, bank-recover, in-doubt (one per in-doubt prepared
// transaction), bank-snapshot and one bank-account / bank-prepared /
// bank-journal / bank-outbox / bank-inbox / bank-global entry per row, each
// item's JSON in Attrs["v"]: Check needs nothing but the history.

import (
	"fmt"
	"strings"

	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/faultline-dev/faultline/infra"
)

func init() { Register(&bankWorkload{}) }

// BankName is the bank workload's name.
const BankName = "bank"

// Kinds of the bank workload; the index is the recorder's kind id.
const (
	bkTransfer = iota
	bkRead
	bkPhase0 // first protocol phase kind
)

var bankKinds = []string{"transfer", "read",
	txn.PhaseLocal, txn.PhasePrepare, txn.PhaseDecide, txn.PhaseCommit, txn.PhaseRollback,
	txn.PhaseTry, txn.PhaseConfirm, txn.PhaseCancel, txn.PhaseForward, txn.PhaseCompensate}

// ReaderProcess0 is the process id of the bank's first concurrent reader.
const ReaderProcess0 = 100000

// Baseliner is a workload whose implementations are measured against a
// baseline implementation (the bank: single-db, one local transaction).
// The runner adds the baseline to a run that lacks it and reports each
// implementation's ratios against it.
type Baseliner interface {
	// Baseline names impl's baseline ("" = none).
	Baseline(impl string) string
}

type bankWorkload struct{}

func (*bankWorkload) Name() string { return BankName }
func (*bankWorkload) Doc() string {
	return "each worker transfers a random amount between an account on pg-1 and one on pg-2 (both directions; single-db: within one node) " +
		"with a transaction protocol, while readers sum balances; after heal, Recover and a snapshot: conservation, no negative balance, " +
		"nothing left prepared or frozen, TCC anomalies, outbox delivery; in-doubt time and blocked transfers measured"
}
func (*bankWorkload) Kinds() []string { return bankKinds }

func (*bankWorkload) Impls() []ImplInfo {
	var out []ImplInfo
	for _, i := range txn.All() {
		out = append(out, ImplInfo{Name: i.Name, Doc: i.Doc, Mutant: i.Mutant, Options: i.Options})
	}
	return out
}

// Baseline is txn.Info.Baseline.
func (*bankWorkload) Baseline(impl string) string {
	info, err := txn.Lookup(impl)
	if err != nil {
		return ""
	}
	return info.Baseline
}

func (w *bankWorkload) Nodes(impls []string) ([]infra.NodeSpec, error) {
	if len(impls) == 0 {
		return nil, fmt.Errorf("workload bank: no implementation given (known: %s)", strings.Join(ImplNames(w), ", "))
	}
	r, p := 0, 2
	for _, name := range impls {
		info, err := txn.Lookup(name)
		if err != nil {
			return nil, err
		}
		r, p = max(r, info.RedisNodes), max(p, info.PostgresNodes)
	}
	return infra.Nodes(r, p), nil
}

// NodesFor is the transaction's own nodes (txn.Info): the accounts live
// on its PostgreSQL nodes.
func (w *bankWorkload) NodesFor(impl string) (PhaseNodes, error) {
	info, err := txn.Lookup(impl)
	if err != nil {
		return PhaseNodes{}, err
	}
	return PhaseNodes{Impl: specNames(infra.Nodes(info.RedisNodes, info.PostgresNodes))}, nil
}
