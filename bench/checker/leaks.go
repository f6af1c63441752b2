package checker

import (
	"fmt"
	"sort"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// LeakedLocks judges the final lock state the workload dumps after the
// quiet period: one process -2 entry per key with F "lock-state", Key, and
// Attrs "pttl" (Redis PTTL in ms: -2 absent, -1 held with no expiry, n > 0
// still held for n ms), or Attrs "held" "true"/"false" where there is no
// TTL (PostgreSQL), plus Attrs "live" "true" when a live worker still holds
// it legitimately. A key still held with no live holder is a leak; PTTL -1
// is the worst case: it never expires (the SETNX-then-EXPIRE crash case).
//
// The final probe is the implementation-agnostic form: after the quiet
// period a fresh process TryAcquires every key once (acquire ops with
// Attrs "probe" "final"); a probe that fails not-acquired found the key
// still held by nobody alive — a leak. An indeterminate probe makes the
// verdict Unknown, unless a later probe of the same key and kind (the
// workload retries one a ttl later) has a definite outcome: the last
// probe of a key decides.
//
// The live probe (Attrs "probe" "live") is the same probe run earlier,
// after the quiet period but while the workers' lock clients are still
// open: a key it cannot acquire is held by a live session that no worker
// uses any more (violation kind "leak-live": a session lock released on
// another pooled connection, say), which the final probe, run after the
// clients closed, cannot see.
//
// Without any lock-state entry or probe the verdict is Unknown.
func LeakedLocks(h []history.Op, opt Options) results.Verdict {
	return leakedLocksPhase(NewPhase(h), opt)
}

func leakedLocksPhase(p *Phase, opt Options) results.Verdict {
	var states []history.Op
	for _, op := range p.Events {
		if op.Process == history.Resource && op.F == LockState {
			states = append(states, op)
		}
	}
	var probes []Operation
	for _, o := range p.Ops {
		if p := o.InvokeAttr("probe"); o.F() == "acquire" && (p == "final" || p == "live") {
			probes = append(probes, o)
		}
	}
	if len(states) == 0 && len(probes) == 0 {
		return verdict(LeakedLocksName, opt, nil, true, "the workload recorded no final lock state and no final probe", nil)
	}
	sort.SliceStable(states, func(i, j int) bool { return states[i].Key < states[j].Key })
	var vs []results.Violation
	forever := 0
	for _, s := range states {
		pttl, hasPTTL := attrInt(s, "pttl")
		held := false
		switch s.Attrs["held"] {
		case "true":
			held = true
		case "false":
		default:
			held = hasPTTL && pttl != -2
		}
		if !held || s.Attrs["live"] == "true" {
			continue
		}
		v := results.Violation{Kind: "leak", Keys: []string{s.Key}, Time: s.Time, Indexes: []int64{s.Index}, Tokens: nonEmpty(s.Token)}
		switch {
		case hasPTTL && pttl == -1:
			forever++
			v.Description = fmt.Sprintf("key %s is held with no expiry (PTTL -1) after the quiet period and no live holder: it never frees (a holder died between SETNX and EXPIRE)", s.Key)
		case hasPTTL:
			v.Description = fmt.Sprintf("key %s is still held after the quiet period with no live holder (expires in %d ms)", s.Key, pttl)
		default:
			v.Description = fmt.Sprintf("key %s is still held after the quiet period with no live holder", s.Key)
		}
		if s.Token != "" {
			v.Description += ", owner token " + s.Token
		}
		vs = append(vs, v)
	}
	// A key's probe of one kind may be retried after an indeterminate
	// one (the workload tries again a ttl later): its last probe decides.
	last := map[[2]string]int{}
	for i, p := range probes {
		last[[2]string{p.InvokeAttr("probe"), p.Key()}] = i
	}
	kept := probes[:0:0]
	for i, p := range probes {
		if !p.Indeterminate() || last[[2]string{p.InvokeAttr("probe"), p.Key()}] == i {
			kept = append(kept, p)
		}
	}
	probes = kept
	indeterminate := 0
	finalHeld := map[string]bool{} // keys the final probe found held: reported as plain leaks
	for _, p := range probes {
		if p.InvokeAttr("probe") == "final" && p.Failed() {
			finalHeld[p.Key()] = true
		}
	}
	live := 0
	for _, p := range probes {
		switch {
		case p.InvokeAttr("probe") == "live" && p.Failed() && finalHeld[p.Key()]:
			// still held after the close too: the final probe reports it
		case p.Failed() && p.InvokeAttr("probe") == "live":
			live++
			vs = append(vs, results.Violation{
				Kind: "leak-live", Keys: []string{p.Key()}, Processes: []int{int(p.Process)}, Time: p.Invoke.Time, Indexes: p.Indexes(),
				Description: fmt.Sprintf("key %s is still held after the quiet period while the workers' lock clients are open but idle: the live probe (p%d) could not acquire it (%s) — a lock leaked on a live session, freed only when its client closes",
					p.Key(), p.Process, p.Error()),
			})
		case p.Failed():
			vs = append(vs, results.Violation{
				Kind: "leak", Keys: []string{p.Key()}, Processes: []int{int(p.Process)}, Time: p.Invoke.Time, Indexes: p.Indexes(),
				Description: fmt.Sprintf("key %s is still held after the quiet period: the final probe (p%d) could not acquire it (%s) though no worker runs any more",
					p.Key(), p.Process, p.Error()),
			})
		case p.Indeterminate():
			indeterminate++
		}
	}
	summary := fmt.Sprintf("%d keys checked after the quiet period (%d lock states, %d probes), %d leaked (%d never expire)",
		len(states)+len(probes), len(states), len(probes), len(vs), forever)
	if live > 0 {
		summary += fmt.Sprintf("; %d held by a live idle session", live)
	}
	if indeterminate > 0 {
		summary += fmt.Sprintf("; %d probes indeterminate", indeterminate)
	}
	return verdict(LeakedLocksName, opt, vs, indeterminate > 0, summary, map[string]float64{
		"keys": float64(len(states) + len(probes)), "leaked": float64(len(vs)), "leaked_forever": float64(forever), "leaked_live": float64(live),
	})
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
