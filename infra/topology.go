package infra

// Replicated topologies (issue 12): instead of independent nodes, an Env can
// start a replicated set whose nodes talk to each other. Every node keeps its
// client proxy (Node.Addr, Node.Proxy) and gets a second, PEER proxy that
// carries the node-to-node connections made TO it (see Link). The shared
// part lives here; each topology has its own file (topology_sentinel.go,
// topology_pgstandby*.go).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Topology names a replicated set of nodes an Env starts as a whole.
type Topology string

// The topologies infra can start.
const (
	// TopologyNone is the default: independent nodes (Spec.Nodes).
	TopologyNone Topology = ""
	// TopologyRedisSentinel is 1 Redis primary (redis-1), 2 replicas
	// (redis-2, redis-3) and 3 Sentinels (sentinel-1..3, quorum 2)
	// monitoring the master set SentinelMaster.
	TopologyRedisSentinel Topology = "redis-sentinel"
	// TopologyPGStandby is a PostgreSQL primary (pg-1) and a streaming
	// standby (pg-2).
	TopologyPGStandby Topology = "pg-standby"
)

// Sentinel is the kind of a Redis Sentinel node (redis-server --sentinel).
const Sentinel Kind = "sentinel"

// SentinelMaster is the master-set name the Sentinels of redis-sentinel monitor.
const SentinelMaster = "faultline"

// ReplicationOptions tune a replicated topology; zero values take the
// short, test-friendly defaults below.
type ReplicationOptions struct {
	// SentinelDownAfter is Sentinel's down-after-milliseconds: how long a
	// node must not answer before a Sentinel thinks it down (default 2s;
	// 3s on the docker provider, see DefaultSentinelDownAfterDocker). It is
	// sentinel-1's; each next Sentinel waits SentinelDownAfterStep longer
	// (see SentinelDownAfterStep).
	SentinelDownAfter time.Duration
	// SentinelFailoverTimeout is Sentinel's failover-timeout (default 3s).
	SentinelFailoverTimeout time.Duration
	// SyncStandby makes pg-standby's standby synchronous
	// (synchronous_standby_names + synchronous_commit=remote_apply).
	SyncStandby bool
}

// Defaults of ReplicationOptions.
const (
	// DefaultSentinelDownAfter is down-after on the local provider. At 1 s,
	// under load (load average 17-20 on 2 cores) a Sentinel's fresh link
	// to a just-promoted primary answered its first PING 1.02-1.07 s after
	// +switch-master (see DefaultSentinelDownAfterDocker), and the other
	// Sentinels' is-master-down replies about the old primary, which
	// +switch-master does not clear, made that one +sdown an +odown
	// ("#quorum 3/2") at once: a second failover of a live primary, and
	// twice Sentinels that ended naming different primaries in the same
	// epoch, each turning the other's into a replica (no primary left).
	DefaultSentinelDownAfter = 2 * time.Second
	// SentinelDownAfterStep staggers down-after: sentinel-i waits
	// (i-1) steps longer than sentinel-1. With one down-after for all, the
	// three Sentinels lose a killed (or cut) primary at the same instant,
	// reach +sdown within ~50 ms of each other and, before any vote
	// request arrives, each starts a failover in the same epoch and votes
	// for itself: no leader, -failover-abort-not-elected after 3 s and no
	// new attempt for 2 x failover-timeout (6 s) — a 3-way split seen
	// under load (load average 17-20), so a failover took ~10 s instead
	// of ~2.5 s. Staggered, the Sentinel that calls the primary down first
	// asks the others for their votes half a second before the next one
	// could start a failover of its own.
	SentinelDownAfterStep = 500 * time.Millisecond
	// DefaultSentinelDownAfterDocker is down-after on the docker provider.
	// After +switch-master a Sentinel resets its master entry and reaches
	// the new primary on a fresh connection, reconnecting at most once per
	// second (its hard-coded ping period); through the docker peer proxy on
	// a loaded machine the first PONG came 1.28-1.39 s after the switch, so
	// with down-after 1 s every Sentinel called the new primary down
	// (+sdown, +odown: quorum) and, the switch having cleared its failover
	// timer, failed over a second time at once (redis-1 -> redis-3 ->
	// redis-2 within 2.3 s of the kill). 3 s is more than twice that.
	DefaultSentinelDownAfterDocker = 3 * time.Second
	DefaultSentinelFailoverTimeout = 3 * time.Second
)

// sentinelDownAfter is down-after for provider (the option if set).
func (o ReplicationOptions) sentinelDownAfter(provider string) time.Duration {
	switch {
	case o.SentinelDownAfter > 0:
		return o.SentinelDownAfter
	case provider == "docker":
		return DefaultSentinelDownAfterDocker
	}
	return DefaultSentinelDownAfter
}

func (o ReplicationOptions) withDefaults() ReplicationOptions {
	if o.SentinelFailoverTimeout <= 0 {
		o.SentinelFailoverTimeout = DefaultSentinelFailoverTimeout
	}
	return o
}

// TopologyNodes lists the nodes a topology starts, in start order.
func TopologyNodes(t Topology) ([]NodeSpec, error) {
	switch t {
	case TopologyRedisSentinel:
		return []NodeSpec{
			{Name: "redis-1", Kind: Redis}, {Name: "redis-2", Kind: Redis}, {Name: "redis-3", Kind: Redis},
			{Name: "sentinel-1", Kind: Sentinel}, {Name: "sentinel-2", Kind: Sentinel}, {Name: "sentinel-3", Kind: Sentinel},
		}, nil
	case TopologyPGStandby:
		return []NodeSpec{{Name: "pg-1", Kind: Postgres}, {Name: "pg-2", Kind: Postgres}}, nil
	}
	return nil, fmt.Errorf("infra.Spec: unknown topology %q (want %q or %q, or none)", t, TopologyRedisSentinel, TopologyPGStandby)
}

// withTopology puts the topology's nodes first in Spec.Nodes; nodes
// already there are independent extras (a workload's resource node).
func (s Spec) withTopology() (Spec, error) {
	if s.Topology == TopologyNone {
		return s, nil
	}
	nodes, err := TopologyNodes(s.Topology)
	if err != nil {
		return s, err
	}
	for _, x := range s.Nodes {
		for _, n := range nodes {
			if x.Name == n.Name {
				return s, fmt.Errorf("infra.Spec: node %s is one of topology %s's own nodes (%s): Spec.Nodes beside a topology may only add other, independent nodes", x.Name, s.Topology, nodeNames(nodes))
			}
		}
	}
	s.Nodes = append(nodes, s.Nodes...) // the topology's, then independent extras
	s.Replication = s.Replication.withDefaults()
	return s, nil
}

func nodeNames(ns []NodeSpec) string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return fmt.Sprint(out)
}

// Role is what a node of a topology is right now.
type Role string

// The roles Env.Roles reports.
const (
	RolePrimary  Role = "primary"
	RoleReplica  Role = "replica"
	RoleSentinel Role = "sentinel"
	RoleDown     Role = "down" // does not answer (killed, paused, stopped)
)

// Link is one peer proxy: the node-to-node connections made TO one node.
//
// In redis-sentinel every Redis node and every Sentinel announces one
// address to the others (replica-announce-ip/port, sentinel announce-ip/port),
// and that address is its peer proxy "peer:<node>". So "peer:redis-1" carries
// every connection another node opens to redis-1: the replication stream of
// each replica of redis-1 (replicas connect to their primary), and the
// monitoring connections (commands + pub/sub hello channel) of the three
// Sentinels. "peer:sentinel-1" carries the other Sentinels' connections to
// sentinel-1 (is-master-down-by-addr votes). Clients never use a peer link:
// they come in through the node's client proxy (Node.Proxy).
//
// What holds after Sentinel reconfigures: a node is identified by its
// announced address, which is its own peer link, so every link keeps its
// meaning across failovers: "peer:X" is "everything from other nodes to X"
// whatever X's role. Cutting peer:<primary> cuts the primary off from its
// replicas and the Sentinels while its clients still reach it (the
// split-brain setup: Sentinels promote a replica, the old primary keeps
// accepting writes through its client proxy). Cutting peer:<replica> hides
// that replica from the Sentinels only; it still replicates (its
// replication stream is a connection it opens to the primary's peer link).
// There are no per-pair links (a replica's replication alone cannot be
// cut through them): after a failover Sentinel tells every replica the new
// primary's one announced address, so a per-pair address would not
// survive. Env.CutPairs cuts one pair by its packets instead (docker).
type Link interface {
	Name() string // "peer:<node>"
	From() string // "*": every other node of the topology
	To() string   // the node the connections go to
	Proxy() Proxy
}

// peerLink implements Link.
type peerLink struct {
	to string
	px nodeProxy
}

func (l *peerLink) Name() string { return "peer:" + l.to }
func (l *peerLink) From() string { return "*" }
func (l *peerLink) To() string   { return l.to }
func (l *peerLink) Proxy() Proxy { return l.px }

// FailoverMode says how Env.Failover brings a failover about.
type FailoverMode string

// The failover modes.
const (
	// FailoverKill SIGKILLs the primary and waits until a new one is
	// promoted (by the Sentinels for redis). The old primary stays down:
	// Node.Start brings it back (redis: empty, and the Sentinels turn it
	// into a replica of the new primary a few seconds later; pg-standby:
	// rewound with pg_rewind into a streaming standby of the new primary,
	// before Start returns).
	FailoverKill FailoverMode = "kill"
	// FailoverForce asks for a failover without killing anything (redis:
	// SENTINEL FAILOVER): the Sentinels promote a replica and turn the old
	// primary, still running, into a replica itself. It is not fenced off:
	// until it is reconfigured it still accepts writes from clients that
	// talk to it.
	FailoverForce FailoverMode = "force"
)

// FailoverResult is what Env.Failover did.
type FailoverResult struct {
	Mode     FailoverMode
	Old, New string    // node names of the old and the new primary
	Started  time.Time // when the primary was killed / the failover asked for
	Promoted time.Time // when the new primary was first seen as primary
	// Took is Promoted - Started: kill (or request) to promotion, as
	// observed by polling every 20 ms.
	Took time.Duration
	// OldStopped says the old primary is down (killed, or pg-standby's
	// force stopped it): Node.Start brings it back as a replica.
	OldStopped bool
}

// topology is what a replicated topology adds to an Env.
type topology interface {
	// start starts every node (order, configuration, links) and returns them
	// in spec order; nodes already created are in e.nodes for Close.
	start(ctx context.Context, e *Env) error
	roles(ctx context.Context, e *Env) (map[string]Role, error)
	primary(ctx context.Context, e *Env) (Node, error)
	failover(ctx context.Context, e *Env, how FailoverMode) (FailoverResult, error)
	// settled is one probe of Env.WaitSettled: nil once the roles have
	// settled, else what has not.
	settled(ctx context.Context, e *Env) error
}

// diagnoser is a topology that can say, for an error, why its roles are
// not what was expected (redis-sentinel: what each Sentinel thinks).
type diagnoser interface {
	diagnose(ctx context.Context, e *Env) string
}

func newTopology(t Topology) (topology, error) {
	switch t {
	case TopologyRedisSentinel:
		return &sentinelTopology{}, nil
	case TopologyPGStandby:
		return &pgStandbyTopology{}, nil
	}
	return nil, fmt.Errorf("infra: topology %q is not implemented yet", t)
}

// Topology is the environment's topology (TopologyNone for independent nodes).
func (e *Env) Topology() Topology { return e.spec.Topology }

// Links returns the peer links of a topology (nil for independent nodes),
// in node order.
func (e *Env) Links() []Link {
	var out []Link
	for _, n := range e.Nodes() {
		if p := n.(*node).peer; p != nil {
			out = append(out, &peerLink{to: n.Name(), px: p})
		}
	}
	return out
}

// Link returns the peer link to the node called to ("redis-1" or "peer:redis-1").
func (e *Env) Link(to string) (Link, bool) {
	for _, l := range e.Links() {
		if l.To() == to || l.Name() == to {
			return l, true
		}
	}
	return nil, false
}

var errNoTopology = errors.New("the environment has no replicated topology (Spec.Topology is empty)")

// Roles asks every node of the topology what it is now (primary, replica,
// sentinel, down). It asks each server directly, bypassing both proxies, so
// a network fault does not make a running node look down.
func (e *Env) Roles(ctx context.Context) (map[string]Role, error) {
	if e.topo == nil {
		return nil, errNoTopology
	}
	return e.topo.roles(ctx, e)
}

// Primary returns the current primary: for redis-sentinel the node a
// majority of the Sentinels names (SENTINEL GET-MASTER-ADDR-BY-NAME).
func (e *Env) Primary(ctx context.Context) (Node, error) {
	if e.topo == nil {
		return nil, errNoTopology
	}
	return e.topo.primary(ctx, e)
}

// Failover makes the topology fail over (see FailoverMode) and returns once
// a new primary is promoted, or ctx ends.
func (e *Env) Failover(ctx context.Context, how FailoverMode) (FailoverResult, error) {
	if e.topo == nil {
		return FailoverResult{}, errNoTopology
	}
	switch how {
	case FailoverKill, FailoverForce:
	default:
		return FailoverResult{}, fmt.Errorf("infra: unknown failover mode %q (want %q or %q)", how, FailoverKill, FailoverForce)
	}
	return e.topo.failover(ctx, e, how)
}

// WaitSettled waits until the roles of the topology have settled after a
// change (a failover, the restart of an old primary), or ctx ends:
// redis-sentinel — every Sentinel names the same primary, which reports
// role master, and every other Redis node reports role slave with its
// link up (a restarted old primary runs as a master of its own until
// Sentinel re-points it); pg-standby — one node of the pair is primary,
// the other a standby. Give ctx a deadline: a set that never settles
// returns the last probe's finding with ctx's error.
func (e *Env) WaitSettled(ctx context.Context) error {
	if e.topo == nil {
		return errNoTopology
	}
	var last error
	err := pollEvery(ctx, topoPoll*5, nil, func(ctx context.Context) error {
		last = e.topo.settled(ctx, e)
		return last
	})
	if err != nil {
		err = fmt.Errorf("%s: roles not settled: %w", e.spec.Topology, errors.Join(last, err))
		if d, ok := e.topo.(diagnoser); ok {
			err = fmt.Errorf("%w\n%s", err, d.diagnose(ctx, e))
		}
		return err
	}
	return nil
}

// SentinelEndpoints returns the master-set name and the Sentinels' client
// addresses (their client proxies), for go-redis FailoverOptions.
func (e *Env) SentinelEndpoints() (master string, sentinels []string) {
	if e.spec.Topology != TopologyRedisSentinel {
		return "", nil
	}
	for _, n := range e.ByKind(Sentinel) {
		sentinels = append(sentinels, n.Addr())
	}
	return SentinelMaster, sentinels
}

// ClientAddr translates a node's PEER address (the one Sentinel hands out:
// the announced address) to that node's client address (Node.Addr). Clients
// following Sentinel dial through it (go-redis FailoverOptions.Dialer), so
// they reach the new primary through its client proxy.
func (e *Env) ClientAddr(peerAddr string) (string, bool) {
	for _, n := range e.Nodes() {
		nn := n.(*node)
		if nn.peer != nil && nn.announce == peerAddr {
			return nn.Addr(), true
		}
	}
	return "", false
}

// nodeByAnnounce finds the node whose announced peer address is addr.
func (e *Env) nodeByAnnounce(addr string) (*node, bool) {
	for _, n := range e.Nodes() {
		if nn := n.(*node); nn.announce == addr {
			return nn, true
		}
	}
	return nil, false
}

// addNode registers a node created by a topology (so Close destroys it)
// unless the environment is closing.
func (e *Env) addNode(ctx context.Context, n *node) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.Join(fmt.Errorf("node %s: environment closed while starting", n.name), n.destroy(context.WithoutCancel(ctx)))
	}
	e.nodes = append(e.nodes, n)
	return nil
}

// sortNodes puts e.nodes in spec order.
func (e *Env) sortNodes() {
	e.mu.Lock()
	defer e.mu.Unlock()
	idx := map[string]int{}
	for i, ns := range e.spec.Nodes {
		idx[ns.Name] = i
	}
	slices.SortFunc(e.nodes, func(a, b *node) int { return idx[a.name] - idx[b.name] })
}
