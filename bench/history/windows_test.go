package history

import "testing"

// Fault events pair by id: two overlapping windows of the same spec end at
// their own heals (pairing by spec text would swap them); a start that
// failed opens nothing; events without an id pair by spec, first in first
// out; a window never healed says so.
func TestWindowsPairByID(t *testing.T) {
	ev := func(idx, t int64, f, spec, id, errs string) Op {
		op := Op{Index: idx, Time: t, Type: Info, Process: Nemesis, F: f, Fault: spec, Error: errs}
		if id != "" {
			op.Attrs = map[string]string{"id": id, "kind": "pause"}
		}
		return op
	}
	h := []Op{
		ev(0, 10, FaultStart, "pause:redis-1", "a", ""),
		ev(1, 20, FaultStart, "pause:redis-1", "b", ""),
		{Index: 2, Time: 25, Type: OK, Process: 3, F: "acquire"},
		ev(3, 30, FaultHeal, "pause:redis-1", "b", ""),
		ev(4, 40, FaultHeal, "pause:redis-1", "a", ""),
		ev(5, 50, FaultStart, "kill:redis-2", "c", "no such node"),
		ev(6, 55, FaultHeal, "kill:redis-2", "c", ""),
		ev(7, 60, FaultStart, "latency:redis-1=5ms", "", ""),
		ev(8, 70, FaultHeal, "latency:redis-1=5ms", "", ""),
		ev(9, 80, FaultStart, "partition:redis-3", "d", ""),
	}
	got := Windows(h)
	want := []struct {
		id, kind   string
		start, end int64
		healed     bool
	}{
		{"a", "pause", 10, 40, true},
		{"b", "pause", 20, 30, true},
		{"", "latency", 60, 70, true},
		{"d", "pause", 80, 80, false},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d windows %+v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.ID != w.id || g.Kind != w.kind || g.Start != w.start || g.End != w.end || g.Healed != w.healed {
			t.Errorf("window %d = %+v, want %+v", i, g, w)
		}
	}
}
