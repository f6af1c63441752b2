package checker

import (
	"fmt"
	"sort"
	"strings"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// Fencing checks that the writes a resource accepted carry non-decreasing
// fencing tokens per key: an accepted write with a fence older than one
// accepted before it is a stale-fence violation. Writes the resource
// rejected (write fail, error "fenced") are the mechanism working: they are
// counted in Measures["fenced"], never violations. Writes without a fence
// (0: implementations without fencing) are not judged.
//
// The resource log (resource-write entries in apply order) is the oracle
// when present; otherwise acknowledged writes are ordered by real time (one
// completed before the other was invoked).
func Fencing(h []history.Op, opt Options) results.Verdict {
	return fencingPhase(NewPhase(h), opt)
}

func fencingPhase(p *Phase, opt Options) results.Verdict {
	ops := p.Ops
	windows := p.Windows()
	var fenced, fencedWrites int
	for _, o := range ops {
		if o.F() != "write" {
			continue
		}
		if o.Failed() && strings.Contains(o.Error(), "fenced") {
			fenced++
		}
		if o.InvokeFence() > 0 {
			fencedWrites++
		}
	}
	measures := map[string]float64{"fenced": float64(fenced)}
	var vs []results.Violation
	var accepted int
	log, hasLog := resourceLog(p)
	if hasLog {
		keys := make([]string, 0, len(log))
		for k := range log {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, key := range keys {
			var top ResWrite
			for _, ep := range log[key] {
				e := *ep
				if e.Fence == 0 {
					continue
				}
				accepted++
				if e.Fence < top.Fence {
					w, _ := e.Writer()
					tw, _ := top.Writer()
					v := results.Violation{
						Kind: "stale-fence", Keys: []string{key}, Processes: []int{int(w), int(tw)},
						Tokens: []string{e.Token(), top.Token()}, Time: e.Time, Indexes: []int64{e.Index, top.Index},
						Description: fmt.Sprintf("key %s: the resource accepted p%d's write of %s with fence %d after p%d's write of %s with fence %d",
							key, w, valOf(e.Value()), e.Fence, tw, valOf(top.Value()), top.Fence),
					}
					if f := ActiveFault(windows, e.Time, e.Time); f != "" {
						v.Fault = f
					}
					vs = append(vs, v)
					continue
				}
				top = e
			}
		}
	} else {
		byKey := map[string][]*Operation{} // pointers into ops, not copies
		for i := range ops {
			if o := &ops[i]; o.F() == "write" && o.OK() && o.InvokeFence() > 0 {
				byKey[o.Key()] = append(byKey[o.Key()], o)
				accepted++
			}
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, key := range keys {
			// top: the highest fence among writes completed before b.
			sweepHighest(byKey[key], func(o *Operation) uint64 { return o.InvokeFence() }, func(b, top *Operation) {
				if b.InvokeFence() < top.InvokeFence() {
					v := results.Violation{
						Kind: "stale-fence", Keys: []string{key}, Processes: []int{int(b.Process), int(top.Process)},
						Tokens: []string{b.InvokeToken(), top.InvokeToken()}, Time: b.Invoke.Time,
						Indexes: append(b.Indexes(), top.Indexes()...),
						Description: fmt.Sprintf("key %s: p%d's write with fence %d was accepted at %s after p%d's write with fence %d had been accepted at %s",
							key, b.Process, b.InvokeFence(), secs(b.Complete.Time), top.Process, top.InvokeFence(), secs(top.Complete.Time)),
					}
					if f := ActiveFault(windows, b.Invoke.Time, b.Complete.Time); f != "" {
						v.Fault = f
					}
					vs = append(vs, v)
				}
			})
		}
	}
	measures["accepted_fenced_writes"] = float64(accepted)
	measures["stale_accepted"] = float64(len(vs))
	summary := fmt.Sprintf("%d fenced writes accepted, %d rejected as fenced, %d stale accepted", accepted, fenced, len(vs))
	if accepted == 0 && fencedWrites == 0 && fenced == 0 {
		summary = "no fencing tokens in this history (the implementation has none)"
	}
	return verdict(FencingName, opt, vs, false, summary, measures)
}
