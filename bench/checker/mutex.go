package checker

import (
	"fmt"
	"sort"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// Resource log vocabulary (process history.Resource entries).
const (
	ResourceWrite = "resource-write" // one accepted write, in apply order
	ResourceFinal = "final"          // the final counter of a key
	LockState     = "lock-state"     // the final state of a lock key
)

// resourceLog returns the resource-write entries per key in apply order
// (Attrs "seq" when present, else history order) and whether the history
// has a resource log at all (any resource-write or final entry).
func resourceLog(p *Phase) (map[string][]*ResWrite, bool) {
	log := map[string][]*ResWrite{}
	has := len(p.Writes) > 0
	for i := range p.Writes {
		w := &p.Writes[i] // pointers: a copy of each write would double them
		log[w.Key()] = append(log[w.Key()], w)
	}
	for i := range p.Events {
		if op := &p.Events[i]; op.Process == history.Resource && op.F == ResourceFinal {
			has = true
		}
	}
	for _, l := range log {
		sort.SliceStable(l, func(i, j int) bool {
			a, okA := l[i].Seq()
			b, okB := l[j].Seq()
			return okA && okB && a < b
		})
	}
	return log, has
}

// criticalSection is one holder's read-modify-write on a key, from the
// client's history.
type criticalSection struct {
	process            int
	key                string
	read, write        *Operation // in the phase's operations
	token              string
	fence              uint64
	readInv, readOK    int64 // read effect lies in [readInv, readOK]
	writeInv, wrEnd    int64 // write effect lies in [writeInv, wrEnd]; wrEnd Never if info
	writeIndeterminate bool
}

// criticalSections pairs each read ok with the same process's next write on
// that key. Writes that failed (fenced, rejected) never reached the
// resource and make no section; reads never followed by a write neither.
func criticalSections(ops []Operation) []criticalSection {
	var out []criticalSection
	lastRead := map[int32]*Operation{}
	lastAcquire := map[int32]*Operation{}
	for i := range ops {
		o := &ops[i]
		switch o.F() {
		case "acquire":
			if o.OK() {
				lastAcquire[o.Process] = o
			}
		case "read":
			if o.OK() {
				lastRead[o.Process] = o
			} else {
				delete(lastRead, o.Process)
			}
		case "write":
			r, ok := lastRead[o.Process]
			delete(lastRead, o.Process)
			if !ok || r.Key() != o.Key() || o.Failed() {
				continue
			}
			cs := criticalSection{process: int(o.Process), key: o.Key(), read: r, write: o,
				token: o.InvokeToken(), fence: o.InvokeFence(),
				readInv: r.Invoke.Time, readOK: r.Complete.Time,
				writeInv: o.Invoke.Time, wrEnd: o.End(), writeIndeterminate: o.Indeterminate()}
			if a, ok := lastAcquire[o.Process]; ok && a.Key() == o.Key() {
				if cs.token == "" {
					cs.token = a.CompleteToken()
				}
				if cs.fence == 0 {
					cs.fence = a.CompleteFence()
				}
			}
			out = append(out, cs)
		}
	}
	return out
}

// MutualExclusion checks that no two holders were inside the critical
// section of one key at once.
//
// When the history carries the resource's own log (process -2
// resource-write entries), that log is the oracle and decides alone: a write
// whose Attrs "expected" (the value its writer read) differs from
// "current" (the value before it) means other writes landed inside the
// writer's critical section; the violation names the writer and the writers
// it clobbered, found by walking the log back to the write it read.
//
// Without a resource log, it judges the client history: a section runs from
// the read (effect in [read invoke, read ok]) to the write (effect in [write
// invoke, write completion], any time later if the write is info). Two
// sections on one key whose reads both returned before either write was
// invoked, both writes ok, definitely overlapped: Invalid. Sections that
// overlap only if an indeterminate write landed late, or whose order the
// history cannot tell, make the verdict Unknown.
func MutualExclusion(h []history.Op, opt Options) results.Verdict {
	return mutualExclusionPhase(NewPhase(h), opt)
}

func mutualExclusionPhase(p *Phase, opt Options) results.Verdict {
	ops := p.Ops
	windows := p.Windows()
	if log, has := resourceLog(p); has {
		return mutexFromResource(ops, windows, log, opt)
	}
	return mutexFromClients(ops, windows, opt)
}

func mutexFromResource(ops []Operation, windows []Window, log map[string][]*ResWrite, opt Options) results.Verdict {
	// Index the clients' writes by (process, key, value) to find each
	// resource write's client operations.
	type wkey struct {
		p   int64
		key string
		v   int64
	}
	// Both indexes are built on the first violation that needs them: a
	// correct run's log needs neither.
	var writes map[wkey][]int
	clientWrite := func(e *ResWrite) (Operation, bool) {
		p, ok := e.Writer()
		ev, okV := e.Value()
		if !ok || !okV {
			return Operation{}, false
		}
		if writes == nil {
			writes = map[wkey][]int{}
			for i := range ops {
				o := &ops[i]
				if v, ok := o.InvokeValue(); ok && o.F() == "write" {
					k := wkey{int64(o.Process), o.Key(), v}
					writes[k] = append(writes[k], i)
				}
			}
		}
		cands := writes[wkey{p, e.Key(), ev}]
		for _, i := range cands {
			o := ops[i]
			if (e.Token() == "" || o.InvokeToken() == "" || o.InvokeToken() == e.Token()) &&
				(e.Fence == 0 || o.InvokeFence() == 0 || o.InvokeFence() == e.Fence) {
				return o, true
			}
		}
		return Operation{}, false
	}
	type pk struct {
		p   int32
		key string
	}
	var reads map[pk][]*Operation
	readBefore := func(w Operation) (Operation, bool) {
		if reads == nil {
			reads = map[pk][]*Operation{}
			for i := range ops {
				if o := &ops[i]; o.F() == "read" && o.OK() {
					reads[pk{o.Process, o.Key()}] = append(reads[pk{o.Process, o.Key()}], o)
				}
			}
		}
		l := reads[pk{w.Process, w.Key()}]
		i := sort.Search(len(l), func(i int) bool { return l[i].Complete.Time > w.Invoke.Time })
		if i == 0 {
			return Operation{}, false
		}
		return *l[i-1], true
	}

	keys := make([]string, 0, len(log))
	for k := range log {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var vs []results.Violation
	total := 0
	for _, key := range keys {
		l := log[key]
		for i, ep := range l {
			e := ep
			total++
			exp, okE := e.Expected()
			cur, okC := e.Current()
			if !okE || !okC || exp == cur {
				continue
			}
			writer, _ := e.Writer()
			// Walk back to the write whose value this writer read; every
			// write after it landed inside this writer's section.
			var clobbered []*ResWrite
			for j := i - 1; j >= 0 && j >= i-1000; j-- {
				if v, ok := l[j].Value(); ok && v == exp {
					break
				}
				clobbered = append(clobbered, l[j])
			}
			for a, b := 0, len(clobbered)-1; a < b; a, b = a+1, b-1 {
				clobbered[a], clobbered[b] = clobbered[b], clobbered[a]
			}
			inside := len(clobbered)
			if len(clobbered) > 5 {
				clobbered = clobbered[len(clobbered)-5:]
			}
			v := results.Violation{
				Kind: "overlap", Keys: []string{key},
				Processes: []int{int(writer)}, Tokens: []string{e.Token()}, Time: e.Time,
				Indexes: []int64{e.Index},
			}
			from, to := e.Time, e.Time
			desc := fmt.Sprintf("p%d (token %s, fence %d) read %d on key %s", writer, e.Token(), e.Fence, exp, key)
			if w, ok := clientWrite(e); ok {
				v.Time = w.Invoke.Time
				from, to = w.Invoke.Time, w.End()
				if r, ok := readBefore(w); ok {
					from = r.Invoke.Time
					v.Indexes = append(v.Indexes, r.Complete.Index)
					desc += " at " + secs(r.Complete.Time)
				}
				v.Indexes = append(v.Indexes, w.Indexes()...)
				desc += fmt.Sprintf(" and wrote %s (invoked %s)", valOf(e.Value()), secs(w.Invoke.Time))
			} else {
				desc += " and wrote " + valOf(e.Value())
			}
			desc += fmt.Sprintf(", but the resource held %d by then: %d writes landed inside its critical section", cur, inside)
			if inside > len(clobbered) {
				desc += fmt.Sprintf(", the last %d:", len(clobbered))
			} else {
				desc += ":"
			}
			for _, c := range clobbered {
				cw, _ := c.Writer()
				v.Processes = append(v.Processes, int(cw))
				v.Tokens = append(v.Tokens, c.Token())
				v.Indexes = append(v.Indexes, c.Index)
				desc += fmt.Sprintf(" p%d (token %s, fence %d) wrote %s", cw, c.Token(), c.Fence, valOf(c.Value()))
				if w, ok := clientWrite(c); ok {
					v.Indexes = append(v.Indexes, w.Invoke.Index)
					desc += " at " + secs(w.Invoke.Time)
				}
				desc += ";"
			}
			desc += " all overwritten by this write"
			if f := ActiveFault(windows, from, to); f != "" {
				v.Fault = f
				desc += " (fault active: " + f + ")"
			}
			v.Description = desc
			vs = append(vs, v)
		}
	}
	summary := fmt.Sprintf("resource log: %d writes, %d inside another holder's critical section", total, len(vs))
	return verdict(MutualExclusionName, opt, vs, false, summary,
		map[string]float64{"resource_writes": float64(total), "overlaps": float64(len(vs))})
}

func mutexFromClients(ops []Operation, windows []Window, opt Options) results.Verdict {
	css := criticalSections(ops)
	byKey := map[string][]criticalSection{}
	for _, cs := range css {
		byKey[cs.key] = append(byKey[cs.key], cs)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var vs []results.Violation
	possible := 0
	var firstPossible string
	for _, key := range keys {
		l := byKey[key]
		sort.SliceStable(l, func(i, j int) bool { return l[i].readInv < l[j].readInv })
		var active []criticalSection
		for _, b := range l {
			kept := active[:0]
			for _, a := range active {
				if a.wrEnd > b.readInv {
					kept = append(kept, a)
				}
			}
			active = kept
			for _, a := range active {
				if a.process == b.process {
					continue
				}
				definite := a.readOK < b.writeInv && b.readOK < a.writeInv
				if definite && !a.writeIndeterminate && !b.writeIndeterminate {
					vs = append(vs, overlapViolation(a, b, windows))
					continue
				}
				possible++
				if firstPossible == "" {
					firstPossible = fmt.Sprintf("p%d and p%d on key %s (read at %s and %s)", a.process, b.process, key, secs(a.readOK), secs(b.readOK))
				}
			}
			active = append(active, b)
		}
	}
	summary := fmt.Sprintf("client history: %d critical sections, %d definite overlaps, %d possible only through indeterminate or unordered writes", len(css), len(vs), possible)
	if len(vs) == 0 && possible > 0 {
		summary += "; first: " + firstPossible
	}
	return verdict(MutualExclusionName, opt, vs, possible > 0, summary, map[string]float64{
		"critical_sections": float64(len(css)), "overlaps": float64(len(vs)), "possible_overlaps": float64(possible),
	})
}

func overlapViolation(a, b criticalSection, windows []Window) results.Violation {
	desc := fmt.Sprintf("p%d (token %s, fence %d) and p%d (token %s, fence %d) were both inside the critical section of key %s: "+
		"p%d read %s at %s and wrote at %s; p%d read %s at %s and wrote at %s",
		a.process, a.token, a.fence, b.process, b.token, b.fence, a.key,
		a.process, valOf(a.read.CompleteValue()), secs(a.readOK), secs(a.writeInv),
		b.process, valOf(b.read.CompleteValue()), secs(b.readOK), secs(b.writeInv))
	v := results.Violation{
		Kind: "overlap", Processes: []int{a.process, b.process}, Keys: []string{a.key},
		Tokens: []string{a.token, b.token}, Time: max(a.readOK, b.readOK),
		Indexes: []int64{a.read.Complete.Index, a.write.Invoke.Index, b.read.Complete.Index, b.write.Invoke.Index},
	}
	if f := ActiveFault(windows, min(a.readInv, b.readInv), max(a.wrEnd, b.wrEnd)); f != "" {
		v.Fault = f
		desc += " (fault active: " + f + ")"
	}
	v.Description = desc
	return v
}
