// Package checker judges faultline histories offline: pure functions from a
// []history.Op to results.Verdicts, never touching a live node. One idea per
// file, as in porcupine: mutual exclusion (mutex.go), lost updates
// (lostupdate.go), fencing at the resource (fencing.go), the order of the
// fences the lock handed out (fenceorder.go), liveness after a holder crash
// (liveness.go), leaked locks (leaks.go) and whether acquires got the lock
// (availability.go) for the lock workloads; Locks runs them all per
// implementation.
//
// Indeterminate operations (type info, or an invoke the history never
// completes) may or may not have taken effect, any time after their
// invocation: a checker never counts them as done nor as not done, and an
// anomaly that exists only through them makes a verdict Unknown, not Invalid.
package checker

import (
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/faultline-dev/faultline/bench/history"
)

// Never is the completion time of an operation the history never completes.
const Never = int64(math.MaxInt64)

// Operation is an invocation paired with its completion. Both point into
// the history it was paired from (an Operation is 56 bytes, not two copies
// of an Op: the checkers of a long run hold millions), which the checkers
// only read.
type Operation struct {
	Process  int
	F, Key   string
	Invoke   *history.Op
	Complete *history.Op // an Op of Type "" when the history ends before it completes
}

// incomplete is the Complete of every operation the history never
// completes (and both ends of sweepHighest's "none"). Nothing writes it.
var incomplete = &history.Op{}

// Type is the completion type; Info when the operation never completed.
func (o Operation) Type() history.Type {
	if o.Complete.Type == "" {
		return history.Info
	}
	return o.Complete.Type
}

// OK says whether the operation definitely took effect.
func (o Operation) OK() bool { return o.Complete.Type == history.OK }

// Failed says whether the operation definitely did not take effect.
func (o Operation) Failed() bool { return o.Complete.Type == history.Fail }

// Indeterminate says whether the operation may or may not have taken effect.
func (o Operation) Indeterminate() bool { return o.Type() == history.Info }

// End is the completion time, or Never for an indeterminate operation
// (it may take effect at any later time).
func (o Operation) End() int64 {
	if o.Indeterminate() {
		return Never
	}
	return o.Complete.Time
}

// Indexes are the history indexes of the invocation and completion.
func (o Operation) Indexes() []int64 {
	if o.Complete.Type == "" {
		return []int64{o.Invoke.Index}
	}
	return []int64{o.Invoke.Index, o.Complete.Index}
}

// Operations pairs each client invocation with the next completion of the
// same process, in invocation order. Nemesis (-1) and resource (-2) entries
// are skipped; a completion without an invocation is ignored; an invocation
// followed by another invocation of the same process is left incomplete.
func Operations(h []history.Op) []Operation {
	n := 0
	for i := range h {
		if h[i].Process >= 0 && h[i].Type == history.Invoke {
			n++
		}
	}
	out := make([]Operation, 0, n)
	pending := map[int]int{} // process → index in out
	for i := range h {
		op := &h[i]
		if op.Process < 0 {
			continue
		}
		switch op.Type {
		case history.Invoke:
			out = append(out, Operation{Process: op.Process, F: op.F, Key: op.Key, Invoke: op, Complete: incomplete})
			pending[op.Process] = len(out) - 1
		case history.OK, history.Fail, history.Info:
			i, ok := pending[op.Process]
			if !ok {
				continue
			}
			out[i].Complete = op
			delete(pending, op.Process)
		}
	}
	return out
}

// ByImpl splits a history by Op.Impl, in sorted implementation order.
// Entries with no Impl (e.g. fault events of a single-implementation run)
// belong to every implementation; a history with no Impl at all is one
// group named "".
func ByImpl(h []history.Op) ([]string, map[string][]history.Op) {
	groups := map[string][]history.Op{}
	var impls []string
	for _, op := range h {
		if op.Impl != "" {
			if _, ok := groups[op.Impl]; !ok {
				impls = append(impls, op.Impl)
				groups[op.Impl] = nil
			}
		}
	}
	sort.Strings(impls)
	if len(impls) == 0 {
		return []string{""}, map[string][]history.Op{"": h}
	}
	if len(impls) == 1 { // one implementation's history (what the runner checks): no copy
		return impls, map[string][]history.Op{impls[0]: h}
	}
	for _, op := range h {
		if op.Impl == "" {
			for _, impl := range impls {
				groups[impl] = append(groups[impl], op)
			}
		} else {
			groups[op.Impl] = append(groups[op.Impl], op)
		}
	}
	return impls, groups
}

// Indexed returns h with Index set to each entry's position when the
// history carries no indexes (hand-made histories); otherwise h itself.
func Indexed(h []history.Op) []history.Op {
	for _, op := range h {
		if op.Index != 0 {
			return h
		}
	}
	out := make([]history.Op, len(h))
	for i, op := range h {
		op.Index = int64(i)
		out[i] = op
	}
	return out
}

// Window is one fault from its start to its heal, from the nemesis events.
type Window struct {
	Fault, Kind string
	Nodes       []string
	Key         string
	Process     int // the holder a client fault hit; -1 if none
	OSPid       int // its OS process, when the fault acted on one (exec:); 0 = none
	Start, End  int64
	StartIndex  int64
}

// Windows are the fault windows of h (history.Windows pairs the events, by
// id). A fault never healed ends at Never.
func Windows(h []history.Op) []Window {
	var out []Window
	for _, w := range history.Windows(h) {
		p := -1
		if s, ok := w.Attrs["process"]; ok {
			if n, err := strconv.Atoi(s); err == nil {
				p = n
			}
		}
		osPid, _ := strconv.Atoi(w.Attrs["os_pid"])
		end := w.End
		if !w.Healed {
			end = Never
		}
		out = append(out, Window{Fault: w.Fault, Kind: w.Kind, Nodes: w.Nodes, Key: w.Key,
			Process: p, OSPid: osPid, Start: w.Start, End: end, StartIndex: w.StartIndex})
	}
	return out
}

// ActiveFault names the faults active at any time in [from, to], joined by
// "; " ("" if none). A client fault that hit a holder names it.
func ActiveFault(ws []Window, from, to int64) string {
	var parts []string
	for _, w := range ws {
		if w.Start <= to && from <= w.End {
			s := w.Fault
			if s == "" {
				s = w.Kind
			}
			if len(w.Nodes) > 0 && !strings.Contains(s, w.Nodes[0]) {
				s += " on " + strings.Join(w.Nodes, ",")
			}
			if w.Process >= 0 {
				s += " (hit p" + strconv.Itoa(w.Process) + " on " + w.Key
				if w.OSPid > 0 {
					s += ", OS process " + strconv.Itoa(w.OSPid)
				}
				s += ")"
			}
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}

// attrInt reads an integer attribute.
func attrInt(op history.Op, name string) (int64, bool) {
	s, ok := op.Attrs[name]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n, err == nil
}

// secs renders a history time (ns) as seconds for descriptions.
func secs(ns int64) string {
	if ns == Never {
		return "never"
	}
	return strconv.FormatFloat(float64(ns)/1e9, 'f', 3, 64) + "s"
}

// val renders an optional value.
func val(v *int64) string {
	if v == nil {
		return "?"
	}
	return strconv.FormatInt(*v, 10)
}

// sweepHighest visits ops in invocation order, each with the op of highest
// fence among those that completed before it was invoked (an Operation of
// empty Invoke and Complete when none had). It sorts ops in place.
func sweepHighest(ops []Operation, fence func(Operation) uint64, visit func(b, top Operation)) {
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Invoke.Time < ops[j].Invoke.Time })
	byEnd := append([]Operation(nil), ops...)
	sort.SliceStable(byEnd, func(i, j int) bool { return byEnd[i].Complete.Time < byEnd[j].Complete.Time })
	top := Operation{Invoke: incomplete, Complete: incomplete}
	j := 0
	for _, b := range ops {
		for j < len(byEnd) && byEnd[j].Complete.Time < b.Invoke.Time {
			if fence(byEnd[j]) > fence(top) {
				top = byEnd[j]
			}
			j++
		}
		visit(b, top)
	}
}
