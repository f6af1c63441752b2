package workload

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/infra"
)

// Topologist is a workload that can run on a replicated topology
// (infra.Spec.Topology): its implementations use the topology's nodes
// instead of independent ones.
type Topologist interface {
	// NodesOn is Nodes on topology topo: the topology's nodes and the
	// workload's own (its resource), after checking every implementation
	// runs on topo.
	NodesOn(impls []string, topo infra.Topology) ([]infra.NodeSpec, error)
	// NodesForOn is NodesFor on topology topo.
	NodesForOn(impl string, topo infra.Topology) (PhaseNodes, error)
}

// RunNodes is the nodes a run of impls needs on topology topo ("" =
// independent nodes): every node, and those of them the topology does not
// start itself (Spec.Nodes beside Spec.Topology).
func RunNodes(w Workload, impls []string, topo infra.Topology) (all, extra []infra.NodeSpec, err error) {
	if topo == infra.TopologyNone {
		all, err = w.Nodes(impls)
		return all, all, err
	}
	t, ok := w.(Topologist)
	if !ok {
		return nil, nil, fmt.Errorf("workload %s does not run on a replicated topology (--topology %s): run it without --topology", w.Name(), topo)
	}
	if all, err = t.NodesOn(impls, topo); err != nil {
		return nil, nil, err
	}
	own, err := infra.TopologyNodes(topo)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range all {
		if !slices.ContainsFunc(own, func(o infra.NodeSpec) bool { return o.Name == n.Name }) {
			extra = append(extra, n)
		}
	}
	return all, extra, nil
}

// PhaseNodesOn is NodesFor on topology topo ("" = independent nodes).
func PhaseNodesOn(w Workload, impl string, topo infra.Topology) (PhaseNodes, error) {
	if topo == infra.TopologyNone {
		return w.NodesFor(impl)
	}
	t, ok := w.(Topologist)
	if !ok {
		return PhaseNodes{}, fmt.Errorf("workload %s does not run on a replicated topology", w.Name())
	}
	return t.NodesForOn(impl, topo)
}

// ImplTopology says on which topology a lock implementation runs: the one
// it needs (lock.Info.Topology), or "" for independent nodes.
func ImplTopology(impl string) (infra.Topology, error) {
	info, err := lock.Lookup(impl)
	if err != nil {
		return "", err
	}
	return infra.Topology(info.Topology), nil
}

// checkOn checks that a lock implementation runs on topo: it needs topo,
// or it declares topo among those it also runs on (lock.Info.Topologies).
func checkOn(info lock.Info, topo infra.Topology) error {
	need := infra.Topology(info.Topology)
	switch {
	case need == topo:
		return nil
	case need != infra.TopologyNone && topo == infra.TopologyNone:
		return fmt.Errorf("lock %s needs the %s topology: run it with --topology %s", info.Name, need, need)
	case need != infra.TopologyNone:
		return fmt.Errorf("lock %s needs the %s topology, not %s: run it in a run of its own with --topology %s", info.Name, need, topo, need)
	case slices.Contains(info.Topologies, string(topo)):
		return nil
	}
	return fmt.Errorf("lock %s runs on independent nodes, not on the %s topology (implementations for it: %s): run it without --topology",
		info.Name, topo, strings.Join(ImplsOn(topo), ", "))
}

// ImplsOn lists the lock implementations that run on topo.
func ImplsOn(topo infra.Topology) []string {
	var out []string
	for _, i := range lock.All() {
		if !i.Mutant && (infra.Topology(i.Topology) == topo || (i.Topology == "" && slices.Contains(i.Topologies, string(topo)))) {
			out = append(out, i.Name)
		}
	}
	return out
}

// NodesOn is the topology's nodes and the resource node.
func (w *lockWorkload) NodesOn(impls []string, topo infra.Topology) ([]infra.NodeSpec, error) {
	if len(impls) == 0 {
		return nil, fmt.Errorf("workload %s: no implementation given (on %s: %s)", w.name, topo, strings.Join(ImplsOn(topo), ", "))
	}
	own, err := infra.TopologyNodes(topo)
	if err != nil {
		return nil, err
	}
	for _, name := range impls {
		info, err := lock.Lookup(name)
		if err != nil {
			return nil, err
		}
		if err := checkOn(info, topo); err != nil {
			return nil, err
		}
	}
	return append(own, w.node), nil
}

// NodesForOn is the topology's nodes and the resource node.
func (w *lockWorkload) NodesForOn(impl string, topo infra.Topology) (PhaseNodes, error) {
	info, err := lock.Lookup(impl)
	if err != nil {
		return PhaseNodes{}, err
	}
	if err := checkOn(info, topo); err != nil {
		return PhaseNodes{}, err
	}
	own, err := infra.TopologyNodes(topo)
	if err != nil {
		return PhaseNodes{}, err
	}
	return PhaseNodes{Impl: specNames(own), Resource: []string{w.node.Name}}, nil
}

// topoEnv is what the lock workload needs of an environment with a
// replicated topology (*infra.Env).
type topoEnv interface {
	Env
	Topology() infra.Topology
	Primary(ctx context.Context) (infra.Node, error)
	SentinelEndpoints() (master string, sentinels []string)
	ClientAddr(peerAddr string) (string, bool)
}

// envTopology is env's topology ("" for independent nodes).
func envTopology(env Env) (topoEnv, infra.Topology) {
	if te, ok := env.(topoEnv); ok {
		return te, te.Topology()
	}
	return nil, infra.TopologyNone
}

// topologyEndpoints fills ep for an implementation on env's topology:
// redis-sentinel hands over the Sentinels, with a dialer that turns the
// peer address a Sentinel names into the node's client address (its proxy,
// or with direct its own address).
func topologyEndpoints(te topoEnv, info lock.Info, direct bool) (lock.Endpoints, error) {
	var ep lock.Endpoints
	switch te.Topology() {
	case infra.TopologyRedisSentinel:
		master, sentinels := te.SentinelEndpoints()
		if master == "" || len(sentinels) == 0 {
			return ep, fmt.Errorf("lock %s: the environment has no Sentinels", info.Name)
		}
		var password string
		if n, ok := te.Node("redis-1"); ok {
			password = n.Password()
		}
		byAddr := map[string]infra.Node{}
		for _, name := range []string{"redis-1", "redis-2", "redis-3", "sentinel-1", "sentinel-2", "sentinel-3"} {
			if n, ok := te.Node(name); ok {
				byAddr[n.Addr()] = n
			}
		}
		addrs := sentinels
		if direct {
			addrs = nil
			for _, a := range sentinels {
				addrs = append(addrs, byAddr[a].DirectAddr())
			}
		}
		d := &net.Dialer{Timeout: 2 * time.Second}
		ep.Sentinel = &lock.SentinelEndpoint{
			Master: master, Addrs: addrs, Password: password, SentinelPassword: password, // one password for the whole set
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if client, ok := te.ClientAddr(addr); ok {
					addr = client
					if n, ok := byAddr[client]; ok && direct {
						addr = n.DirectAddr()
					}
				}
				return d.DialContext(ctx, network, addr)
			},
		}
	default:
		if fd, ok := te.(interface{ FailoverDSN() string }); ok {
			ep.Postgres = []lock.PostgresEndpoint{{Name: string(te.Topology()), DSN: fd.FailoverDSN()}}
		}
	}
	if err := checkOn(info, te.Topology()); err != nil {
		return ep, err
	}
	return ep, nil
}

// flushPrimary empties the topology's Redis primary (directly): the
// replicas follow it.
func flushPrimary(ctx context.Context, te topoEnv) error {
	if te.Topology() != infra.TopologyRedisSentinel {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p, err := te.Primary(pctx)
	if err != nil {
		return fmt.Errorf("reset the topology: find the primary: %w", err)
	}
	c := newRedis(p.DirectAddr(), p.Password(), 5*time.Second, 2)
	defer c.Close()
	if err := c.FlushAll(pctx).Err(); err != nil {
		return fmt.Errorf("reset the topology's primary %s (FLUSHALL): %w", p.Name(), err)
	}
	return nil
}
