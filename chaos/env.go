package chaos

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/faultline-dev/faultline/infra"
)

// Env is what faults need of an environment: its nodes by name. *infra.Env
// satisfies it; tests of target resolution use a fake.
type Env interface {
	Node(name string) (infra.Node, bool)
	Nodes() []infra.Node
}

// ResourceEnv is an Env that says which of its nodes hold the workload's
// protected resource. Without it, nodes named "resource" or "resource-…" are
// the resource nodes.
type ResourceEnv interface {
	Env
	ResourceNodes() []string
}

// WithResource returns env with the named nodes designated as the
// workload's protected resource (target "resource"; excluded from "all").
func WithResource(env Env, names ...string) ResourceEnv {
	return resourceEnv{Env: env, names: append([]string(nil), names...)}
}

type resourceEnv struct {
	Env
	names []string
}

func (r resourceEnv) ResourceNodes() []string { return r.names }

// groups are the target group names, for error messages.
var groups = []string{"all", "resource", "minority", "majority", "redis", "pg"}

// isResource reports whether node name holds the protected resource.
func isResource(env Env, name string) bool {
	if r, ok := env.(ResourceEnv); ok {
		for _, n := range r.ResourceNodes() {
			if n == name {
				return true
			}
		}
		return false
	}
	return name == "resource" || strings.HasPrefix(name, "resource-")
}

// sortedNodes returns env's nodes in natural name order (redis-2 before
// redis-10), so that resolution never depends on the env's own order.
func sortedNodes(env Env) []infra.Node {
	nodes := append([]infra.Node(nil), env.Nodes()...)
	sort.Slice(nodes, func(i, j int) bool { return naturalLess(nodes[i].Name(), nodes[j].Name()) })
	return nodes
}

// naturalLess orders names by their text, with a trailing number compared
// as a number.
func naturalLess(a, b string) bool {
	pa, na := splitNum(a)
	pb, nb := splitNum(b)
	if pa != pb {
		return pa < pb
	}
	if na != nb {
		return na < nb
	}
	return a < b
}

func splitNum(s string) (string, int) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	n, err := strconv.Atoi(s[i:])
	if err != nil {
		return s, -1
	}
	return s[:i], n
}

// lockSet is the set that minority/majority divide: the non-resource Redis
// nodes, or every non-resource node when there is no Redis node.
func lockSet(env Env) []infra.Node {
	var redis, all []infra.Node
	for _, n := range sortedNodes(env) {
		if isResource(env, n.Name()) {
			continue
		}
		all = append(all, n)
		if n.Kind() == infra.Redis {
			redis = append(redis, n)
		}
	}
	if len(redis) > 0 {
		return redis
	}
	return all
}

// ResolveNodes resolves a network or process fault target against env:
// "" or "all" (every node but the resource nodes), "resource", "minority"
// and "majority" of the Redis set (the first (n-1)/2 and n/2+1 in name
// order), "redis" and "pg" (every non-resource node of that kind), or
// comma-separated node names (which may name a resource node). The result is in natural name order, without duplicates.
func ResolveNodes(env Env, target string) ([]infra.Node, error) {
	if env == nil {
		return nil, fmt.Errorf("target %q: no environment to resolve it against", target)
	}
	all := sortedNodes(env)
	var out []infra.Node
	switch strings.ToLower(strings.TrimSpace(target)) {
	case "", "all":
		for _, n := range all {
			if !isResource(env, n.Name()) {
				out = append(out, n)
			}
		}
	case "resource":
		for _, n := range all {
			if isResource(env, n.Name()) {
				out = append(out, n)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("target resource: the environment has no resource node (name one \"resource\" or designate it with chaos.WithResource); nodes: %s", nodeNames(all))
		}
	case "minority", "majority":
		set := lockSet(env)
		k := len(set)/2 + 1
		if strings.EqualFold(target, "minority") {
			k = (len(set) - 1) / 2
		}
		if k == 0 {
			return nil, fmt.Errorf("target %s: a set of %d node(s) has no %s; use 3 or more nodes", target, len(set), target)
		}
		out = set[:k]
	case "redis", "pg", "postgres":
		kind := infra.Redis
		if !strings.EqualFold(target, "redis") {
			kind = infra.Postgres
		}
		for _, n := range all {
			if n.Kind() == kind && !isResource(env, n.Name()) {
				out = append(out, n)
			}
		}
	default:
		seen := map[string]bool{}
		for _, name := range strings.Split(target, ",") {
			name = strings.TrimSpace(name)
			n, ok := env.Node(name)
			if !ok {
				return nil, fmt.Errorf("unknown target %q (valid: node names %s, or groups %s)", name, nodeNames(all), strings.Join(groups, ", "))
			}
			if !seen[name] {
				seen[name] = true
				out = append(out, n)
			}
		}
		sort.Slice(out, func(i, j int) bool { return naturalLess(out[i].Name(), out[j].Name()) })
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("target %q matches no node (nodes: %s)", target, nodeNames(all))
	}
	return out, nil
}

func nodeNames(nodes []infra.Node) string {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name()
	}
	return strings.Join(names, ", ")
}

func names(nodes []infra.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name()
	}
	return out
}
