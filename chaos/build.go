package chaos

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/faultline-dev/faultline/infra"
)

// Planned is a spec resolved against an environment: the fault to apply and
// when, relative to the start of the run.
type Planned struct {
	Spec  Spec
	ID    string // unique in the schedule ("f0", "f1"…): toxic names, event pairing
	Fault Fault
	Start time.Duration
	// Length is how long the fault stays on; 0 = until the run ends.
	Length time.Duration
	// Instant faults (holder-crash without +duration) heal right after start.
	Instant bool
}

// Plan resolves every spec of s against env (targets), clients (client
// faults) and ttl (durations like 2xttl). It starts nothing; its error names
// every spec that cannot run here.
func Plan(s Schedule, env Env, clients Clients, ttl time.Duration) ([]Planned, error) {
	var out []Planned
	var errs []error
	for i, spec := range s {
		p, err := Build(spec, fmt.Sprintf("f%d", i), env, clients, ttl)
		if err != nil {
			errs = append(errs, fmt.Errorf("fault %q: %w", spec.String(), err))
			continue
		}
		out = append(out, p)
	}
	errs = append(errs, chainFailovers(out))
	return out, errors.Join(errs...)
}

// chainFailovers lets a schedule fail over more than once: a failover
// needs a replica to promote, and the old primary of the one before is
// that replica only once restarted (it rejoins). So a failover with no
// +duration heals when the next failover is due, and each failover starts
// once the one before has healed. A failover whose +duration reaches past
// the next one's start is refused.
func chainFailovers(plan []Planned) error {
	var fo []int
	for i, p := range plan {
		if _, ok := p.Fault.(*Failover); ok {
			fo = append(fo, i)
		}
	}
	sort.SliceStable(fo, func(a, b int) bool { return plan[fo[a]].Start < plan[fo[b]].Start })
	var errs []error
	for k := 1; k < len(fo); k++ {
		a, b := &plan[fo[k-1]], &plan[fo[k]]
		switch {
		case a.Start == b.Start:
			errs = append(errs, fmt.Errorf("faults %q and %q: two failovers at once (each needs the replica the other promotes)", a.Spec.String(), b.Spec.String()))
			continue
		case a.Length == 0:
			a.Length = b.Start - a.Start
		case a.Start+a.Length > b.Start:
			errs = append(errs, fmt.Errorf("fault %q: its old primary is still down at %v, when failover %q is due (which needs it back as a replica): end it by then or leave its +duration out (it then heals when the next failover is due)",
				a.Spec.String(), b.Start, b.Spec.String()))
			continue
		}
		b.Fault.(*Failover).after = a.Fault.(*Failover)
	}
	return errors.Join(errs...)
}

// Build resolves one spec into its fault (through its kind's entry); id
// must be unique among the faults active at once.
func Build(s Spec, id string, env Env, clients Clients, ttl time.Duration) (Planned, error) {
	k, err := LookupKind(s.Kind)
	if err != nil {
		return Planned{}, err
	}
	p, err := k.parseParams(s.Param)
	if err != nil {
		return Planned{}, err
	}
	if (s.Start.Relative() || s.Duration.Relative() || p.d.Relative() || p.jitter.Relative()) && ttl <= 0 {
		return Planned{}, errNoTTL
	}
	out := Planned{Spec: s, ID: id, Start: s.Start.Of(ttl), Length: k.lengthOf(s, p, ttl)}
	if err := k.build(builder{id: id, spec: s, params: p, env: env, clients: clients, ttl: ttl}, &out); err != nil {
		return Planned{}, err
	}
	return out, nil
}

// CheckTargets resolves every spec of s against the nodes a run is about to
// start, before any server starts: an unknown node, a group the nodes do
// not have, a client fault's bad key. It builds the faults on paper (none
// is started); the error names every bad spec.
func CheckTargets(s Schedule, nodes []infra.NodeSpec, ttl time.Duration) error {
	env := paperEnv{}
	for _, n := range nodes {
		env = append(env, paperNode{spec: n})
	}
	_, err := Plan(s, env, paperClients{}, ttl)
	return err
}

// paperEnv is an Env of nodes not started yet: names and kinds only.
type paperEnv []infra.Node

func (e paperEnv) Nodes() []infra.Node { return e }
func (e paperEnv) Node(name string) (infra.Node, bool) {
	for _, n := range e {
		if n.Name() == name {
			return n, true
		}
	}
	return nil, false
}

// paperNode answers Name and Kind; a fault built on it is never started.
type paperNode struct {
	infra.Node
	spec infra.NodeSpec
}

func (n paperNode) Name() string     { return n.spec.Name }
func (n paperNode) Kind() infra.Kind { return n.spec.Kind }

// paperClients stands for the workload's clients when faults are only
// built, never started.
type paperClients struct{ Clients }

// CheckProcessControl refuses, before any server starts, every spec of s
// whose kind acts on a server process (kill, pause) when control says the
// run cannot control a target node's process (external servers faultline
// does not own). The error names each refused fault, its node and why.
func CheckProcessControl(s Schedule, nodes []infra.NodeSpec, ttl time.Duration, control func(node string) (bool, string)) error {
	env := paperEnv{}
	for _, n := range nodes {
		env = append(env, paperNode{spec: n})
	}
	var errs []error
	for i, spec := range s {
		k, err := LookupKind(spec.Kind)
		if err != nil || k.Class != Process {
			continue
		}
		p, err := Build(spec, fmt.Sprintf("f%d", i), env, paperClients{}, ttl)
		if err != nil {
			errs = append(errs, fmt.Errorf("fault %q: %w", spec.String(), err))
			continue
		}
		for _, n := range p.Fault.Targets() {
			if ok, why := control(n); !ok {
				errs = append(errs, fmt.Errorf("fault %q refused: %s is a process fault and %s", spec.String(), spec.Kind, why))
				break
			}
		}
	}
	return errors.Join(errs...)
}
