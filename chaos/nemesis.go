package chaos

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// Nemesis builds a random schedule, reproducibly: the same kinds, interval,
// run duration, seed and node names always give the same specs (same kinds,
// same targets, same windows). One fault at a time, Jepsen style: a fault
// starts every interval (the first at one interval) and lasts half of it,
// leaving a quiet half before the next; no fault runs past runDuration.
//
// Node targets are drawn among the non-resource nodes in name order and
// written out as explicit node names (partitions, kills and pauses hit one
// node, a minority or a majority of the Redis set). Client faults target any
// key: holder-pause and delayed-write for 2×ttl, clock-drift at 0.5, 1.5 or 2.
func Nemesis(kinds []string, interval, runDuration time.Duration, seed int64, env Env) (Schedule, error) {
	if len(kinds) == 0 {
		return nil, fmt.Errorf("nemesis: no fault kinds (valid kinds: %s)", kindNames())
	}
	if interval <= 0 {
		return nil, fmt.Errorf("nemesis: interval %v must be positive, e.g. 10s", interval)
	}
	var set, lock []string
	needNodes := false
	for _, k := range kinds {
		info, ok := kindInfo(strings.TrimSpace(k))
		if !ok {
			return nil, fmt.Errorf("nemesis: unknown fault kind %q (valid kinds: %s)", k, kindNames())
		}
		if info.Class != Client {
			needNodes = true
		}
	}
	if needNodes {
		if env == nil {
			return nil, fmt.Errorf("nemesis: kinds %v need an environment's nodes", kinds)
		}
		for _, n := range lockSet(env) {
			set = append(set, n.Name())
		}
		for _, n := range sortedNodes(env) {
			if !isResource(env, n.Name()) {
				lock = append(lock, n.Name())
			}
		}
		if len(lock) == 0 {
			return nil, fmt.Errorf("nemesis: the environment has no node to fault (nodes: %s)", nodeNames(sortedNodes(env)))
		}
	}

	rng := rand.New(rand.NewPCG(uint64(seed), 0x6e656d65736973)) // "nemesis"
	pickOne := func(from []string) string { return from[rng.IntN(len(from))] }
	// shape picks one node, a minority or a majority of the Redis set.
	shape := func() string {
		n := len(set)
		sizes := []int{1}
		if (n-1)/2 > 1 {
			sizes = append(sizes, (n-1)/2)
		}
		if n >= 3 {
			sizes = append(sizes, n/2+1)
		}
		k := sizes[rng.IntN(len(sizes))]
		perm := rng.Perm(n)[:k]
		sort.Ints(perm) // keep name order
		chosen := make([]string, k)
		for i, p := range perm {
			chosen[i] = set[p]
		}
		return strings.Join(chosen, ",")
	}

	length := interval / 2
	if length <= 0 {
		length = interval
	}
	var out Schedule
	for start := interval; start+length <= runDuration; start += interval {
		kind := strings.TrimSpace(kinds[rng.IntN(len(kinds))])
		s := Spec{Kind: kind, Start: Dur{D: start}, Duration: Dur{D: length}}
		switch kind {
		case "partition", "partition-refuse", "one-way", "kill", "pause":
			s.Target = shape()
			if kind == "one-way" {
				s.Param = pickOne([]string{"up", "down"})
			}
		case "latency":
			s.Target = pickOne(lock)
			lat := time.Duration(50+rng.IntN(251)) * time.Millisecond
			s.Param = lat.String() + "±" + (lat / 4).String()
		case "bandwidth":
			s.Target = pickOne(lock)
			s.Param = fmt.Sprint(8 << rng.IntN(4)) // 8..64 KB/s
		case "reset-peer", "slow-close":
			s.Target = pickOne(lock)
		case "holder-pause", "delayed-write":
			s.Param = "2xttl"
			s.Duration = Dur{}
		case "holder-crash":
			s.Duration = Dur{}
		case "clock-drift":
			s.Param = pickOne([]string{"0.5", "1.5", "2"})
		}
		out = append(out, s)
	}
	return out, nil
}
