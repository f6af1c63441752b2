package checker

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/faultline-dev/faultline/bench/history"
)

// An Operation and a ResWrite stay compact: the checks of a long run
// hold millions.
func TestOperationSize(t *testing.T) {
	if n := unsafe.Sizeof(Operation{}); n > 80 {
		t.Errorf("Operation is %d bytes, want at most 80", n)
	}
	if n := unsafe.Sizeof(ResWrite{}); n > 80 {
		t.Errorf("ResWrite is %d bytes, want at most 80", n)
	}
	if n := unsafe.Sizeof(span{}); n > 24 {
		t.Errorf("span is %d bytes, want at most 24", n)
	}
}

// Tokens read back from the arena as they were stored, whatever their
// length (a length of more than one varint byte, one longer than a
// chunk), and a process's repeated token is stored once, shared by the
// resource write that carries it.
func TestTokenArena(t *testing.T) {
	var a tokenArena
	long, huge := strings.Repeat("x", 300), strings.Repeat("y", tokenChunk+5)
	in := []string{"", "t1", long, "t2", huge, "t3"}
	var refs []tokenRef
	for _, s := range in {
		refs = append(refs, a.add(s))
	}
	for i, r := range refs {
		if got := r.String(); got != in[i] {
			t.Errorf("token %d: got %d bytes %.10q, want %d bytes %.10q", i, len(got), got, len(in[i]), in[i])
		}
	}
	h := []history.Op{
		{Index: 1, Time: 1, Type: history.Invoke, Process: 1, F: "acquire", Key: "k"},
		{Index: 2, Time: 2, Type: history.OK, Process: 1, F: "acquire", Key: "k", Token: long},
		{Index: 3, Time: 3, Type: history.Invoke, Process: 1, F: "write", Key: "k", Token: long, Value: history.Int(3)},
		{Index: 4, Time: 4, Type: history.OK, Process: 1, F: "write", Key: "k", Token: long},
		{Index: 5, Time: 5, Type: history.OK, Process: history.Resource, F: ResourceWrite, Key: "k", Token: long, Value: history.Int(3), Attrs: map[string]string{"writer": "1"}},
		{Index: 6, Time: 6, Type: history.OK, Process: history.Resource, F: ResourceWrite, Key: "k", Token: "t9", Value: history.Int(4), Attrs: map[string]string{"writer": "1"}},
	}
	p := NewPhase(h)
	if p.Ops[0].token != p.Ops[1].token || p.Ops[1].InvokeToken() != long || p.Ops[1].CompleteToken() != long {
		t.Errorf("the release's token is not the acquire's, stored once")
	}
	if v, ok := p.Writes[0].Value(); p.Writes[0].Token() != long || !ok || v != 3 {
		t.Errorf("resource write: token %.10q, value %d %v", p.Writes[0].Token(), v, ok)
	}
	if p.Writes[0].token != p.Ops[1].token {
		t.Errorf("the resource write's token is a copy, not its writer's write's")
	}
	if p.Writes[1].Token() != "t9" {
		t.Errorf("a resource write no client write carried: token %q, want t9", p.Writes[1].Token())
	}
}

// Both ends of an operation read back as the history had them, whether
// they carry the same token, fence and value or different ones.
func TestOperationEnds(t *testing.T) {
	h := []history.Op{
		{Index: 1, Time: 10, Type: history.Invoke, Process: 1, F: "acquire", Key: "k1", Attrs: map[string]string{"probe": "final"}},
		{Index: 2, Time: 20, Type: history.OK, Process: 1, F: "acquire", Key: "k1", Token: "t1", Fence: 7},
		{Index: 3, Time: 30, Type: history.Invoke, Process: 1, F: "write", Key: "k1", Token: "t1", Fence: 7, Value: history.Int(5)},
		{Index: 4, Time: 40, Type: history.Fail, Process: 1, F: "write", Key: "k1", Token: "t2", Fence: 9, Value: history.Int(6), Error: "fenced", Attrs: map[string]string{"try": "true"}},
		{Index: 5, Time: 50, Type: history.Invoke, Process: 2, F: "read", Key: "k2"},
		{Index: 6, Time: 60, Type: history.Invoke, Process: 2, F: "read", Key: "k2"},
		{Index: 7, Time: 70, Type: history.Info, Process: 2, F: "read", Key: "k2", Value: history.Int(3), Error: "timeout"},
	}
	ops := NewPhase(h).Ops
	if len(ops) != 4 {
		t.Fatalf("%d operations, want 4", len(ops))
	}
	got := func(o *Operation) string {
		iv, iok := o.InvokeValue()
		cv, cok := o.CompleteValue()
		return fmt.Sprintf("%s %s %v/%v tok %q/%q fence %d/%d val %d,%v/%d,%v err %q type %s attrs %q/%q %v",
			o.F(), o.Key(), o.Invoke, o.Complete, o.InvokeToken(), o.CompleteToken(), o.InvokeFence(), o.CompleteFence(),
			iv, iok, cv, cok, o.Error(), o.Type(), o.InvokeAttr("probe"), o.CompleteAttr("try"), o.Indexes())
	}
	want := []string{
		`acquire k1 {1 10}/{2 20} tok ""/"t1" fence 0/7 val 0,false/0,false err "" type ok attrs "final"/"" [1 2]`,
		`write k1 {3 30}/{4 40} tok "t1"/"t2" fence 7/9 val 5,true/6,true err "fenced" type fail attrs ""/"true" [3 4]`,
		`read k2 {5 50}/{0 0} tok ""/"" fence 0/0 val 0,false/0,false err "" type info attrs ""/"" [5]`,
		`read k2 {6 60}/{7 70} tok ""/"" fence 0/0 val 0,false/3,true err "timeout" type info attrs ""/"" [6 7]`,
	}
	for i := range ops {
		if g := got(&ops[i]); g != want[i] {
			t.Errorf("operation %d:\n got %s\nwant %s", i, g, want[i])
		}
	}
	if ops[2].Completed() || !ops[2].Indeterminate() || ops[2].End() != Never {
		t.Errorf("a never completed operation: completed %v, indeterminate %v, end %d", ops[2].Completed(), ops[2].Indeterminate(), ops[2].End())
	}
}

// BenchmarkLocksPhase: every lock checker on a correct counter history of
// 100,000 operations (25,000 cycles of 16 processes on 64 keys, with the
// resource's log), from the entries: the Phase built, then judged;
// phase-B/op is the heap a built phase keeps per operation.
func BenchmarkLocksPhase(b *testing.B) {
	h := counterHistory(25_000, 16, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, v := range LocksOf(NewPhase(h), Options{TTL: 1e9, Impl: "x"}) {
			if v.Valid == "false" {
				b.Fatalf("%s: %s", v.Checker, v.Summary)
			}
		}
	}
	b.ReportMetric(float64(4*25_000), "ops")
	// What a built phase keeps live (its operations, writes, tokens): the
	// heap the checks of a long run hold, per operation.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p := NewPhase(h)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(p)
	runtime.KeepAlive(h) // live in both readings: the difference is the phase
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(p.Ops)), "phase-B/op")
}

// counterHistory is a correct counter run: cycles of acquire, read,
// write, release, one process at a time per key, then the resource's log.
func counterHistory(cycles, procs, keys int) []history.Op {
	var h []history.Op
	var res []history.Op
	counter := make([]int64, keys)
	var idx, seq int64
	add := func(op history.Op) {
		op.Index, op.Impl = idx, "x"
		idx++
		h = append(h, op)
	}
	t := int64(0)
	for c := range cycles {
		p, k := c%procs, (c*7)%keys
		key := fmt.Sprintf("k%d", k)
		tok := fmt.Sprintf("tok-%d", c)
		v := counter[k]
		for _, f := range []string{"acquire", "read", "write", "release"} {
			inv := history.Op{Time: t, Type: history.Invoke, Process: p, F: f, Key: key}
			done := history.Op{Time: t + 500, Type: history.OK, Process: p, F: f, Key: key}
			switch f {
			case "acquire":
				done.Token = tok
			case "read":
				done.Value = history.Int(v)
			case "write":
				inv.Token, inv.Value = tok, history.Int(v+1)
			case "release":
				inv.Token = tok
			}
			add(inv)
			add(done)
			t += 1000
		}
		counter[k]++
		seq++
		res = append(res, history.Op{Time: t, Type: history.OK, Process: history.Resource, F: ResourceWrite, Key: key, Value: history.Int(v + 1),
			Attrs: map[string]string{"seq": fmt.Sprint(seq), "expected": fmt.Sprint(v), "current": fmt.Sprint(v), "writer": fmt.Sprint(p)}})
	}
	for _, op := range res {
		add(op)
	}
	for k := range keys {
		add(history.Op{Time: t, Type: history.OK, Process: history.Resource, F: ResourceFinal, Key: fmt.Sprintf("k%d", k), Value: history.Int(counter[k])})
	}
	return h
}
