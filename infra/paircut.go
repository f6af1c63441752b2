package infra

// Per-pair network partitions between the nodes of a topology (issue 12):
// "cut replica redis-3 from the primary only", "cut sentinel-1 from every
// other node". A peer link (Link) carries every connection made TO a node,
// so it cannot cut one pair: Sentinel hands every replica the primary's one
// announced address. A Cut drops the packets of one pair's connections,
// both directions, where they pass: the docker provider's peer proxy
// container (see paircut_docker.go). The local provider's nodes share the
// host's loopback and one in-process proxy, so it refuses.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// ErrPairCutUnsupported is returned by Env.CutPairs when the environment's
// provider cannot cut one pair of nodes.
var ErrPairCutUnsupported = errors.New("per-pair partitions need the docker provider (--provider docker): " +
	"each node there has its own network namespace and address; local nodes all talk over the host's loopback " +
	"through one in-process proxy, so one pair cannot be told apart")

// pairCutter is a peer net that can drop the traffic of one pair of nodes.
type pairCutter interface {
	// cutPair drops, both ways, every connection a opens to b and b to a;
	// it returns the rules it applied (also on error: Heal removes them).
	cutPair(ctx context.Context, tag string, a, b *node) ([]cutRule, error)
	// uncut removes rules; a rule already gone is not an error. It
	// returns the rules it could not remove.
	uncut(ctx context.Context, rules []cutRule) ([]cutRule, error)
	// cutRules lists the faultline rules in place now.
	cutRules(ctx context.Context) ([]string, error)
	// newTag is a fresh tag for the rules of one Cut.
	newTag() string
	// canCut says why cutPair cannot work here (nil: it can).
	canCut(ctx context.Context) error
}

// cutRule is one packet filter rule: its chain and match, as iptables
// takes them after -A/-D.
type cutRule []string

func (r cutRule) String() string { return strings.Join(r, " ") }

// Cut is a partition between pairs of topology nodes made by Env.CutPairs:
// while it lasts, no packet of a connection between the two nodes of a
// pair gets through, either way (replication, Sentinel monitoring and
// votes); every other pair and every client link is untouched. Heal
// removes exactly its rules.
type Cut struct {
	pc    pairCutter
	tag   string
	pairs [][2]string

	mu    sync.Mutex
	rules []cutRule
}

// Pairs are the node pairs the cut separates.
func (c *Cut) Pairs() [][2]string { return slices.Clone(c.pairs) }

// Tag is the comment every rule of the cut carries.
func (c *Cut) Tag() string { return c.tag }

// Heal removes the cut's rules (only its own); it is safe to call more than
// once and after a failed CutPairs. A rule it cannot remove stays recorded,
// so a later Heal (or Env.Close) tries again.
func (c *Cut) Heal(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rules) == 0 {
		return nil
	}
	left, err := c.pc.uncut(ctx, c.rules)
	c.rules = left
	if err != nil {
		return fmt.Errorf("heal cut %s: %w", c.tag, err)
	}
	return nil
}

// CutPairs partitions each pair of nodes of the topology from each other
// (both directions) until the returned Cut is healed; Env.Close heals what
// is left. A node must be running: the cut is made against its address
// now, so a node restarted during the cut may come back on another
// address, uncut. It fails with ErrPairCutUnsupported on a provider that
// cannot cut pairs (local, external).
func (e *Env) CutPairs(ctx context.Context, pairs ...[2]string) (*Cut, error) {
	if e.topo == nil {
		return nil, errNoTopology
	}
	e.mu.Lock()
	pn := e.peers
	e.mu.Unlock()
	pc, ok := pn.(pairCutter)
	if !ok {
		return nil, fmt.Errorf("infra: provider %s: %w", e.prov.name(), ErrPairCutUnsupported)
	}
	if len(pairs) == 0 {
		return nil, errors.New("infra: CutPairs: no pair given")
	}
	type resolved struct{ a, b *node }
	var rs []resolved
	for _, p := range pairs {
		var ns [2]*node
		for i, name := range p {
			n, ok := e.Node(name)
			if !ok || n.(*node).peer == nil {
				return nil, fmt.Errorf("infra: CutPairs: %s is no node of topology %s (nodes with peer links: %s)", name, e.spec.Topology, linkNames(e))
			}
			ns[i] = n.(*node)
		}
		if ns[0] == ns[1] {
			return nil, fmt.Errorf("infra: CutPairs: pair %s|%s names one node twice", p[0], p[1])
		}
		rs = append(rs, resolved{ns[0], ns[1]})
	}
	c := &Cut{pc: pc, tag: pc.newTag(), pairs: slices.Clone(pairs)}
	for _, r := range rs {
		rules, err := pc.cutPair(ctx, c.tag, r.a, r.b)
		c.mu.Lock()
		c.rules = append(c.rules, rules...)
		c.mu.Unlock()
		if err != nil {
			return c, errors.Join(fmt.Errorf("infra: cut %s|%s: %w", r.a.name, r.b.name, err), c.Heal(context.WithoutCancel(ctx)))
		}
	}
	return c, nil
}

// CutRules lists the per-pair partition rules in place now (every Cut's
// not yet healed), one rule a line as iptables -S prints it: for tests and
// diagnostics. A provider that cannot cut pairs has none.
func (e *Env) CutRules(ctx context.Context) ([]string, error) {
	e.mu.Lock()
	pn := e.peers
	e.mu.Unlock()
	pc, ok := pn.(pairCutter)
	if !ok {
		return nil, nil
	}
	return pc.cutRules(ctx)
}

// CanCutPairs says whether CutPairs can work in this environment, and why
// not: the provider must cut pairs (docker), and on docker faultline must
// run as root on the engine's host with nsenter and iptables (it probes the
// peer proxy container's process: a remote DOCKER_HOST fails here).
func (e *Env) CanCutPairs() (bool, string) {
	e.mu.Lock()
	pn := e.peers
	e.mu.Unlock()
	pc, ok := pn.(pairCutter)
	if !ok {
		return false, ErrPairCutUnsupported.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), cutCallTimeout)
	defer cancel()
	if err := pc.canCut(ctx); err != nil {
		return false, err.Error()
	}
	return true, ""
}

func linkNames(e *Env) string {
	var out []string
	for _, l := range e.Links() {
		out = append(out, l.To())
	}
	return strings.Join(out, ", ")
}
