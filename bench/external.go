package bench

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/infra"
)

// ProviderExternal is --provider external: servers faultline does not own
// (Config.External), each behind its own proxy.
const ProviderExternal = "external"

// envSpec is the infra.Spec of a run on nodes.
func (c Config) envSpec(nodes []infra.NodeSpec) infra.Spec {
	return infra.Spec{Nodes: nodes, Topology: infra.Topology(c.Topology), Provider: c.Provider, External: c.External, Namespace: c.Namespace}
}

// checkExternal refuses, before anything starts, a process fault on an
// external target faultline cannot control (scheds: every phase's schedule).
func (c Config) checkExternal(nodes []infra.NodeSpec, scheds map[string]chaos.Schedule) error {
	if c.Provider != ProviderExternal {
		return nil
	}
	spec := c.envSpec(nodes)
	// Every node needs a target (or a free one to share): found out here,
	// before anything connects, not at the environment's start.
	var missing []string
	for _, n := range nodes {
		if _, err := infra.ExternalTargetOf(spec, n.Name); err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) > 0 {
		return usagef("--provider external: %s", strings.Join(missing, "; "))
	}
	control := func(n string) (bool, string) { return infra.ProcessControl(spec, n) }
	for _, impl := range c.Impls {
		if err := chaos.CheckProcessControl(scheds[impl], nodes, c.TTL, control); err != nil {
			return &UsageError{Msg: fmt.Sprintf("%s: %v", impl, err)}
		}
	}
	if n := c.Opts["kill-after-prepare"]; n != "" {
		if ok, why := control(n); !ok {
			return usagef("--opt kill-after-prepare=%s refused: it kills a server process and %s", n, why)
		}
	}
	return nil
}

// Capabilities says which fault kinds a run on nodes can inject and which
// the provider refuses (process faults on external servers without a
// container), with the external targets as they may be shown.
func (c Config) Capabilities(nodes []infra.NodeSpec) *results.Capabilities {
	spec := c.envSpec(nodes)
	out := &results.Capabilities{Possible: []string{}}
	// A process fault kind is refused when no node's server takes it (one
	// reason per server); with some that do, a fault aimed at one that
	// does not is refused before the run (checkExternal).
	var blocked []string
	controlled := false
	for _, n := range nodes {
		ok, why := infra.ProcessControl(spec, n.Name)
		if ok {
			controlled = true
		} else if !slices.Contains(blocked, why) {
			blocked = append(blocked, why)
		}
	}
	if controlled {
		blocked = nil
	}
	refuse := func(kind, why string) {
		if out.Refused == nil {
			out.Refused = map[string]string{}
		}
		out.Refused[kind] = why
	}
	for _, k := range chaos.Kinds() {
		switch {
		case k.Topology && c.Provider == ProviderExternal:
			refuse(k.Name, "acts on replication, and faultline does not own your servers' replication")
		case k.Topology && c.Topology == "":
			refuse(k.Name, "needs a replicated topology (--topology)")
		case k.Class == chaos.Process && len(blocked) > 0:
			refuse(k.Name, strings.Join(blocked, "; "))
		default:
			out.Possible = append(out.Possible, k.Name)
		}
	}
	if c.Provider == ProviderExternal {
		for _, t := range c.External {
			out.Targets = append(out.Targets, t.Public())
		}
		out.KeyPrefix = infra.KeyPrefix(c.Namespace)
		if slices.ContainsFunc(nodes, func(n infra.NodeSpec) bool { return n.Kind == infra.Postgres }) {
			out.Schema = infra.Schema(c.Namespace)
		}
	}
	return out
}

// DryRun says what a run of cfg would create on its external servers and
// which faults it would refuse, without connecting to anything. A fault
// the provider refuses is a *UsageError, as in Run.
func DryRun(cfg Config) (string, error) {
	cfg = cfg.WithDefaults().RaiseQuiet().RouteOptions()
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	if cfg.Provider != ProviderExternal {
		return "", usagef("--dry-run is for --provider external (it says what a run would create on servers faultline does not own)")
	}
	nodes, err := cfg.preflight()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(infra.DescribeExternal(cfg.envSpec(nodes)))
	capa := cfg.Capabilities(nodes)
	fmt.Fprintf(&b, "faults possible: %s\n", strings.Join(capa.Possible, ", "))
	for _, k := range slices.Sorted(maps.Keys(capa.Refused)) {
		fmt.Fprintf(&b, "fault %s refused: %s\n", k, capa.Refused[k])
	}
	return b.String(), nil
}

// CheckExternal refuses, before a run prints or starts anything, the
// faults a run of cfg on external servers could not inject (process
// faults on a server without container=, or on a node sharing another's
// server): a *UsageError, as Run would return. Other providers pass.
func CheckExternal(cfg Config) error {
	cfg = cfg.WithDefaults().RaiseQuiet().RouteOptions()
	if cfg.Provider != ProviderExternal {
		return nil
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	_, err := cfg.preflight()
	return err
}

// preflight resolves every phase's schedule against the run's nodes and
// applies checkExternal; cfg has its defaults.
func (c Config) preflight() ([]infra.NodeSpec, error) {
	wl, _ := workload.Lookup(c.Workload)
	c.Impls, _ = WithBaseline(wl, c.Impls)
	nodes, _ := wl.Nodes(c.Impls)
	scheds := map[string]chaos.Schedule{}
	for _, impl := range c.Impls {
		sched, err := PhaseSchedule(c, wl, impl)
		if err == nil {
			err = chaos.CheckTargets(sched, nodes, c.TTL)
		}
		if err != nil {
			return nil, &UsageError{Msg: fmt.Sprintf("%s: %v", impl, err)}
		}
		scheds[impl] = sched
	}
	return nodes, c.checkExternal(nodes, scheds)
}
