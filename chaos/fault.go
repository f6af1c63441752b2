// Package chaos is faultline's nemesis: faults on nodes, on the network and
// on clients, each a small type behind the Fault interface (in the manner of
// Toxiproxy's toxics); scripted and random fault schedules; and Run, which
// applies a schedule at its times, records every start and heal in the
// history and heals everything still active when the run ends.
//
// Each fault kind lives whole in its file kind_<name>.go (grammar,
// construction, random generation, path needs), registered in kind.go.
//
// Fault specs read kind[:target][=params]@start[+duration], e.g.
//
//	kill:redis-2@5s+3s               SIGKILL redis-2 at 5s, restart it at 8s
//	latency:all=200ms±50ms@10s+5s     latency with jitter on every lock node
//	partition:majority@4s+6s          blackhole 3 of 5 Redis nodes
//	holder-pause:2xttl@3s             the next lock holder stops for 2×ttl
//
// The checkers that judge the resulting histories live in bench/checker;
// chaos imports nothing of faultline but infra and reports what it did
// through its own Event and Window types.
package chaos

import (
	"context"

	"github.com/faultline-dev/faultline/infra"
)

// Fault is one fault: Start applies it, Heal undoes it. Heal is safe to call
// after a failed or partial Start and undoes only what Start applied.
type Fault interface {
	// Kind is the fault kind (kill, latency, holder-pause…).
	Kind() string
	// Targets are the node names (network and process faults) or the lock
	// key (client faults; "" = any key) the fault hits.
	Targets() []string
	Start(ctx context.Context) error
	Heal(ctx context.Context) error
}

// HolderFault is a client fault that hit a specific lock holder; Holder
// reports which one once Start has returned.
type HolderFault interface {
	Fault
	Holder() (Holder, bool)
}

// NodeFault is a fault on nodes (network and process faults): Nodes are
// the nodes it hits.
type NodeFault interface {
	Fault
	Nodes() []infra.Node
}

// ProxyFault is a fault that acts on its nodes' Toxiproxy proxies: when its
// heal fails, or once the run is over, the runner resets those proxies so
// that nothing it left behind outlives the run.
type ProxyFault interface {
	NodeFault
	onProxies()
}
