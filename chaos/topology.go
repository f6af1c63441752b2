package chaos

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/infra"
)

// TopologyEnv is an Env with a replicated topology (*infra.Env started with
// Spec.Topology): the faults of replication (failover, replication-lag,
// replication-partition) need it.
type TopologyEnv interface {
	Env
	Topology() infra.Topology
	Link(to string) (infra.Link, bool)
	Primary(ctx context.Context) (infra.Node, error)
	Roles(ctx context.Context) (map[string]infra.Role, error)
	Failover(ctx context.Context, how infra.FailoverMode) (infra.FailoverResult, error)
	// WaitSettled waits until the roles have settled (infra.Env.WaitSettled).
	WaitSettled(ctx context.Context) error
}

// HealRecorder is a fault that wants to know when its heal event was
// recorded: the runner calls HealRecorded after record returned for the
// heal (a chained failover starts only then, so nothing recorded for the
// heal sees the next one).
type HealRecorder interface {
	Fault
	HealRecorded()
}

// Reporter is a fault whose start has more to say than that it happened:
// when it really began (a failover's Start returns once a replica is
// promoted; the primary was lost earlier) and attributes for its start
// event. The runner dates the start event at Began and records Attrs, and
// each of Marks as the history time of that moment (attrs "<name>").
type Reporter interface {
	Fault
	Report() Report
}

// Report is what a Reporter says once its Start has returned.
type Report struct {
	Began time.Time // zero: when Start returned
	Attrs map[string]string
	Marks map[string]time.Time
}

// topologyEnv returns env as a TopologyEnv, or an error saying the kind
// needs a replicated topology.
func topologyEnv(env Env, kind string) (TopologyEnv, error) {
	if t, ok := env.(TopologyEnv); ok && t.Topology() != infra.TopologyNone {
		return t, nil
	}
	return nil, fmt.Errorf("%s needs a replicated topology (run with --topology %s or %s)", kind, infra.TopologyRedisSentinel, infra.TopologyPGStandby)
}

// linkTargets are the targets of a replication fault: "" or "primary" (the
// primary's peer link, resolved when the fault starts), "replicas" (every
// replica's, idem) or node names.
func linkTargetsValid(env Env, target string) error {
	switch strings.ToLower(strings.TrimSpace(target)) {
	case "", "primary", "replicas":
		return nil
	}
	_, err := ResolveNodes(env, target)
	if err != nil {
		return fmt.Errorf("%w (replication faults also take primary or replicas)", err)
	}
	return nil
}

// resolveLinks resolves target to peer links when the fault starts.
func resolveLinks(ctx context.Context, env TopologyEnv, target string) ([]infra.Link, error) {
	var names []string
	switch t := strings.ToLower(strings.TrimSpace(target)); t {
	case "", "primary":
		p, err := env.Primary(ctx)
		if err != nil {
			return nil, fmt.Errorf("find the primary: %w", err)
		}
		names = []string{p.Name()}
	case "replicas":
		roles, err := env.Roles(ctx)
		if err != nil {
			return nil, fmt.Errorf("find the replicas: %w", err)
		}
		for _, n := range sortedNodes(env) {
			if roles[n.Name()] == infra.RoleReplica {
				names = append(names, n.Name())
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("no node reports role replica now (roles %v)", roles)
		}
	default:
		nodes, err := ResolveNodes(env, target)
		if err != nil {
			return nil, err
		}
		names = nodeNamesOf(nodes)
	}
	var out []infra.Link
	for _, n := range names {
		l, ok := env.Link(n)
		if !ok {
			return nil, fmt.Errorf("node %s has no peer link (only the nodes of a replicated topology have one)", n)
		}
		out = append(out, l)
	}
	return out, nil
}

func nodeNamesOf(nodes []infra.Node) []string { return names(nodes) }

// linkFault is a network fault on peer links (the replication and
// Sentinel traffic to a node), resolved when it starts: Start adds its
// toxics to each link's proxy, Heal removes them.
type linkFault struct {
	kind, id, target string
	env              TopologyEnv
	toxics           []infra.Toxic

	links   []infra.Link
	applied []infra.Link
	began   time.Time
}

func newLinkFault(kind, id, target string, env TopologyEnv, toxics ...infra.Toxic) *linkFault {
	for i := range toxics {
		toxics[i].Name = fmt.Sprintf("faultline-%s-%s-%s", kind, id, toxics[i].Stream)
		if toxics[i].Toxicity == 0 {
			toxics[i].Toxicity = 1 // 0 would never apply
		}
	}
	return &linkFault{kind: kind, id: id, target: target, env: env, toxics: toxics}
}

func (f *linkFault) Kind() string { return f.kind }

// Nodes are the nodes whose peer links the fault hit (once started).
func (f *linkFault) Nodes() []infra.Node {
	var out []infra.Node
	for _, l := range f.links {
		if n, ok := f.env.Node(l.To()); ok {
			out = append(out, n)
		}
	}
	return out
}

// Targets are the links' nodes once started, else the target as written.
func (f *linkFault) Targets() []string {
	if len(f.links) == 0 {
		if f.target == "" {
			return []string{"primary"}
		}
		return strings.Split(f.target, ",")
	}
	out := make([]string, len(f.links))
	for i, l := range f.links {
		out[i] = l.Name()
	}
	return out
}

func (f *linkFault) Start(ctx context.Context) error {
	links, err := resolveLinks(ctx, f.env, f.target)
	if err != nil {
		return fmt.Errorf("%s: %w", f.kind, err)
	}
	f.links, f.began = links, time.Now()
	for _, l := range links {
		for _, t := range f.toxics {
			if err := l.Proxy().AddToxic(ctx, t); err != nil {
				return fmt.Errorf("%s on %s: add toxic %s: %w", f.kind, l.Name(), t.Name, err)
			}
		}
		f.applied = append(f.applied, l)
	}
	return nil
}

// linkHealTimeout bounds each toxic removal of a link fault's heal, and
// the reset that follows a failed one. Toxiproxy's removal can block for
// good (Shopify/toxiproxy#558: a latency toxic holding WAL for a standby's
// receiver that exited on promotion); a run must not hang on it.
const linkHealTimeout = 5 * time.Second

// Heal removes the fault's toxics, each within linkHealTimeout. A removal
// that fails or times out is recorded as an error and the link's proxy is
// reset (every toxic removed; a proxy whose toxics are stuck is replaced
// by a fresh one on the same address, dropping its connections).
func (f *linkFault) Heal(ctx context.Context) error {
	var errs []string
	var left []infra.Link
	for _, l := range f.applied {
		failed := false
		for _, t := range f.toxics {
			rctx, cancel := context.WithTimeout(ctx, linkHealTimeout)
			err := l.Proxy().RemoveToxic(rctx, t.Name)
			cancel()
			if err != nil && !strings.Contains(err.Error(), "not found") {
				errs = append(errs, fmt.Sprintf("%s on %s: remove toxic %s: %v", f.kind, l.Name(), t.Name, err))
				failed = true
				break // the toxic list may be stuck: the reset replaces the proxy
			}
		}
		if failed {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), linkHealTimeout)
			err := l.Proxy().Reset(rctx)
			cancel()
			if err == nil {
				errs = append(errs, fmt.Sprintf("%s on %s: proxy reset instead", f.kind, l.Name()))
				failed = false
			} else {
				errs = append(errs, fmt.Sprintf("%s on %s: reset: %v", f.kind, l.Name(), err))
			}
		}
		if failed {
			left = append(left, l)
		}
	}
	f.applied = left
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// Report names the links the fault cut or slowed.
func (f *linkFault) Report() Report {
	names := make([]string, len(f.links))
	for i, l := range f.links {
		names[i] = l.Name()
	}
	return Report{Attrs: map[string]string{"links": strings.Join(names, ",")}}
}

// paperCheck is the build of a replication fault on paper (CheckTargets,
// before any server starts): the target must name the topology's nodes or
// a role; the fault is never started.
func paperCheck(b builder, p *Planned) (bool, error) {
	if _, paper := b.env.(paperEnv); !paper {
		return false, nil
	}
	if err := linkTargetsValid(b.env, b.spec.Target); err != nil {
		return true, err
	}
	p.Fault = &linkFault{kind: b.spec.Kind, target: b.spec.Target}
	return true, nil
}

// NeedsTopology lists the kinds of s that need a replicated topology
// (sorted, without duplicates): a run without one must refuse them.
func NeedsTopology(s Schedule) []string {
	seen := map[string]bool{}
	var out []string
	for _, spec := range s {
		k, err := LookupKind(spec.Kind)
		if err == nil && k.Topology && !seen[k.Name] {
			seen[k.Name] = true
			out = append(out, k.Name)
		}
	}
	sort.Strings(out)
	return out
}
