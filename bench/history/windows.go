package history

import "strings"

// Window is one fault from its start event to its heal event.
type Window struct {
	// ID pairs the start with its heal (the events' Attrs "id"); empty in
	// histories written before fault events carried one.
	ID          string
	Fault, Kind string // spec ("kill:redis-2") and kind ("kill")
	Nodes       []string
	Impl        string
	Key         string            // the lock key a client fault hit, if any
	Attrs       map[string]string // the start event's attributes
	Start, End  int64             // ns since run start; End == Start until Healed
	StartIndex  int64             // history index of the start event
	Healed      bool
}

// Pairer builds fault windows from a stream of history entries: the one
// place that pairs fault-start with fault-heal, for the checkers and the
// report alike. Events pair by their Attrs "id"; events without one (older
// histories) pair by fault spec, first in first out. A start that carries
// an Error was never applied and opens no window. The zero Pairer is ready.
type Pairer struct {
	out  []Window
	open map[string][]int
}

// Add takes one history entry; anything but a nemesis fault event is
// ignored.
func (p *Pairer) Add(op *Op) {
	if op.Process != Nemesis || (op.F != FaultStart && op.F != FaultHeal) {
		return
	}
	if p.open == nil {
		p.open = map[string][]int{}
	}
	id := op.Attrs["id"]
	key := "id:" + id
	if id == "" {
		key = "fault:" + op.Fault
	}
	if op.F == FaultHeal {
		if q := p.open[key]; len(q) > 0 {
			w := &p.out[q[0]]
			w.End, w.Healed = max(op.Time, w.Start), true
			p.open[key] = q[1:]
		}
		return
	}
	if op.Error != "" {
		return // never applied
	}
	kind := op.Attrs["kind"]
	if kind == "" {
		kind, _, _ = strings.Cut(op.Fault, ":")
		kind, _, _ = strings.Cut(kind, "=")
	}
	p.out = append(p.out, Window{ID: id, Fault: op.Fault, Kind: kind, Nodes: op.Nodes, Impl: op.Impl, Key: op.Key,
		Attrs: op.Attrs, Start: op.Time, End: op.Time, StartIndex: op.Index})
	p.open[key] = append(p.open[key], len(p.out)-1)
}

// Windows returns the windows so far, in start order; one not healed yet
// has Healed false and End == Start.
func (p *Pairer) Windows() []Window { return p.out }

// Windows pairs every fault event of h.
func Windows(h []Op) []Window {
	var p Pairer
	for i := range h {
		p.Add(&h[i])
	}
	return p.Windows()
}
