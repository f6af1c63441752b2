package checker

import (
	"math"
	"slices"

	"github.com/faultline-dev/faultline/bench/history"
)

// Phase is one implementation's history as the lock checkers read it,
// built in one pass (PhaseBuilder) so that a long run's history is never
// held entry by entry: its client operations, paired and compact; the
// resource's writes, compact; and its other entries (fault events, the
// resource's final counters and lock states), which are few, as they are.
type Phase struct {
	// Ops are the client operations in invocation order (Operations).
	Ops []Operation
	// Writes are the resource-write entries, in history order.
	Writes []ResWrite
	// Events are the nemesis and resource entries but the resource
	// writes, in history order.
	Events []history.Op
	// End is the latest time of any entry; Last the time of the last entry
	// added (history order); Entries how many were added.
	End, Last int64
	Entries   int
}

// ResWrite is one resource-write entry (mutex.go): a write the
// resource accepted, with the attributes the checkers read (80 bytes).
type ResWrite struct {
	Index, Time int64
	Fence       uint64
	value       int64
	token       tokenRef
	// Attrs "seq", "expected", "current", "writer" as attrInt reads them.
	seq, expected, current, writer int64
	key                            uint32
	has                            uint8 // hasSeq, hasExpected, …
}

const (
	hasSeq uint8 = 1 << iota
	hasExpected
	hasCurrent
	hasWriter
	hasValue
)

// Token is the writer's token ("" if none).
func (w *ResWrite) Token() string { return w.token.String() }

// Value is the value written and whether the entry has one.
func (w *ResWrite) Value() (int64, bool) { return w.attr(hasValue, w.value) }

// Key is the key written.
func (w *ResWrite) Key() string { return names.get(w.key) }

func (w *ResWrite) attr(bit uint8, v int64) (int64, bool) {
	if w.has&bit == 0 {
		return 0, false
	}
	return v, true
}

// Seq, Expected, Current and Writer are the write's attributes of those
// names (apply order, the value its writer read, the value before it, the
// writer's process), and whether it has them.
func (w *ResWrite) Seq() (int64, bool)      { return w.attr(hasSeq, w.seq) }
func (w *ResWrite) Expected() (int64, bool) { return w.attr(hasExpected, w.expected) }
func (w *ResWrite) Current() (int64, bool)  { return w.attr(hasCurrent, w.current) }
func (w *ResWrite) Writer() (int64, bool)   { return w.attr(hasWriter, w.writer) }

// PhaseBuilder builds a Phase from history entries given in order. The
// zero PhaseBuilder is ready.
type PhaseBuilder struct {
	p       Phase
	pending map[int32]int // process → index in p.Ops of its operation in flight
	tokens  tokenArena
	last    map[int32]tokenRef // process → its last token, which its next entries repeat
	// writes: per process, the indexes in p.Ops of its writes that carry
	// a token, made on the first resource write (the resource's log comes
	// after the clients' entries), and next the first not yet matched: a
	// resource write takes its writer's token (resourceToken), not a copy.
	writes map[int32][]int32
	next   map[int32]int
}

// Add takes the next entry. It keeps nothing of op but copies (op may be
// reused by the caller).
func (b *PhaseBuilder) Add(op *history.Op) {
	if b.pending == nil {
		b.pending, b.last = map[int32]int{}, map[int32]tokenRef{}
	}
	p := &b.p
	p.Entries++
	p.Last = op.Time
	p.End = max(p.End, op.Time)
	if op.Process < 0 {
		if op.Process == history.Resource && op.F == ResourceWrite {
			p.Writes = append(p.Writes, b.newResourceWrite(op))
			return
		}
		p.Events = append(p.Events, *op)
		return
	}
	proc := int32(op.Process)
	switch op.Type {
	case history.Invoke:
		p.Ops = append(p.Ops, b.newOperation(op))
		b.pending[proc] = len(p.Ops) - 1
	case history.OK, history.Fail, history.Info:
		i, ok := b.pending[proc]
		if !ok {
			return
		}
		b.complete(&p.Ops[i], op)
		delete(b.pending, proc)
	}
}

// token returns op's token in the arena: the one of the process's previous
// entry when op repeats it (an acquire's token recurs in the write and
// release that follow), else a new one.
func (b *PhaseBuilder) token(op *history.Op) tokenRef {
	proc := int32(op.Process)
	if t := b.last[proc]; t.String() == op.Token {
		return t
	}
	t := b.tokens.add(op.Token)
	b.last[proc] = t
	return t
}

// Phase returns what was added. The builder is not to be used after.
func (b *PhaseBuilder) Phase() *Phase {
	p := b.p
	*b = PhaseBuilder{}
	return &p
}

// Grow makes room for n more operations at once: a long run's slice of
// operations grown by copies would allocate several times its size.
func (b *PhaseBuilder) Grow(n int) { b.p.Ops = slices.Grow(b.p.Ops, n) }

// GrowWrites makes room for n more resource writes at once (as Grow).
func (b *PhaseBuilder) GrowWrites(n int) { b.p.Writes = slices.Grow(b.p.Writes, n) }

// NewPhase builds the Phase of h (a hand-made history without indexes is
// indexed by position, as Indexed does).
func NewPhase(h []history.Op) *Phase {
	h = Indexed(h)
	var b PhaseBuilder
	for i := range h {
		b.Add(&h[i])
	}
	return b.Phase()
}

func (b *PhaseBuilder) newResourceWrite(op *history.Op) ResWrite {
	w := ResWrite{Index: op.Index, Time: op.Time, Fence: op.Fence, key: names.id(op.Key)}
	if op.Value != nil {
		w.value, w.has = *op.Value, hasValue
	}
	attr := func(name string, bit uint8) int64 {
		n, ok := attrInt(*op, name)
		if ok {
			w.has |= bit
		}
		return n
	}
	w.seq, w.expected = attr("seq", hasSeq), attr("expected", hasExpected)
	w.current, w.writer = attr("current", hasCurrent), attr("writer", hasWriter)
	if op.Token != "" {
		w.token = b.resourceToken(op.Token, w.writer, w.has&hasWriter != 0)
	}
	return w
}

// resourceToken returns a resource write's token: its writer's write
// that carried it when there is one, else a new one. The log is in apply
// order, so a process's writes come in the order it made them: each
// process's are matched from the last one matched, a few ahead at most
// (a write the resource never applied is skipped).
func (b *PhaseBuilder) resourceToken(tok string, writer int64, has bool) tokenRef {
	if has && writer >= 0 && writer <= math.MaxInt32 {
		if b.writes == nil {
			b.writes, b.next = map[int32][]int32{}, map[int32]int{}
			for i := range min(len(b.p.Ops), math.MaxInt32) {
				if o := &b.p.Ops[i]; o.bits&tokInv != 0 && o.F() == "write" {
					b.writes[o.Process] = append(b.writes[o.Process], int32(i))
				}
			}
		}
		p := int32(writer)
		mine, from := b.writes[p], b.next[p]
		for j := from; j < len(mine) && j < from+8; j++ {
			if t := b.p.Ops[mine[j]].token; t.String() == tok {
				b.next[p] = j + 1
				return t
			}
		}
	}
	return b.tokens.add(tok)
}

// Windows are the phase's fault windows (Windows).
func (p *Phase) Windows() []Window { return Windows(p.Events) }
