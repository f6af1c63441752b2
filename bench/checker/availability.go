package checker

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// AvailabilityName is the availability checker's name.
const AvailabilityName = "availability"

// Attrs the lock workload puts on an acquire that did not succeed.
const (
	AttrTimeoutMs = "timeout_ms" // the acquire timeout it was given, ms
	AttrTry       = "try"        // "true": a single TryAcquire, never waits
)

// Availability judges whether acquires got the lock, from the history
// alone. It looks at every acquire except the final probes and asks, of
// each that did not succeed (failed, or timed out: indeterminate), whether
// the lock service was working while it waited:
//
//   - served: another acquire of the key succeeded meanwhile — that is
//     contention, not unavailability (outside fault windows, "meanwhile"
//     extends to the acquire's full timeout, so one fast error on a loaded
//     machine is not called unavailability when the next attempt works;
//     inside one, only successes in the window's interior count, 20 ms
//     from its start and its heal);
//   - blocked: holders held the key for most of the wait — the key was
//     free for less than half of it outside fault windows, less than a
//     quarter of it (or half a ttl) inside one. A hold runs from the
//     holder's acquire to its release, within its lease; outside fault
//     windows, when its release failed, until the lease could expire
//     (inside one, that lease left behind is the fault's doing);
//   - otherwise nobody could get the key while it was free: the service
//     was unavailable.
//
// Violations:
//
//   - unavailable: per node or network fault window (a window with nodes;
//     client faults hit one holder, not the service), the acquires in
//     flight during it that were neither served nor blocked. The
//     counterexample gives the window's share of acquires that failed.
//   - stalled: the same outside every fault window (any kind). When an
//     indeterminate acquire or release of another process could have left
//     an orphan lease on the key then, the verdict is Unknown instead.
//   - gave-up-early: outside every fault window, a blocking acquire that
//     failed definitely (not-acquired) in under 3/4 of its timeout: the
//     implementation stopped trying with time left (Attrs timeout_ms; a
//     TryAcquire, Attrs try, is never judged so).
//
// Measures: acquires, ok, failed (definite), timed_out (indeterminate),
// served/blocked counts, and per fault window i (1-based, node or network
// faults in start order) window<i>_acquires, window<i>_failed,
// window<i>_failed_share and window<i>_unavailable; per failover i
// (Failovers) failover<i>_promotion_ms (primary lost → replica promoted)
// and failover<i>_unavailable_ms (primary lost → first write through).
func Availability(h []history.Op, opt Options) results.Verdict {
	return availabilityPhase(NewPhase(h), opt)
}

func availabilityPhase(p *Phase, opt Options) results.Verdict {
	ops := p.Ops
	windows := p.Windows()
	runEnd := p.End
	var service []Window
	for _, w := range windows {
		if len(w.Nodes) > 0 && w.Process < 0 {
			service = append(service, w)
		}
	}
	// Every list below is sized once, counted first: grown by appends, a
	// long run's would allocate about twice their size.
	isAcquire := func(o *Operation) bool {
		return o.F() == "acquire" && o.InvokeAttr("probe") == "" && o.CompleteAttr("probe") == ""
	}
	nAcquires := 0
	okCount := map[uint32]int{}
	for i := range ops {
		if o := &ops[i]; isAcquire(o) {
			nAcquires++
			if o.OK() {
				okCount[o.key]++
			}
		}
	}
	acquires := make([]*Operation, 0, nAcquires)      // in the phase's operations
	okByKey := make(map[uint32][]grant, len(okCount)) // successful acquires, by completion time
	for k, n := range okCount {
		okByKey[k] = make([]grant, 0, n)
	}
	for i := range ops {
		o := &ops[i]
		if !isAcquire(o) {
			continue
		}
		acquires = append(acquires, o)
		if o.OK() {
			okByKey[o.key] = append(okByKey[o.key], grant{o.Invoke.Time, o.Complete.Time})
		}
	}
	for _, ts := range okByKey {
		sort.Slice(ts, func(i, j int) bool { return ts[i].done < ts[j].done })
	}
	holdsByKey, orphansByKey := leases(ops, opt)

	type windowStat struct {
		acquires, failed, unavailable int
		first                         *Operation
	}
	stats := make([]windowStat, len(service))
	var vs []results.Violation
	var nOK, nFailed, nInfo, served, blocked, unknownStalls int
	var firstUnknown string
	for _, a := range acquires {
		end := a.Complete.Time
		if !a.Completed() {
			end = runEnd
		}
		var inService []int
		for i, w := range service {
			if w.Start <= end && a.Invoke.Time <= w.End {
				inService = append(inService, i)
				stats[i].acquires++
			}
		}
		if a.OK() {
			nOK++
			continue
		}
		if a.Failed() {
			nFailed++
		} else {
			nInfo++
		}
		for _, i := range inService {
			stats[i].failed++
		}
		try := a.CompleteAttr(AttrTry) == "true"
		if try && a.Failed() {
			continue // a TryAcquire that found the key held: the contract
		}
		timeout := int64(0)
		if ms, err := strconv.ParseInt(a.CompleteAttr(AttrTimeoutMs), 10, 64); err == nil && ms > 0 {
			timeout = ms * 1e6
		}
		anyFault := ActiveFault(windows, a.Invoke.Time, end) != ""
		if !anyFault && a.Failed() && !try && timeout > 0 && (end-a.Invoke.Time)*4 < timeout*3 {
			vs = append(vs, results.Violation{
				Kind: "gave-up-early", Keys: []string{a.Key()}, Processes: []int{int(a.Process)}, Time: a.Invoke.Time, Indexes: a.Indexes(),
				Description: fmt.Sprintf("p%d's acquire of %s, invoked at %s with a %v timeout, gave up (%s) after %.1f ms with no fault active: the implementation stopped trying with time left",
					a.Process, a.Key(), secs(a.Invoke.Time), msDur(timeout), a.Error(), float64(end-a.Invoke.Time)/1e6),
			})
			continue
		}
		// The wait judged: the acquire's own span inside a fault window,
		// at least its timeout outside.
		to := end
		if len(inService) == 0 && !anyFault {
			to = max(end, a.Invoke.Time+timeout)
		}
		isServed := servedIn(okByKey[a.key], a.Invoke.Time, to, math.MinInt64)
		if len(inService) > 0 {
			// Served by the faulted service: a success asked for and
			// granted inside a window, not at its edges (a reply already
			// under way when the fault started, or the healed service
			// answering before the heal event is logged). A success
			// invoked before the fault was granted by the service as it
			// was: a quorum lock may gather its votes before a partition
			// and report them only when its slowest node times out.
			isServed = false
			for _, i := range inService {
				w := service[i]
				m := min(healMargin, (w.End-w.Start)/10)
				isServed = isServed || servedIn(okByKey[a.key], max(a.Invoke.Time, w.Start+m), min(to, w.End-m), w.Start+m)
			}
		}
		if isServed {
			served++
			continue
		}
		wait := to - a.Invoke.Time
		free := wait - covered(holdsByKey[a.key], a.Process, a.Invoke.Time, to, len(inService) > 0)
		// Outside faults the key must have been free for half the wait;
		// inside a fault window, for a quarter of it or half a ttl.
		need := wait / 2
		if len(inService) > 0 {
			need = wait / 4
			if opt.TTL > 0 {
				need = min(need, int64(opt.TTL/2))
			}
		}
		if free < need {
			blocked++
			continue
		}
		switch {
		case len(inService) > 0:
			for _, i := range inService {
				stats[i].unavailable++
				if stats[i].first == nil {
					stats[i].first = a
				}
			}
		case anyFault:
			// a client fault (a paused or crashed holder) explains it
		case orphanIn(orphansByKey[a.key], a.Process, a.Invoke.Time-int64(opt.TTL+opt.slack()), to):
			unknownStalls++
			if firstUnknown == "" {
				firstUnknown = fmt.Sprintf("p%d's acquire of %s at %s (an indeterminate acquire or release may have left a lease)", a.Process, a.Key(), secs(a.Invoke.Time))
			}
		default:
			vs = append(vs, results.Violation{
				Kind: "stalled", Keys: []string{a.Key()}, Processes: []int{int(a.Process)}, Time: a.Invoke.Time, Indexes: a.Indexes(),
				Description: fmt.Sprintf("p%d's acquire of %s, invoked at %s, %s at %s with no fault active, and nobody acquired %s from its invocation until %s though no holder held it for most of that time",
					a.Process, a.Key(), secs(a.Invoke.Time), failWord(*a), secs(end), a.Key(), secs(to)),
			})
		}
	}
	measures := map[string]float64{
		"acquires": float64(len(acquires)), "ok": float64(nOK), "failed": float64(nFailed), "timed_out": float64(nInfo),
		"served_by_others": float64(served), "blocked_by_holder": float64(blocked),
	}
	var parts []string
	for i, st := range stats {
		w := service[i]
		n := strconv.Itoa(i + 1)
		share := 0.0
		if st.acquires > 0 {
			share = float64(st.failed) / float64(st.acquires)
		}
		measures["window"+n+"_acquires"] = float64(st.acquires)
		measures["window"+n+"_failed"] = float64(st.failed)
		measures["window"+n+"_failed_share"] = share
		measures["window"+n+"_unavailable"] = float64(st.unavailable)
		desc := fmt.Sprintf("%s %s–%s: %d/%d acquires failed (%.0f%%)", windowName(w), secs(w.Start), secs(w.End), st.failed, st.acquires, 100*share)
		parts = append(parts, desc)
		if st.unavailable == 0 {
			continue
		}
		f := st.first
		vs = append(vs, results.Violation{
			Kind: "unavailable", Keys: []string{f.Key()}, Processes: []int{int(f.Process)}, Time: w.Start, Fault: windowName(w),
			Indexes: append([]int64{w.StartIndex}, f.Indexes()...),
			Description: desc + fmt.Sprintf("; %d of them while nobody could get the key and no holder held it, the first p%d's acquire of %s invoked at %s (%s at %s)",
				st.unavailable, f.Process, f.Key(), secs(f.Invoke.Time), failWord(*f), secs(f.Complete.Time)),
		})
	}
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].Time < vs[j].Time })
	kinds := map[string]int{}
	for _, v := range vs {
		kinds[v.Kind]++
	}
	measures["gave_up_early"] = float64(kinds["gave-up-early"])
	measures["stalled"] = float64(kinds["stalled"])
	measures["unavailable_windows"] = float64(kinds["unavailable"])
	summary := fmt.Sprintf("%d acquires, %d ok, %d failed, %d timed out (%d served to others meanwhile, %d blocked by a holder); %d gave up early, %d stalled",
		len(acquires), nOK, nFailed, nInfo, served, blocked, kinds["gave-up-early"], kinds["stalled"])
	if len(parts) > 0 {
		summary += "; fault windows: " + strings.Join(parts, "; ")
	}
	// Per failover, the unavailability window clients saw: from the
	// primary's loss to the first write invoked after it that succeeded.
	var fparts []string
	for i, f := range FailoversOf(p) {
		n := strconv.Itoa(i + 1)
		desc := fmt.Sprintf("failover %s at %s", orUnknown(f.Old)+"→"+orUnknown(f.New), secs(f.Lost))
		if f.Promoted > 0 {
			measures["failover"+n+"_promotion_ms"] = f.PromotionMs
			desc += fmt.Sprintf(", promoted after %.0f ms", f.PromotionMs)
		}
		if f.FirstWrite > 0 {
			measures["failover"+n+"_unavailable_ms"] = f.FailoverMs
			desc += fmt.Sprintf(", first write after %.0f ms", f.FailoverMs)
		} else {
			desc += ", no write got through before the phase ended"
		}
		fparts = append(fparts, desc)
	}
	if len(fparts) > 0 {
		measures["failovers"] = float64(len(fparts))
		summary += "; " + strings.Join(fparts, "; ")
	}
	if unknownStalls > 0 {
		summary += fmt.Sprintf("; %d stalls outside faults that an orphan lease may explain, first %s", unknownStalls, firstUnknown)
	}
	return verdict(AvailabilityName, opt, vs, unknownStalls > 0, summary, measures)
}

// healMargin: successes this close to a fault window's start or heal are
// not counted as served during the fault.
const healMargin = int64(20e6)

// span is a time interval of the history (24 bytes: a long run has one
// or two per successful acquire).
type span struct {
	from, to int64
	process  int32
	definite bool // the holder's own lease, not a lease left to expire after a failed release
}

// leases returns, per key (names id), the spans in which a process held
// it, and the spans in which an orphan lease may have been left.
//
// A hold (acquire ok) is definite from the acquire's completion until the
// holder asked to release (its release's invocation: a release the service
// is slow to apply is the service's delay, not the holder's), within its
// lease (completion + ttl). When the release did not complete ok, or never
// came, a further hold runs to the lease's expiry (completion + ttl +
// slack; Never without a ttl): not definite, and also an orphan span. An
// indeterminate acquire is an orphan span from its invocation to its
// completion + ttl + slack.
func leases(ops []Operation, opt Options) (holds, orphans map[uint32][]span) {
	// Two passes over the same sweep: the first counts the spans of each
	// key, the second fills lists of exactly that size.
	nHolds, nOrphans := map[uint32]int{}, map[uint32]int{}
	sweepLeases(ops, opt, func(key uint32, orphan bool, _ span) {
		if orphan {
			nOrphans[key]++
		} else {
			nHolds[key]++
		}
	})
	holds, orphans = make(map[uint32][]span, len(nHolds)), make(map[uint32][]span, len(nOrphans))
	for k, n := range nHolds {
		holds[k] = make([]span, 0, n)
	}
	for k, n := range nOrphans {
		orphans[k] = make([]span, 0, n)
	}
	sweepLeases(ops, opt, func(key uint32, orphan bool, s span) {
		if orphan {
			orphans[key] = append(orphans[key], s)
		} else {
			holds[key] = append(holds[key], s)
		}
	})
	return holds, orphans
}

// sweepLeases calls emit with each hold and orphan span of ops, per key
// (leases), in the order leases lists them.
func sweepLeases(ops []Operation, opt Options, emit func(key uint32, orphan bool, s span)) {
	expiry := func(t int64) int64 {
		if opt.TTL <= 0 || t == Never {
			return Never
		}
		return t + int64(opt.TTL+opt.slack())
	}
	open := map[int32]*Operation{} // process → its acquire ok not yet released
	closeLease := func(p int32, release *Operation) {
		a, ok := open[p]
		if !ok {
			return
		}
		delete(open, p)
		from := a.Complete.Time
		end := Never
		if opt.TTL > 0 {
			end = from + int64(opt.TTL)
		}
		if release != nil {
			end = min(end, release.Invoke.Time)
		}
		emit(a.key, false, span{from, end, p, true})
		if release == nil || !release.OK() {
			emit(a.key, false, span{from, expiry(from), p, false})
			emit(a.key, true, span{from, expiry(from), p, false})
		}
	}
	for i := range ops {
		o := &ops[i]
		switch o.F() {
		case "acquire":
			closeLease(o.Process, nil)
			switch {
			case o.OK():
				open[o.Process] = o
			case o.Indeterminate():
				end := o.Complete.Time
				if !o.Completed() {
					end = Never
				}
				emit(o.key, true, span{o.Invoke.Time, expiry(end), o.Process, false})
			}
		case "release":
			if a, ok := open[o.Process]; ok && a.key == o.key {
				closeLease(o.Process, o)
			}
		}
	}
	// The leases never released, in process order: the order of the
	// spans must not depend on the map's.
	var left []int32
	for p := range open {
		left = append(left, p)
	}
	slices.Sort(left)
	for _, p := range left {
		closeLease(p, nil)
	}
}

// grant is a successful acquire: when it was asked for and when it completed.
type grant struct{ invoked, done int64 }

// servedIn says whether a successful acquire invoked at or after
// invokedFrom completed in (from, to].
func servedIn(sorted []grant, from, to, invokedFrom int64) bool {
	i := sort.Search(len(sorted), func(i int) bool { return sorted[i].done > from })
	for ; i < len(sorted) && sorted[i].done <= to; i++ {
		if sorted[i].invoked >= invokedFrom {
			return true
		}
	}
	return false
}

// covered is how much of [from, to] other processes' holds cover (only
// the definite ones when definiteOnly).
func covered(hs []span, self int32, from, to int64, definiteOnly bool) int64 {
	var in []span
	for _, s := range hs {
		if s.process != self && s.from < to && s.to > from && (s.definite || !definiteOnly) {
			in = append(in, span{from: max(s.from, from), to: min(s.to, to)})
		}
	}
	sort.Slice(in, func(i, j int) bool { return in[i].from < in[j].from })
	var total, reach int64
	reach = from
	for _, s := range in {
		if s.to <= reach {
			continue
		}
		total += s.to - max(s.from, reach)
		reach = s.to
	}
	return total
}

// orphanIn says whether another process may have left a lease overlapping
// [from, to].
func orphanIn(os []span, self int32, from, to int64) bool {
	for _, s := range os {
		if s.process != self && s.from <= to && s.to >= from {
			return true
		}
	}
	return false
}

func windowName(w Window) string {
	if w.Fault != "" {
		return w.Fault
	}
	return w.Kind
}

func failWord(o Operation) string {
	switch {
	case o.Failed():
		return "failed (" + o.Error() + ")"
	case !o.Completed():
		return "never completed"
	}
	return "timed out (" + o.Error() + ")"
}

// msDur renders ns as a duration string.
func msDur(ns int64) string { return strconv.FormatInt(ns/1e6, 10) + "ms" }
