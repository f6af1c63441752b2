package checker

import (
	"sort"
	"strconv"
	"testing"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// lkMs is a history time in milliseconds.
func lkMs(n int64) int64 { return n * 1e6 }

// lockHist builds hand-made histories: operations are added whole (invocation
// and completion) in any order; build sorts entries by time and indexes them.
type lockHist struct {
	ops []history.Op
	seq int64
}

type lkOpt func(inv, done *history.Op)

func lkToken(t string) lkOpt { return func(i, d *history.Op) { i.Token, d.Token = t, t } }
func lkFence(f uint64) lkOpt { return func(i, d *history.Op) { i.Fence, d.Fence = f, f } }
func lkValue(v int64) lkOpt  { return func(i, d *history.Op) { i.Value = history.Int(v) } }
func lkResult(v int64) lkOpt { return func(i, d *history.Op) { d.Value = history.Int(v) } }
func lkErr(e string) lkOpt   { return func(i, d *history.Op) { d.Error = e } }
func lkAttr(k, v string) lkOpt {
	return func(i, d *history.Op) {
		if i.Attrs == nil {
			i.Attrs = map[string]string{}
		}
		i.Attrs[k] = v
	}
}

// op adds f by process p on key, invoked at inv (ms) and completed at done
// (ms) with typ; done < 0 leaves it incomplete.
func (h *lockHist) op(p int, f, key string, inv, done int64, typ history.Type, opts ...lkOpt) *lockHist {
	i := history.Op{Time: lkMs(inv), Type: history.Invoke, Process: p, F: f, Key: key}
	d := history.Op{Time: lkMs(done), Type: typ, Process: p, F: f, Key: key}
	for _, o := range opts {
		o(&i, &d)
	}
	h.ops = append(h.ops, i)
	if done >= 0 {
		h.ops = append(h.ops, d)
	}
	return h
}

// cycle adds a full acquire/read/write/release of p on key: acquire at a,
// read at r (returns v), write v+1 at w (completing with wt), release at w+2.
func (h *lockHist) cycle(p int, key string, a, r, w int64, v int64, wt history.Type, tok string, f uint64) *lockHist {
	h.op(p, "acquire", key, a, a+1, history.OK, lkToken(tok), lkFence(f))
	h.op(p, "read", key, r, r+1, history.OK, lkResult(v))
	wopts := []lkOpt{lkValue(v + 1), lkToken(tok), lkFence(f)}
	if wt == history.Fail {
		wopts = append(wopts, lkErr("fenced"))
	}
	h.op(p, "write", key, w, w+1, wt, wopts...)
	h.op(p, "release", key, w+2, w+3, history.OK, lkToken(tok))
	return h
}

// resWrite appends a resource log entry (apply order = call order).
func (h *lockHist) resWrite(key string, writer int, newV, expected, current int64, tok string, f uint64) *lockHist {
	h.seq++
	h.ops = append(h.ops, history.Op{Time: lkMs(100000), Type: history.OK, Process: history.Resource, F: ResourceWrite,
		Key: key, Value: history.Int(newV), Token: tok, Fence: f, Attrs: map[string]string{
			"seq": strconv.FormatInt(h.seq, 10), "expected": strconv.FormatInt(expected, 10),
			"current": strconv.FormatInt(current, 10), "writer": strconv.Itoa(writer)}})
	return h
}

func (h *lockHist) final(key string, v int64) *lockHist {
	h.ops = append(h.ops, history.Op{Time: lkMs(100001), Type: history.OK, Process: history.Resource, F: ResourceFinal, Key: key, Value: history.Int(v)})
	return h
}

func (h *lockHist) fault(f history.Op) *lockHist {
	f.Process, f.Type = history.Nemesis, history.Info
	h.ops = append(h.ops, f)
	return h
}

func (h *lockHist) build() []history.Op {
	out := append([]history.Op(nil), h.ops...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time < out[j].Time })
	for i := range out {
		out[i].Index = int64(i)
	}
	return out
}

func lkWant(t *testing.T, v results.Verdict, want results.Validity) {
	t.Helper()
	if v.Valid != want {
		t.Fatalf("%s: valid = %s, want %s; summary: %s; violations: %+v", v.Checker, v.Valid, want, v.Summary, v.Violations)
	}
	if want == results.Invalid && len(v.Violations) == 0 {
		t.Fatalf("%s: invalid without a violation", v.Checker)
	}
	if want != results.Invalid && len(v.Violations) != 0 {
		t.Fatalf("%s: %s with violations %+v", v.Checker, want, v.Violations)
	}
}

func lkNames(t *testing.T, v results.Violation, ps ...int) {
	t.Helper()
	for _, p := range ps {
		found := false
		for _, q := range v.Processes {
			found = found || q == p
		}
		if !found {
			t.Errorf("violation %q does not name process %d (names %v)", v.Description, p, v.Processes)
		}
	}
}
