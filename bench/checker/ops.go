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

// Event is one end of an operation: where it is in the history and when.
type Event struct {
	Index int64 // history index
	Time  int64 // ns since run start
}

// Operation is an invocation paired with its completion, in the compact
// form the checkers of a long run hold by the million (80 bytes, against
// two 184-byte history entries): function, key and error are interned ids,
// the token is a pointer into its phase's token arena (tokens.go), the
// token, fence and value are stored once for both ends (an acquire's come
// with its completion, a write's with its invocation) and whatever else an
// end carries (attributes, an end that disagrees with the other) goes to a
// side record most operations do not have.
type Operation struct {
	Invoke, Complete Event // Complete is zero when the history ends before it completes
	fence            uint64
	value            int64
	token            tokenRef
	extra            *opExtra
	Process          int32
	key, err         uint32 // names ids; err is the completion's
	f                uint16 // funcs id; funcOverflow: the name is in extra.f
	typ              uint8  // completion type: typNone until completed
	bits             uint8
}

// What an Operation's bits say: which end carries the token, fence and value.
const (
	tokInv uint8 = 1 << iota
	tokComp
	fenceInv
	fenceComp
	valInv
	valComp
)

// Completion types of an Operation.
const (
	typNone uint8 = iota
	typOK
	typFail
	typInfo
)

// opExtra is what few operations carry: attributes, an invocation error,
// or a completion token, fence or value different from the invocation's.
type opExtra struct {
	invAttrs, compAttrs map[string]string
	invErr              string
	compToken           string
	compFence           uint64
	compValue           int64
	f                   string // the function, when funcs has no uint16 id left for it
}

// F is the operation's function (acquire, read, write, release, …).
func (o *Operation) F() string {
	if o.f == funcOverflow {
		return o.extra.f
	}
	return funcs.get(uint32(o.f))
}

// Key is the operation's key.
func (o *Operation) Key() string { return names.get(o.key) }

// Error is the completion's error ("" if none or not completed).
func (o *Operation) Error() string { return names.get(o.err) }

// InvokeToken is the token the invocation carried.
func (o *Operation) InvokeToken() string {
	if o.bits&tokInv != 0 {
		return o.token.String()
	}
	return ""
}

// CompleteToken is the token the completion carried.
func (o *Operation) CompleteToken() string {
	if o.extra != nil && o.extra.compToken != "" {
		return o.extra.compToken
	}
	if o.bits&tokComp != 0 {
		return o.token.String()
	}
	return ""
}

// InvokeFence is the fence the invocation carried (0: none).
func (o *Operation) InvokeFence() uint64 {
	if o.bits&fenceInv != 0 {
		return o.fence
	}
	return 0
}

// CompleteFence is the fence the completion carried (0: none).
func (o *Operation) CompleteFence() uint64 {
	if o.extra != nil && o.extra.compFence != 0 {
		return o.extra.compFence
	}
	if o.bits&fenceComp != 0 {
		return o.fence
	}
	return 0
}

// InvokeValue is the invocation's value (a write's) and whether it has one.
func (o *Operation) InvokeValue() (int64, bool) {
	if o.bits&valInv == 0 {
		return 0, false
	}
	return o.value, true
}

// CompleteValue is the completion's value (a read's) and whether it has one.
func (o *Operation) CompleteValue() (int64, bool) {
	if o.bits&valComp == 0 {
		return 0, false
	}
	if o.bits&valInv != 0 && o.extra != nil {
		return o.extra.compValue, true
	}
	return o.value, true
}

// InvokeAttr is an attribute of the invocation ("" if absent).
func (o *Operation) InvokeAttr(name string) string {
	if o.extra == nil {
		return ""
	}
	return o.extra.invAttrs[name]
}

// CompleteAttr is an attribute of the completion ("" if absent).
func (o *Operation) CompleteAttr(name string) string {
	if o.extra == nil {
		return ""
	}
	return o.extra.compAttrs[name]
}

// InvokeAttrs are the invocation's attributes (nil if none); not to be modified.
func (o *Operation) InvokeAttrs() map[string]string {
	if o.extra == nil {
		return nil
	}
	return o.extra.invAttrs
}

// CompleteAttrs are the completion's attributes (nil if none); not to be modified.
func (o *Operation) CompleteAttrs() map[string]string {
	if o.extra == nil {
		return nil
	}
	return o.extra.compAttrs
}

// Completed says whether the history records the operation's completion.
func (o *Operation) Completed() bool { return o.typ != typNone }

// Type is the completion type; Info when the operation never completed.
func (o *Operation) Type() history.Type {
	switch o.typ {
	case typOK:
		return history.OK
	case typFail:
		return history.Fail
	}
	return history.Info
}

// OK says whether the operation definitely took effect.
func (o *Operation) OK() bool { return o.typ == typOK }

// Failed says whether the operation definitely did not take effect.
func (o *Operation) Failed() bool { return o.typ == typFail }

// Indeterminate says whether the operation may or may not have taken effect.
func (o *Operation) Indeterminate() bool { return o.typ == typInfo || o.typ == typNone }

// End is the completion time, or Never for an indeterminate operation
// (it may take effect at any later time).
func (o *Operation) End() int64 {
	if o.Indeterminate() {
		return Never
	}
	return o.Complete.Time
}

// Indexes are the history indexes of the invocation and completion.
func (o *Operation) Indexes() []int64 {
	if !o.Completed() {
		return []int64{o.Invoke.Index}
	}
	return []int64{o.Invoke.Index, o.Complete.Index}
}

// invoke starts an operation from its invocation entry.
func (b *PhaseBuilder) newOperation(op *history.Op) Operation {
	o := Operation{Process: int32(op.Process), Invoke: Event{op.Index, op.Time}, key: names.id(op.Key)}
	if id := funcs.id(op.F); id < funcOverflow {
		o.f = uint16(id)
	} else {
		o.f, o.extra = funcOverflow, &opExtra{f: op.F}
	}
	if op.Token != "" {
		o.token, o.bits = b.token(op), o.bits|tokInv
	}
	if op.Fence != 0 {
		o.fence, o.bits = op.Fence, o.bits|fenceInv
	}
	if op.Value != nil {
		o.value, o.bits = *op.Value, o.bits|valInv
	}
	if len(op.Attrs) > 0 || op.Error != "" {
		if o.extra == nil {
			o.extra = &opExtra{}
		}
		o.extra.invAttrs, o.extra.invErr = op.Attrs, op.Error
	}
	return o
}

// complete records o's completion entry op.
func (b *PhaseBuilder) complete(o *Operation, op *history.Op) {
	o.Complete = Event{op.Index, op.Time}
	switch op.Type {
	case history.OK:
		o.typ = typOK
	case history.Fail:
		o.typ = typFail
	default:
		o.typ = typInfo
	}
	o.err = names.id(op.Error)
	ex := func() *opExtra {
		if o.extra == nil {
			o.extra = &opExtra{}
		}
		return o.extra
	}
	if op.Token != "" {
		switch {
		case o.bits&tokInv == 0:
			o.token = b.token(op)
		case o.token.String() != op.Token:
			ex().compToken = op.Token
		}
		o.bits |= tokComp
	}
	if op.Fence != 0 {
		switch {
		case o.bits&fenceInv == 0:
			o.fence = op.Fence
		case o.fence != op.Fence:
			ex().compFence = op.Fence
		}
		o.bits |= fenceComp
	}
	if op.Value != nil {
		if o.bits&valInv == 0 {
			o.value = *op.Value
		} else {
			ex().compValue = *op.Value
		}
		o.bits |= valComp
	}
	if len(op.Attrs) > 0 {
		ex().compAttrs = op.Attrs
	}
}

// Operations pairs each client invocation with the next completion of the
// same process, in invocation order. Nemesis (-1) and resource (-2) entries
// are skipped; a completion without an invocation is ignored; an invocation
// followed by another invocation of the same process is left incomplete.
func Operations(h []history.Op) []Operation {
	var b PhaseBuilder
	for i := range h {
		if h[i].Process >= 0 {
			b.Add(&h[i])
		}
	}
	return b.Phase().Ops
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

// valOf renders an optional value given as (value, present).
func valOf(v int64, ok bool) string {
	if !ok {
		return "?"
	}
	return strconv.FormatInt(v, 10)
}

// sweepHighest visits ops in invocation order, each with the op of highest
// fence among those that completed before it was invoked (an Operation of
// empty Invoke and Complete when none had). It sorts ops in place.
func sweepHighest(ops []*Operation, fence func(*Operation) uint64, visit func(b, top *Operation)) {
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Invoke.Time < ops[j].Invoke.Time })
	byEnd := append([]*Operation(nil), ops...)
	sort.SliceStable(byEnd, func(i, j int) bool { return byEnd[i].Complete.Time < byEnd[j].Complete.Time })
	top := &Operation{}
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
