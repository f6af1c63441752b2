package checker

import (
	"fmt"
	"sort"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// FenceOrderName is the fence-order checker's name.
const FenceOrderName = "fence-order"

// FenceOrder judges the fencing tokens the lock handed out, where Fencing
// judges only the writes a resource accepted. Two properties:
//
//   - fence-regression: per key, an acquisition that completed before
//     another was invoked (so the lock granted it first) must carry a
//     strictly smaller fence. A fence that does not grow is a violation
//     naming the key, both acquisitions and their fences. Acquisitions of
//     the same lease (same token: a re-entrant acquire) are one.
//   - fenced-in-lease: a write the resource rejected as fenced (write
//     fail, error "fenced") must be explained by another holder that
//     overtook the writer: an acquisition of the key by another process
//     that completed after the writer's lease could have run out (its
//     acquire's invocation + ttl: the grant came after the invocation, and
//     a lease lock grants nobody else before the lease ends) and before the
//     write completed. A rejection with no such holder and no fault active
//     means the lock gave the writer a fence older than one already used:
//     the fencing is broken, and a correct write was lost. A rejection
//     while any fault was active is counted, not judged; without a ttl any
//     acquisition after the writer's acquire invocation explains it.
//
// Indeterminate acquisitions carry no known fence and are not compared,
// and never explain a rejection (only a holder that read registers its
// fence at the resource).
func FenceOrder(h []history.Op, opt Options) results.Verdict {
	return fenceOrderPhase(NewPhase(h), opt)
}

func fenceOrderPhase(p *Phase, opt Options) results.Verdict {
	ops := p.Ops
	windows := p.Windows()
	var vs []results.Violation
	fenced := 0
	for _, o := range ops {
		if o.F() == "acquire" && o.OK() && o.CompleteFence() > 0 {
			fenced++
		}
	}
	regressions := fenceRegressions(ops, windows)
	vs = append(vs, regressions...)
	rej := fencedInLease(ops, windows, opt)
	vs = append(vs, rej.violations...)
	// Both kinds in time order, so the stored counterexamples show both.
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].Time < vs[j].Time })
	measures := map[string]float64{
		"fenced_acquisitions":   float64(fenced),
		"regressions":           float64(len(regressions)),
		"rejected_writes":       float64(rej.rejected),
		"rejected_overtaken":    float64(rej.overtaken),
		"rejected_during_fault": float64(rej.duringFault),
		"rejected_in_lease":     float64(len(rej.violations)),
	}
	if fenced == 0 && rej.rejected == 0 {
		return verdict(FenceOrderName, opt, nil, false, "no fencing tokens in this history (the implementation has none)", measures)
	}
	summary := fmt.Sprintf("%d acquisitions with a fence, %d fence regressions; %d writes rejected as fenced: %d overtaken by another holder, %d while a fault was active, %d inside an uncontested lease",
		fenced, len(regressions), rej.rejected, rej.overtaken, rej.duringFault, len(rej.violations))
	return verdict(FenceOrderName, opt, vs, false, summary, measures)
}

// fenceRegressions compares, per key, each acquisition's fence with the
// highest fence of the acquisitions that completed before it was invoked.
func fenceRegressions(ops []Operation, windows []Window) []results.Violation {
	byKey := map[string][]*Operation{} // pointers into ops, not copies
	for i := range ops {
		if o := &ops[i]; o.F() == "acquire" && o.OK() && o.CompleteFence() > 0 {
			byKey[o.Key()] = append(byKey[o.Key()], o)
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var vs []results.Violation
	for _, key := range keys {
		// top: the highest fence among acquisitions completed before b.
		sweepHighest(byKey[key], func(o *Operation) uint64 { return o.CompleteFence() }, func(b, top *Operation) {
			if top.CompleteFence() == 0 || b.CompleteFence() > top.CompleteFence() || b.CompleteToken() == top.CompleteToken() {
				return
			}
			v := results.Violation{
				Kind: "fence-regression", Keys: []string{key}, Processes: []int{int(top.Process), int(b.Process)},
				Tokens: []string{top.CompleteToken(), b.CompleteToken()}, Time: b.Complete.Time,
				Indexes: append(top.Indexes(), b.Indexes()...),
				Description: fmt.Sprintf("key %s: p%d acquired it with fence %d (token %s, granted at %s); p%d's later acquisition (token %s, invoked at %s, granted at %s) got fence %d, not more than %d",
					key, top.Process, top.CompleteFence(), top.CompleteToken(), secs(top.Complete.Time),
					b.Process, b.CompleteToken(), secs(b.Invoke.Time), secs(b.Complete.Time), b.CompleteFence(), top.CompleteFence()),
			}
			if f := ActiveFault(windows, top.Complete.Time, b.Complete.Time); f != "" {
				v.Fault = f
				v.Description += " (fault active: " + f + ")"
			}
			vs = append(vs, v)
		})
	}
	return vs
}

type rejections struct {
	rejected, overtaken, duringFault int
	violations                       []results.Violation
}

// fencedInLease judges every write the resource rejected as fenced.
func fencedInLease(ops []Operation, windows []Window, opt Options) rejections {
	var r rejections
	var acqByKey map[string][]*Operation // built on the first rejection that needs it
	lease := map[int32]*Operation{}      // process → its last acquire ok
	for i := range ops {
		o := &ops[i]
		switch {
		case o.F() == "acquire":
			if o.OK() {
				lease[o.Process] = o
			} else {
				delete(lease, o.Process)
			}
			continue
		case o.F() != "write" || !o.Failed() || o.Error() != "fenced":
			continue
		}
		r.rejected++
		a, ok := lease[o.Process]
		if !ok || a.Key() != o.Key() {
			continue // no lease to judge against: not judged
		}
		from, to := a.Invoke.Time, o.Complete.Time
		if f := ActiveFault(windows, from, to); f != "" {
			r.duringFault++
			continue
		}
		// A correct lease lock grants another holder only after the
		// writer's lease ran out: not before its acquire's invocation +
		// ttl (the grant came after the invocation).
		earliest := from
		if opt.TTL > 0 {
			earliest += int64(opt.TTL - opt.TTL/20)
		}
		if acqByKey == nil {
			acqByKey = map[string][]*Operation{}
			for i := range ops {
				if x := &ops[i]; x.F() == "acquire" && x.OK() {
					acqByKey[x.Key()] = append(acqByKey[x.Key()], x)
				}
			}
		}
		overtaken := false
		for _, x := range acqByKey[o.Key()] {
			if x.Process != o.Process && x.Complete.Time >= earliest && x.Complete.Time <= to {
				overtaken = true
				break
			}
		}
		if overtaken {
			r.overtaken++
			continue
		}
		fence := o.InvokeFence()
		if fence == 0 {
			fence = a.CompleteFence()
		}
		r.violations = append(r.violations, results.Violation{
			Kind: "fenced-in-lease", Keys: []string{o.Key()}, Processes: []int{int(o.Process)},
			Tokens: nonEmpty(a.CompleteToken()), Time: o.Complete.Time, Indexes: append(a.Indexes(), o.Indexes()...),
			Description: fmt.Sprintf("key %s: p%d acquired it at %s with fence %d (token %s) and its write was rejected as fenced at %s, "+
				"though no other process held the key in between and no fault was active: the lock handed out a fence older than one the resource had already seen",
				o.Key(), o.Process, secs(a.Complete.Time), fence, a.CompleteToken(), secs(o.Complete.Time)),
		})
	}
	return r
}
