package checker

import (
	"fmt"
	"sort"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// Liveness checks that a crashed holder's key is freed by its lease: after
// each holder-crash event (a nemesis fault-start with Attrs kind
// "holder-crash", Attrs process and Key naming the dead holder), another
// process must be able to acquire the key within ttl + slack of the crash.
//
// Recovery time is the time from the crash to the first acquire ok on the
// key by another process (Measures recovery_ms_p50, recovery_ms_max). The
// key was stuck — violation "liveness" — when another process was trying
// to acquire it past the deadline and could not: an acquire pending at the
// deadline that succeeded only later, or an acquire that failed after the
// deadline, before any recovery. A key nobody tried again, or a run that
// ended before the deadline, makes the verdict Unknown, not Invalid.
func Liveness(h []history.Op, opt Options) results.Verdict {
	return livenessPhase(NewPhase(h), opt)
}

func livenessPhase(p *Phase, opt Options) results.Verdict {
	var crashes []Window
	for _, w := range p.Windows() {
		if w.Kind == "holder-crash" {
			crashes = append(crashes, w)
		}
	}
	if len(crashes) == 0 {
		return verdict(LivenessName, opt, nil, false, "no holder crash in this history", nil)
	}
	if opt.TTL <= 0 {
		return verdict(LivenessName, opt, nil, true, "holder crashes recorded but no ttl given to bound recovery", nil)
	}
	bound := int64(opt.TTL + opt.slack())
	runEnd := p.End
	acquires := map[string][]*Operation{} // pointers into the phase, not copies
	for i := range p.Ops {
		if o := &p.Ops[i]; o.F() == "acquire" {
			acquires[o.Key()] = append(acquires[o.Key()], o)
		}
	}

	var vs []results.Violation
	var recovery []float64
	var unknown []string
	for _, c := range crashes {
		deadline := c.Start + bound
		// First acquisition by another process after the crash.
		var rec *Operation
		recovered := false
		for _, a := range acquires[c.Key] {
			if int(a.Process) != c.Process && a.OK() && a.Complete.Time > c.Start &&
				(!recovered || a.Complete.Time < rec.Complete.Time) {
				rec, recovered = a, true
			}
		}
		recEnd := Never
		if recovered {
			recEnd = rec.Complete.Time
			recovery = append(recovery, float64(recEnd-c.Start)/1e6)
		}
		// Evidence that the key was stuck past the deadline.
		var stuck *Operation
		tried := false
		for _, a := range acquires[c.Key] {
			if int(a.Process) == c.Process || a.Indeterminate() {
				continue
			}
			end := a.Complete.Time
			if end > deadline && a.Invoke.Time <= recEnd {
				tried = true
			}
			// Only a key not recovered by the deadline was stuck: an acquire
			// pending at the deadline after an earlier recovery is contention.
			pendingAtDeadline := recEnd > deadline && a.OK() && a.Invoke.Time <= deadline && end > deadline
			failedLate := a.Failed() && end > deadline && end <= recEnd
			if (pendingAtDeadline || failedLate) && stuck == nil {
				stuck = a
			}
		}
		switch {
		case stuck != nil:
			desc := fmt.Sprintf("p%d crashed holding key %s at %s (fault %s); ttl+slack allowed until %s, but p%d's acquire invoked at %s ",
				c.Process, c.Key, secs(c.Start), c.Fault, secs(deadline), stuck.Process, secs(stuck.Invoke.Time))
			if stuck.OK() {
				desc += "succeeded only at " + secs(stuck.Complete.Time)
			} else {
				desc += "failed at " + secs(stuck.Complete.Time) + " (" + stuck.Error() + ")"
			}
			if recovered {
				desc += fmt.Sprintf("; recovered after %.0f ms", float64(recEnd-c.Start)/1e6)
			} else {
				desc += "; never recovered before the run ended at " + secs(runEnd)
			}
			vs = append(vs, results.Violation{
				Kind: "liveness", Processes: []int{c.Process, int(stuck.Process)}, Keys: []string{c.Key},
				Time: c.Start, Fault: c.Fault, Indexes: append([]int64{c.StartIndex}, stuck.Indexes()...),
				Description: desc,
			})
		case !recovered && runEnd < deadline:
			unknown = append(unknown, fmt.Sprintf("the run ended %s after p%d's crash on %s, before ttl+slack", secs(runEnd-c.Start), c.Process, c.Key))
		case !recovered && !tried:
			unknown = append(unknown, fmt.Sprintf("nobody tried key %s after p%d's crash", c.Key, c.Process))
		}
	}
	sort.Float64s(recovery)
	measures := map[string]float64{"crashes": float64(len(crashes)), "recovered": float64(len(recovery))}
	if len(recovery) > 0 {
		measures["recovery_ms_p50"] = results.Percentile(recovery, 50)
		measures["recovery_ms_max"] = recovery[len(recovery)-1]
	}
	summary := fmt.Sprintf("%d holder crashes, %d recovered (bound ttl+slack = %v)", len(crashes), len(recovery), opt.TTL+opt.slack())
	if len(recovery) > 0 {
		summary += fmt.Sprintf(", recovery p50 %.0f ms, max %.0f ms", measures["recovery_ms_p50"], measures["recovery_ms_max"])
	}
	if len(unknown) > 0 {
		summary += "; cannot tell: " + unknown[0]
	}
	return verdict(LivenessName, opt, vs, len(unknown) > 0, summary, measures)
}
