package checker

import (
	"fmt"
	"iter"
	"sort"
	"strconv"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// LostAckWriteName is the lost-acknowledged-write checker's name.
const LostAckWriteName = "lost-ack-write"

// FailoverKind is the fault kind of a failover (the primary lost, a
// replica promoted); its start event carries the Attrs below.
const FailoverKind = "failover"

// Attrs of a failover's start event (the event's time is when the primary
// was lost: killed, or the failover forced).
const (
	AttrOldPrimary = "old"         // the primary lost
	AttrNewPrimary = "new"         // the node promoted
	AttrPromoted   = "promoted_ns" // history time the new primary was seen promoted
	AttrHeld       = "held"        // the holder kept across a lossy failover (chaos.AttrHeld)
)

// Failovers lists the failovers of h (fault windows of kind failover), each
// with when its primary was lost, when infra saw the new primary promoted,
// and the first write (an acquire, or a bank transfer, that succeeded) invoked after the loss
// and completed once the new primary was promoted (earlier ones reached the
// old primary before it was really gone): the client-visible failover time
// runs from the loss to that write's completion. Probes are not writes of the workload and do not count.
func Failovers(h []history.Op) []results.Failover { return FailoversOf(NewPhase(h)) }

// FailoversOf is Failovers of a Phase.
func FailoversOf(p *Phase) []results.Failover {
	return failovers(p.Events, func(yield func(invoke, complete int64) bool) {
		for i := range p.Ops {
			o := &p.Ops[i]
			if (o.F() != "acquire" && o.F() != "transfer") || !o.OK() || isProbe(*o) {
				continue
			}
			if !yield(o.Invoke.Time, o.Complete.Time) {
				return
			}
		}
	})
}

// failovers is Failovers of the fault events and the writes (acquires or
// transfers that succeeded, no probes: invocation and completion times)
// of a phase.
func failovers(events []history.Op, writes iter.Seq2[int64, int64]) []results.Failover {
	var out []results.Failover
	for _, w := range history.Windows(events) {
		if w.Kind != FailoverKind {
			continue
		}
		f := results.Failover{ID: w.ID, Fault: w.Fault, Impl: w.Impl, Old: w.Attrs[AttrOldPrimary], New: w.Attrs[AttrNewPrimary], Lost: w.Start, End: w.End, Held: w.Attrs[AttrHeld]}
		if p, err := strconv.ParseInt(w.Attrs[AttrPromoted], 10, 64); err == nil && p >= w.Start {
			f.Promoted = p
			f.PromotionMs = float64(p-w.Start) / 1e6
		}
		first := int64(-1)
		for invoke, complete := range writes {
			if invoke < w.Start {
				continue
			}
			if f.Promoted > 0 && complete < f.Promoted {
				continue // the old primary, still dying (a container kill takes a moment): not the new one
			}
			if first < 0 || complete < first {
				first = complete
			}
		}
		if first >= 0 {
			f.FirstWrite = first
			f.FailoverMs = float64(first-w.Start) / 1e6
		}
		out = append(out, f)
	}
	return out
}

func isProbe(o Operation) bool {
	return o.InvokeAttr("probe") != "" || o.CompleteAttr("probe") != ""
}

// LostAckWrite counts acknowledged writes a failover lost: a lock the
// replicated store acknowledged (an acquire that succeeded) before the
// primary was lost, still held then (its holder had not asked to release
// it, and its lease could not have expired), that the store no longer had
// afterwards while it still could not have expired. Missing is observed,
// never assumed: after the loss and before the lease's earliest expiry
// (the acquire's invocation + ttl: the server counts the ttl from when the
// SET arrived, which is later),
//
//   - another process acquired the key (it was free on the new primary), or
//   - the holder's own release or refresh failed definitely (not held),
//
// and the holder had not invoked a release before. Such a lease is a lost
// acknowledged write (Invalid, one violation each, naming both processes).
// A lease the holder later released or refreshed fine survived; one nobody
// looked at in time is unobserved. With no failover in the history, or no
// acknowledged lease live at any failover, nothing was at stake: Unknown
// (untested), never Valid; so is a run where no lease at stake was looked
// at in time (unobserved).
//
// Measures: failovers, at_stake, lost, kept, unobserved.
func LostAckWrite(h []history.Op, opt Options) results.Verdict {
	return lostAckWritePhase(NewPhase(h), opt)
}

func lostAckWritePhase(p *Phase, opt Options) results.Verdict {
	ops := p.Ops
	var fws []history.Window
	for _, w := range history.Windows(p.Events) {
		if w.Kind == FailoverKind {
			fws = append(fws, w)
		}
	}
	if len(fws) == 0 {
		return verdict(LostAckWriteName, opt, nil, true, "no failover in the history: nothing to judge (untested)", map[string]float64{"failovers": 0})
	}
	// Per process, its operations in order (a lease's later release).
	// Pointers into ops: a copy of each would double the phase.
	byProc := map[int32][]*Operation{}
	for i := range ops {
		o := &ops[i]
		byProc[o.Process] = append(byProc[o.Process], o)
	}
	ttl := int64(opt.TTL)
	expiry := func(a Operation) int64 {
		if ttl <= 0 {
			return Never
		}
		return a.Invoke.Time + ttl
	}
	var vs []results.Violation
	var atStake, lost, kept int
	counted := map[int64]bool{} // acquire invocation index → already judged
	for _, w := range fws {
		for p, mine := range byProc {
			for i, ap := range mine {
				a := *ap
				if a.F() != "acquire" || !a.OK() || isProbe(a) || a.Complete.Time > w.Start || counted[a.Invoke.Index] {
					continue
				}
				exp := expiry(a)
				if exp <= w.Start {
					continue // expired before the failover
				}
				// The holder's next operations on the key, up to its next acquire.
				released := Never // when the holder asked to release
				var own []Operation
				for _, op := range mine[i+1:] {
					o := *op
					if o.F() == "acquire" {
						break
					}
					if o.Key() != a.Key() || (o.F() != "release" && o.F() != "refresh") {
						continue
					}
					own = append(own, o)
					if o.F() == "release" && released == Never {
						released = o.Invoke.Time
					}
				}
				if released <= w.Start {
					continue // let go before the primary was lost
				}
				atStake++
				counted[a.Invoke.Index] = true
				limit := min(exp, released)
				var witness *Operation
				why := ""
				for _, o := range ops {
					if o.Process == p || o.Key() != a.Key() || o.F() != "acquire" || !o.OK() || isProbe(o) {
						continue
					}
					if o.Complete.Time > w.Start && o.Complete.Time < limit && (witness == nil || o.Complete.Time < witness.Complete.Time) {
						o := o
						witness, why = &o, fmt.Sprintf("p%d acquired %s at %s", o.Process, a.Key(), secs(o.Complete.Time))
					}
				}
				survived := false
				for _, o := range own {
					if o.Complete.Time <= w.Start || o.Complete.Time >= exp {
						continue
					}
					if o.Failed() && (witness == nil || o.Complete.Time < witness.Complete.Time) {
						o := o
						witness, why = &o, fmt.Sprintf("its own %s at %s found the key not held (%s)", o.F(), secs(o.Complete.Time), o.Error())
					}
					survived = survived || o.OK()
				}
				if witness == nil {
					if survived {
						kept++
					}
					continue
				}
				lost++
				v := results.Violation{
					Kind: "lost-ack-write", Keys: []string{a.Key()}, Processes: []int{int(p)}, Tokens: []string{a.CompleteToken()},
					Time: witness.Complete.Time, Fault: windowName(Window{Fault: w.Fault, Kind: w.Kind}),
					Indexes: append(append([]int64{w.StartIndex}, a.Indexes()...), witness.Indexes()...),
					Description: fmt.Sprintf("p%d's lock on %s, acknowledged at %s, still held when the primary %s was lost at %s, was gone from the new primary %s while it could not have expired (earliest expiry %s): %s",
						p, a.Key(), secs(a.Complete.Time), orUnknown(w.Attrs[AttrOldPrimary]), secs(w.Start), orUnknown(w.Attrs[AttrNewPrimary]), secs(exp), why),
				}
				if witness.Process != p {
					v.Processes = append(v.Processes, int(witness.Process))
				}
				vs = append(vs, v)
			}
		}
	}
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].Time < vs[j].Time })
	unobserved := atStake - lost - kept
	summary := fmt.Sprintf("%d failover(s); %d acknowledged lock(s) held when the primary was lost: %d lost, %d seen kept, %d not observed before their expiry",
		len(fws), atStake, lost, kept, unobserved)
	switch {
	case atStake == 0:
		summary += " (untested: no acknowledged lock was at stake)"
	case lost+kept == 0:
		summary += " (unobserved: nobody looked at those keys while they could not have expired)"
	}
	return verdict(LostAckWriteName, opt, vs, lost+kept == 0, summary, map[string]float64{
		"failovers": float64(len(fws)), "at_stake": float64(atStake), "lost": float64(lost), "kept": float64(kept), "unobserved": float64(unobserved),
	})
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
