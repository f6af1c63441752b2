package chaos

import (
	"errors"
	"fmt"
	"strings"
	"time"
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
	return out, errors.Join(errs...)
}

// Build resolves one spec into its fault; id must be unique among the
// faults active at once.
func Build(s Spec, id string, env Env, clients Clients, ttl time.Duration) (Planned, error) {
	p, err := parseParams(s.Kind, s.Param)
	if err != nil {
		return Planned{}, err
	}
	needTTL := s.Start.Relative() || s.Duration.Relative() || p.d.Relative() || p.jitter.Relative()
	if needTTL && ttl <= 0 {
		return Planned{}, errors.New("uses a ttl-relative duration (xttl) but the run has no lock ttl")
	}
	out := Planned{Spec: s, ID: id, Start: s.Start.Of(ttl), Length: s.Duration.Of(ttl)}
	info, _ := kindInfo(s.Kind)

	if info.Class != Client || (s.Kind == "delayed-write" && isNodeTarget(env, s.Target)) {
		nodes, err := ResolveNodes(env, s.Target)
		if err != nil {
			return Planned{}, err
		}
		switch s.Kind {
		case "latency":
			out.Fault = NewLatency(id, nodes, p.d.Of(ttl), p.jitter.Of(ttl), "downstream")
		case "partition":
			out.Fault = NewPartition(id, nodes)
		case "partition-refuse":
			out.Fault = NewPartitionRefuse(nodes)
		case "one-way":
			out.Fault = NewOneWay(id, nodes, p.stream)
		case "bandwidth":
			out.Fault = NewBandwidth(id, nodes, int64(p.rate))
		case "reset-peer":
			out.Fault = NewResetPeer(id, nodes, p.d.Of(ttl))
		case "slow-close":
			out.Fault = NewSlowClose(id, nodes, p.d.Of(ttl))
		case "kill":
			out.Fault = NewKill(nodes)
		case "pause":
			out.Fault = NewPause(nodes)
		case "delayed-write":
			// The link's client→server stream: the write (and every other
			// request) arrives late.
			out.Fault = NewLatency(id, nodes, p.d.Of(ttl), 0, "upstream")
			if out.Length == 0 {
				out.Length = p.d.Of(ttl)
			}
		default:
			return Planned{}, fmt.Errorf("kind %s has no builder", s.Kind)
		}
		return out, nil
	}

	if clients == nil {
		return Planned{}, errNoClients
	}
	key := s.Target
	if strings.EqualFold(key, "any") {
		key = ""
	}
	switch s.Kind {
	case "holder-pause":
		d := p.d.Of(ttl)
		if p.d.IsZero() {
			d = out.Length
		}
		out.Fault, out.Length = NewHolderPause(clients, key, d), d
	case "holder-crash":
		out.Fault = NewHolderCrash(clients, key)
		out.Instant = out.Length == 0
	case "delayed-write":
		out.Fault, out.Length = NewDelayedWrite(clients, key, p.d.Of(ttl)), p.d.Of(ttl)
	case "clock-drift":
		if key != "" {
			return Planned{}, fmt.Errorf("clock-drift takes no target (it skews every client), got %q", s.Target)
		}
		out.Fault = NewClockDrift(clients, p.rate)
	default:
		return Planned{}, fmt.Errorf("kind %s has no builder", s.Kind)
	}
	return out, nil
}

// isNodeTarget says whether a delayed-write target names nodes (resource,
// a group or node names) rather than a lock key.
func isNodeTarget(env Env, target string) bool {
	t := strings.ToLower(strings.TrimSpace(target))
	if t == "" || t == "any" {
		return false
	}
	for _, g := range groups {
		if t == g {
			return true
		}
	}
	if env == nil {
		return false
	}
	for _, name := range strings.Split(target, ",") {
		if _, ok := env.Node(strings.TrimSpace(name)); !ok {
			return false
		}
	}
	return true
}
