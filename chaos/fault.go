// Package chaos is faultline's nemesis: faults on nodes, on the network and
// on clients, each a small type behind the Fault interface (in the manner of
// Toxiproxy's toxics); scripted and random fault schedules; and Run, which
// applies a schedule at its times, records every start and heal in the
// history and heals everything still active when the run ends.
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
	"sort"
	"strings"
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

// Class groups fault kinds by what they act on.
type Class string

// Fault classes.
const (
	Network Class = "network" // a node's Toxiproxy proxy
	Process Class = "process" // a node's server process
	Client  Class = "client"  // the workload's workers (through Clients)
)

// KindInfo documents one fault kind.
type KindInfo struct {
	Name  string
	Class Class
	// Params says what the "=params" part means, "" if the kind takes none.
	Params string
	Doc    string
}

// kinds is the table of every fault kind; the order is the listing order.
var kinds = []KindInfo{
	{"latency", Network, "delay[±jitter], default 100ms", "adds latency (with jitter) to every response from the target nodes"},
	{"partition", Network, "", "blackholes the target nodes: connections hang, data is dropped (timeout toxic, both directions); heal closes them"},
	{"partition-refuse", Network, "", "disables the target nodes' proxies: live connections drop, new ones are refused"},
	{"one-way", Network, "up|down, default down", "drops one direction only: down = requests arrive and apply but replies are lost; up = requests are lost"},
	{"bandwidth", Network, "KB/s, default 16", "limits the target nodes' replies to a bandwidth"},
	{"reset-peer", Network, "delay before reset, default 0", "resets (TCP RST) every connection that sends data to the target nodes"},
	{"slow-close", Network, "delay, default 1s", "delays the close of connections to the target nodes"},
	{"kill", Process, "", "SIGKILLs the target nodes and restarts them after the fault's duration (Redis without persistence comes back empty)"},
	{"pause", Process, "", "SIGSTOPs the target nodes for the fault's duration"},
	{"holder-pause", Client, "pause length, e.g. 2xttl", "the next holder of the key stops inside its critical section (after its read, before its write)"},
	{"holder-crash", Client, "", "the next holder of the key dies inside its critical section without releasing"},
	{"delayed-write", Client, "delay, default 2xttl", "the next write of a holder of the key reaches the resource late; with a node target (resource) it is latency on that link's client→server stream"},
	{"clock-drift", Client, "rate, default 2 (clock runs 2× fast)", "every lock client's clock runs at rate × real time"},
}

// Kinds lists every fault kind, for help texts and `faultline list`.
func Kinds() []KindInfo { return append([]KindInfo(nil), kinds...) }

// kindInfo returns the kind named name.
func kindInfo(name string) (KindInfo, bool) {
	for _, k := range kinds {
		if k.Name == name {
			return k, true
		}
	}
	return KindInfo{}, false
}

// kindNames is the sorted list of valid kind names, for error messages.
func kindNames() string {
	names := make([]string, 0, len(kinds))
	for _, k := range kinds {
		names = append(names, k.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
