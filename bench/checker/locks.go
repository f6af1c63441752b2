package checker

import (
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// Options tune the lock checkers.
type Options struct {
	// TTL is the lock lease the workload used (liveness bound).
	TTL time.Duration
	// Slack is how long past the ttl a crashed holder's key may stay
	// blocked (retry back-off, clock rates); 0 = max(ttl/2, 200ms).
	Slack time.Duration
	// Impl names the implementation in the verdicts; Locks sets it per
	// implementation.
	Impl string
	// MaxViolations caps the counterexamples kept per verdict (0 = 20);
	// Measures still count them all.
	MaxViolations int
}

func (o Options) slack() time.Duration {
	if o.Slack > 0 {
		return o.Slack
	}
	return max(o.TTL/2, 200*time.Millisecond)
}

func (o Options) maxViolations() int {
	if o.MaxViolations > 0 {
		return o.MaxViolations
	}
	return 20
}

// Lock checker names (results.Verdict.Checker).
const (
	MutualExclusionName = "mutual-exclusion"
	LostUpdateName      = "lost-update"
	FencingName         = "fencing"
	LivenessName        = "liveness"
	LeakedLocksName     = "leaked-locks"
)

// Locks runs every lock checker on h, per implementation (Op.Impl), in
// sorted implementation order: mutual-exclusion, lost-update, fencing,
// fence-order, liveness, leaked-locks, availability, and lost-ack-write
// when the history has a failover.
func Locks(h []history.Op, opt Options) []results.Verdict {
	impls, groups := ByImpl(Indexed(h))
	var out []results.Verdict
	for _, impl := range impls {
		o := opt
		o.Impl = impl
		out = append(out, LocksOf(NewPhase(groups[impl]), o)...)
	}
	return out
}

// LocksOf runs every lock checker on one implementation's Phase (Locks
// builds it from a history; the runner streams it from the file), named
// opt.Impl.
func LocksOf(p *Phase, opt Options) []results.Verdict {
	out := []results.Verdict{
		mutualExclusionPhase(p, opt),
		lostUpdatePhase(p, opt),
		fencingPhase(p, opt),
		fenceOrderPhase(p, opt),
		livenessPhase(p, opt),
		leakedLocksPhase(p, opt),
		availabilityPhase(p, opt),
	}
	if hasFailover(p.Events) {
		out = append(out, lostAckWritePhase(p, opt))
	}
	return out
}

// verdict builds a verdict from its violations: Invalid if any, else
// Unknown if unknown, else Valid; it keeps at most opt.maxViolations().
func verdict(name string, opt Options, vs []results.Violation, unknown bool, summary string, measures map[string]float64) results.Verdict {
	v := results.Verdict{Checker: name, Impl: opt.Impl, Valid: results.Valid, Summary: summary, Measures: measures}
	switch {
	case len(vs) > 0:
		v.Valid = results.Invalid
	case unknown:
		v.Valid = results.Unknown
	}
	v.Count = len(vs)
	if len(vs) > opt.maxViolations() {
		vs = vs[:opt.maxViolations()]
	}
	v.Violations = vs
	return v
}

// hasFailover says whether h records a failover (the lost-ack-write
// checker judges only those).
func hasFailover(h []history.Op) bool {
	for _, op := range h {
		if op.Process == history.Nemesis && op.F == history.FaultStart && op.Attrs["kind"] == FailoverKind && op.Error == "" {
			return true
		}
	}
	return false
}
