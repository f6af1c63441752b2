package chaos

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// NemesisOptions describe a random schedule: which kinds, how often, how
// long, from which seed, against which nodes.
type NemesisOptions struct {
	Kinds []string
	// Interval: one fault starts every interval (the first at one
	// interval) and lasts half of it.
	Interval time.Duration
	// Duration is the phase the schedule runs in; no fault runs past it.
	Duration time.Duration
	Seed     int64
	// Salt is mixed into the seed (the implementation's name): each
	// implementation gets its own draw from one run seed, and the same
	// draw every time.
	Salt string
	// Nodes are the nodes of the implementation under test (its Redis and
	// PostgreSQL servers); Resource the workload's protected resource
	// nodes, whose link latency may slow.
	Nodes    []string
	Resource []string
	// TTL resolves the ttl-relative lengths of client faults (2xttl): a
	// drawn fault that would outlast the phase leaves its slot quiet.
	// Zero: the caller checks (CheckSchedule).
	TTL time.Duration
}

// Nemesis builds a random schedule, reproducibly: the same options always
// give the same specs (same kinds, same targets, same windows). One fault
// at a time, Jepsen style: a fault starts every interval and lasts half of
// it, leaving a quiet half before the next.
//
// Every kind draws its own target and params (its kind_<name>.go): node
// faults hit one node, a minority or a majority of o.Nodes, taking the
// nodes in a random rotation so that every node is hit once before any is
// hit twice; latency may slow the resource link instead; client faults
// target any key.
func Nemesis(o NemesisOptions) (Schedule, error) {
	if len(o.Kinds) == 0 {
		return nil, fmt.Errorf("nemesis: no fault kinds (valid kinds: %s)", kindNames())
	}
	if o.Interval <= 0 {
		return nil, fmt.Errorf("nemesis: interval %v must be positive, e.g. 10s", o.Interval)
	}
	ks := make([]Kind, len(o.Kinds))
	needNodes := false
	for i, name := range o.Kinds {
		k, err := LookupKind(name)
		if err != nil {
			return nil, fmt.Errorf("nemesis: %w", err)
		}
		ks[i] = k
		needNodes = needNodes || k.Class != Client
	}
	nodes := sortedNames(o.Nodes)
	if needNodes && len(nodes) == 0 {
		return nil, fmt.Errorf("nemesis: kinds %s need nodes to fault, and the implementation has none", strings.Join(o.Kinds, ","))
	}
	h := fnv.New64a()
	h.Write([]byte(o.Salt))
	d := &drawer{
		rng:      rand.New(rand.NewPCG(uint64(o.Seed), 0x6e656d65736973^h.Sum64())), // "nemesis"
		nodes:    nodes,
		resource: sortedNames(o.Resource),
	}
	if n := NemesisFaults(o.Interval, o.Duration); n > maxNemesisFaults {
		return nil, fmt.Errorf("nemesis: an interval of %v draws %d faults in %v, more than %d: use a longer interval", o.Interval, n, o.Duration, maxNemesisFaults)
	}
	length := nemesisLength(o.Interval)
	var out Schedule
	for start := o.Interval; start+length <= o.Duration; start += o.Interval {
		k := ks[d.rng.IntN(len(ks))]
		s := Spec{Kind: k.Name, Start: Dur{D: start}, Duration: Dur{D: length}}
		k.draw(d, &s)
		if o.TTL > 0 && checkSpec(s, o.Duration, o.TTL) != nil {
			continue // a client fault's own length (2xttl) outlasts the phase
		}
		out = append(out, s)
	}
	return out, nil
}

// NemesisFaults is how many fault slots Nemesis fills for an interval and
// a phase duration (at most as many faults).
func NemesisFaults(interval, duration time.Duration) int {
	if interval <= 0 || duration <= 0 {
		return 0
	}
	return int(max(0, (duration-nemesisLength(interval))/interval))
}

// maxNemesisFaults bounds a random schedule.
const maxNemesisFaults = 100_000

// nemesisLength is how long each nemesis fault lasts: half the interval.
func nemesisLength(interval time.Duration) time.Duration { return max(interval/2, 1) }

func sortedNames(in []string) []string {
	out := append([]string(nil), in...)
	sort.Slice(out, func(i, j int) bool { return naturalLess(out[i], out[j]) })
	return out
}
