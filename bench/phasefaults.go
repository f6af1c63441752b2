package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/infra"
)

// PhaseSchedule is the fault schedule of impl's phase: the scripted faults
// (cfg.Faults, the same for every phase, as the user aimed them) and, with
// --nemesis, a random schedule drawn among the nodes impl uses (its Redis
// and PostgreSQL servers, and the resource link where the workload has
// one), from the run seed and impl's name: reproducible, and different for
// each implementation. It starts nothing and needs no environment.
func PhaseSchedule(cfg Config, wl workload.Workload, impl string) (chaos.Schedule, error) {
	sched, err := chaos.ParseSchedule(cfg.Faults)
	if err != nil {
		return nil, err
	}
	if len(cfg.Nemesis) == 0 {
		return sched, nil
	}
	nodes, err := workload.PhaseNodesOn(wl, impl, infra.Topology(cfg.Topology))
	if err != nil {
		return nil, err
	}
	nem, err := chaos.Nemesis(chaos.NemesisOptions{
		Kinds: cfg.Nemesis, Interval: cfg.NemesisInterval, Duration: cfg.Duration,
		Seed: cfg.Seed, Salt: impl, Nodes: nodes.Impl, Resource: nodes.Resource, TTL: cfg.TTL,
	})
	if err != nil {
		return nil, err
	}
	return append(sched, nem...), nil
}

// Coverage says what the faults of one implementation's phase did to it:
// how many fault windows hit each of its nodes, how many of its operations
// were in flight during a window that counts (one on its nodes, or a client
// fault, which hits its workers), and, when nothing counts, why the phase
// is untested under faults. It is nil when the phase had no fault
// scheduled (a plain benchmark). windows and ops are the implementation's
// own (Impl == impl).
func Coverage(nodes workload.PhaseNodes, scheduled int, windows []results.FaultWindow, ops []history.Op) *results.FaultCoverage {
	return coverage(nodes, scheduled, windows, func(counted []results.FaultWindow) int { return opsDuring(counted, ops) })
}

// CoverageOf is Coverage of a phase read as a checker.Phase.
func CoverageOf(nodes workload.PhaseNodes, scheduled int, windows []results.FaultWindow, p *checker.Phase) *results.FaultCoverage {
	return coverage(nodes, scheduled, windows, func(counted []results.FaultWindow) int {
		n := 0
		for i := range p.Ops {
			o := &p.Ops[i]
			to := int64(math.MaxInt64)
			if o.Completed() {
				to = o.Complete.Time
			}
			for _, w := range counted {
				if o.Invoke.Time <= w.End && to >= w.Start {
					n++
					break
				}
			}
		}
		return n
	})
}

// CoverageSpans is Coverage of a phase's completed operations given as
// spans (a checker.BankBuilder's: what opsDuring pairs).
func CoverageSpans(nodes workload.PhaseNodes, scheduled int, windows []results.FaultWindow, spans []checker.Span) *results.FaultCoverage {
	return coverage(nodes, scheduled, windows, func(counted []results.FaultWindow) int {
		n := 0
		for _, s := range spans {
			for _, w := range counted {
				if s.From <= w.End && s.To >= w.Start {
					n++
					break
				}
			}
		}
		return n
	})
}

// coverage is Coverage, with opsInside counting the operations in flight
// during the windows that count.
func coverage(nodes workload.PhaseNodes, scheduled int, windows []results.FaultWindow, opsInside func([]results.FaultWindow) int) *results.FaultCoverage {
	if scheduled == 0 {
		return nil
	}
	own := nodes.All()
	cov := &results.FaultCoverage{Nodes: own, PerNode: map[string]int{}}
	for _, n := range own {
		cov.PerNode[n] = 0
	}
	var counted []results.FaultWindow
	var elsewhere []string
	client := 0
	for _, w := range windows {
		hit := false
		for _, n := range w.Nodes {
			if slices.Contains(own, n) {
				cov.PerNode[n]++
				hit = true
			} else if !slices.Contains(elsewhere, n) {
				elsewhere = append(elsewhere, n)
			}
		}
		if len(w.Nodes) == 0 {
			client++
			hit = true
		}
		if hit {
			counted = append(counted, w)
		}
	}
	cov.OpsInside = opsInside(counted)
	switch {
	case len(counted) == 0 && len(elsewhere) > 0:
		cov.Untested = fmt.Sprintf("no fault hit its nodes (%s); %d fault(s) hit only %s, which it does not use",
			strings.Join(own, ", "), len(windows), strings.Join(elsewhere, ", "))
	case len(counted) == 0:
		cov.Untested = fmt.Sprintf("none of its %d scheduled fault(s) took effect on its nodes (%s)", scheduled, strings.Join(own, ", "))
	case cov.OpsInside == 0 && client == 0:
		cov.Untested = "no operation ran inside its fault windows"
	}
	return cov
}

// opsDuring counts the operations of ops in flight during any of windows:
// invoked before a window ended and completed (ok, fail or info) after it
// started, or never completed. A transfer that hangs through a whole
// partition was invoked before it, and the fault tested it all the same.
func opsDuring(windows []results.FaultWindow, ops []history.Op) int {
	type key struct {
		process int
		f       string
	}
	overlaps := func(from, to int64) bool {
		for _, w := range windows {
			if from <= w.End && to >= w.Start {
				return true
			}
		}
		return false
	}
	open := map[key]int64{}
	n := 0
	for _, op := range ops {
		if op.Process < 0 {
			continue
		}
		k := key{op.Process, op.F}
		if op.Type == history.Invoke {
			open[k] = op.Time
			continue
		}
		if at, ok := open[k]; ok {
			delete(open, k)
			if overlaps(at, op.Time) {
				n++
			}
		}
	}
	for _, at := range open {
		if overlaps(at, math.MaxInt64) {
			n++
		}
	}
	return n
}
