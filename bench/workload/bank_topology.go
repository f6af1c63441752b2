package workload

// The bank on pg-standby (issue 12): participant A is the standby pair
// (pg-1 primary, pg-2 streaming standby), reached through one multi-host
// DSN with target_session_attrs=read-write that follows the promoted node
// (infra.Env.FailoverDSN); its coordinator database and its own 2pc
// decision rows (those of the transfers A debits) are replicated with it.
// Participant B is an
// independent PostgreSQL server beside the pair, pg-b. The in-doubt monitor,
// Setup, the final Recover and the snapshot follow the current primary
// too (FailoverDirectDSN).

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/faultline-dev/faultline/infra"
)

// BankNodeB is participant B's node on pg-standby.
const BankNodeB = "pg-b"

// standbyEnv is what the bank needs of a pg-standby environment (*infra.Env).
type standbyEnv interface {
	Env
	Topology() infra.Topology
	FailoverDSN() string
	FailoverDirectDSN() string
	WaitReplayed(ctx context.Context) error
	Failover(ctx context.Context, how infra.FailoverMode) (infra.FailoverResult, error)
	Primary(ctx context.Context) (infra.Node, error)
	Link(to string) (infra.Link, bool)
}

// bankStandby is env as a pg-standby environment (nil for any other).
func bankStandby(env Env) standbyEnv {
	if se, ok := env.(standbyEnv); ok && se.Topology() == infra.TopologyPGStandby {
		return se
	}
	return nil
}

// txnsOn lists the transaction implementations that run on topo.
func txnsOn(topo infra.Topology) []string {
	var out []string
	for _, i := range txn.All() {
		if slices.Contains(i.Topologies, string(topo)) {
			out = append(out, i.Name)
		}
	}
	return out
}

// checkBankOn checks that impl runs on topo.
func checkBankOn(impl string, topo infra.Topology) error {
	if topo != infra.TopologyPGStandby {
		return fmt.Errorf("workload bank runs on independent nodes or on --topology %s (participant A on the primary and its standby), not on %s",
			infra.TopologyPGStandby, topo)
	}
	info, err := txn.Lookup(impl)
	if err != nil {
		return err
	}
	if !slices.Contains(info.Topologies, string(topo)) {
		return fmt.Errorf("txn %s runs on independent nodes, not on the %s topology (implementations for it: %s): run it without --topology",
			impl, topo, strings.Join(txnsOn(topo), ", "))
	}
	return nil
}

// NodesOn is pg-standby's pair (participant A) and pg-b (participant B).
func (w *bankWorkload) NodesOn(impls []string, topo infra.Topology) ([]infra.NodeSpec, error) {
	if len(impls) == 0 {
		return nil, fmt.Errorf("workload bank: no implementation given (on %s: %s)", topo, strings.Join(txnsOn(topo), ", "))
	}
	for _, name := range impls {
		if err := checkBankOn(name, topo); err != nil {
			return nil, err
		}
	}
	own, err := infra.TopologyNodes(topo)
	if err != nil {
		return nil, err
	}
	return append(own, infra.NodeSpec{Name: BankNodeB, Kind: infra.Postgres}), nil
}

// NodesForOn is the pair and pg-b.
func (w *bankWorkload) NodesForOn(impl string, topo infra.Topology) (PhaseNodes, error) {
	nodes, err := w.NodesOn([]string{impl}, topo)
	if err != nil {
		return PhaseNodes{}, err
	}
	return PhaseNodes{Impl: specNames(nodes)}, nil
}

// standbyParticipants are A (the pair, following the primary) and B.
func standbyParticipants(se standbyEnv, direct bool) ([]txn.PostgresEndpoint, error) {
	b, ok := se.Node(BankNodeB)
	if !ok {
		return nil, fmt.Errorf("workload bank on %s needs node %s (participant B), which the environment lacks (start it with the workload's NodesOn)", infra.TopologyPGStandby, BankNodeB)
	}
	a, bdsn := se.FailoverDSN(), b.DSN()
	if direct {
		a, bdsn = se.FailoverDirectDSN(), b.DirectDSN()
	}
	return []txn.PostgresEndpoint{{Name: string(infra.TopologyPGStandby), DSN: a}, {Name: b.Name(), DSN: bdsn}}, nil
}
