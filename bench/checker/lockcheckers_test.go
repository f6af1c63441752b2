package checker

import (
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

func TestLostUpdate(t *testing.T) {
	twoWrites := func() *lockHist {
		return (&lockHist{}).
			cycle(1, "k", 0, 2, 40, 0, history.OK, "a", 0).
			cycle(2, "k", 10, 12, 14, 0, history.OK, "b", 0)
	}
	// Table with explicit numbers: acked ok writes, info writes, final.
	type row struct {
		name        string
		acked, info int
		final       int64
		want        results.Validity
		kind        string
		initialAttr string
		skipFinal   bool
	}
	rows := []row{
		{name: "final == acked", acked: 3, final: 3, want: results.Valid},
		{name: "final < acked: lost", acked: 3, final: 2, want: results.Invalid, kind: "lost-update"},
		{name: "indeterminate write landed", acked: 2, info: 1, final: 3, want: results.Valid},
		{name: "indeterminate write did not land", acked: 2, info: 1, final: 2, want: results.Valid},
		{name: "more than acked + indeterminate: phantom", acked: 2, info: 1, final: 4, want: results.Invalid, kind: "phantom-update"},
		{name: "initial value honoured", acked: 2, final: 12, initialAttr: "10", want: results.Valid},
		{name: "no final counter", acked: 2, skipFinal: true, want: results.Unknown},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			h := &lockHist{}
			tm := int64(0)
			for i := 0; i < r.acked; i++ {
				h.cycle(i+1, "k", tm, tm+2, tm+4, int64(i), history.OK, "t", 0)
				tm += 10
			}
			for i := 0; i < r.info; i++ {
				h.cycle(100+i, "k", tm, tm+2, tm+4, int64(r.acked+i), history.Info, "t", 0)
				tm += 10
			}
			if !r.skipFinal {
				h.final("k", r.final)
				if r.initialAttr != "" {
					h.ops[len(h.ops)-1].Attrs = map[string]string{"initial": r.initialAttr}
				}
			}
			v := LostUpdate(h.build(), Options{})
			lkWant(t, v, r.want)
			if r.kind != "" && v.Violations[0].Kind != r.kind {
				t.Errorf("kind %q, want %q", v.Violations[0].Kind, r.kind)
			}
		})
	}
	t.Run("lost update names the writers of the same value", func(t *testing.T) {
		v := LostUpdate(twoWrites().final("k", 1).build(), Options{})
		lkWant(t, v, results.Invalid)
		lkNames(t, v.Violations[0], 1, 2)
		if !strings.Contains(v.Violations[0].Description, "both wrote 1") {
			t.Errorf("description: %s", v.Violations[0].Description)
		}
		if v.Measures["lost"] != 1 {
			t.Errorf("lost = %v", v.Measures["lost"])
		}
	})
}

func TestFencing(t *testing.T) {
	t.Run("resource log non-decreasing, rejected writes counted", func(t *testing.T) {
		h := (&lockHist{}).
			cycle(1, "k", 0, 2, 40, 0, history.Fail, "a", 1).
			cycle(2, "k", 10, 12, 14, 0, history.OK, "b", 2).
			resWrite("k", 2, 1, 0, 0, "b", 2).
			resWrite("k", 2, 2, 1, 1, "b", 2).
			resWrite("k", 3, 3, 2, 2, "c", 3)
		v := Fencing(h.build(), Options{})
		lkWant(t, v, results.Valid)
		if v.Measures["fenced"] != 1 {
			t.Errorf("fenced = %v, want 1", v.Measures["fenced"])
		}
	})
	t.Run("resource accepted a stale fence", func(t *testing.T) {
		h := (&lockHist{}).
			resWrite("k", 2, 1, 0, 0, "b", 2).
			resWrite("k", 1, 1, 0, 1, "a", 1)
		v := Fencing(h.build(), Options{})
		lkWant(t, v, results.Invalid)
		lkNames(t, v.Violations[0], 1, 2)
		if v.Violations[0].Kind != "stale-fence" {
			t.Errorf("kind %q", v.Violations[0].Kind)
		}
	})
	t.Run("client history: stale write acked after a newer one", func(t *testing.T) {
		h := (&lockHist{}).
			cycle(1, "k", 0, 2, 40, 0, history.OK, "a", 1).
			cycle(2, "k", 10, 12, 14, 0, history.OK, "b", 2)
		v := Fencing(h.build(), Options{})
		lkWant(t, v, results.Invalid)
		lkNames(t, v.Violations[0], 1, 2)
	})
	t.Run("client history: same writes, stale one rejected", func(t *testing.T) {
		h := (&lockHist{}).
			cycle(1, "k", 0, 2, 40, 0, history.Fail, "a", 1).
			cycle(2, "k", 10, 12, 14, 0, history.OK, "b", 2)
		v := Fencing(h.build(), Options{})
		lkWant(t, v, results.Valid)
		if v.Measures["fenced"] != 1 {
			t.Errorf("fenced = %v", v.Measures["fenced"])
		}
	})
	t.Run("concurrent writes are not ordered", func(t *testing.T) {
		h := (&lockHist{}).
			op(1, "write", "k", 10, 20, history.OK, lkFence(2)).
			op(2, "write", "k", 12, 18, history.OK, lkFence(1))
		lkWant(t, Fencing(h.build(), Options{}), results.Valid)
	})
	t.Run("no fences at all", func(t *testing.T) {
		h := (&lockHist{}).cycle(1, "k", 0, 2, 4, 0, history.OK, "a", 0)
		v := Fencing(h.build(), Options{})
		lkWant(t, v, results.Valid)
		if !strings.Contains(v.Summary, "no fencing") {
			t.Errorf("summary %q", v.Summary)
		}
	})
}

// lkCrash is a holder-crash nemesis event of process p on key at ms.
func lkCrash(at int64, p string, key string) history.Op {
	return history.Op{Time: lkMs(at), F: history.FaultStart, Fault: "holder-crash", Key: key,
		Attrs: map[string]string{"id": "f0", "kind": "holder-crash", "process": p}}
}

func TestLiveness(t *testing.T) {
	opt := Options{TTL: 500 * time.Millisecond, Slack: 200 * time.Millisecond}
	base := func() *lockHist {
		return (&lockHist{}).
			op(1, "acquire", "k", 900, 901, history.OK).
			op(1, "read", "k", 902, 903, history.OK, lkResult(0)).
			fault(lkCrash(1000, "1", "k"))
	}
	cases := []struct {
		name string
		h    *lockHist
		want results.Validity
	}{
		{"recovered within ttl+slack", base().op(2, "acquire", "k", 1100, 1500, history.OK).op(2, "release", "k", 1501, 1502, history.OK), results.Valid},
		{"blocking acquire waited past ttl+slack", base().op(2, "acquire", "k", 1100, 3000, history.OK), results.Invalid},
		{"try-acquire failed past ttl+slack, never recovered", base().op(2, "acquire", "k", 2000, 2001, history.Fail, lkErr("not-acquired")).op(3, "read", "x", 4000, 4001, history.OK), results.Invalid},
		{"try-acquire failed before the deadline, recovered in time", base().op(2, "acquire", "k", 1100, 1101, history.Fail, lkErr("not-acquired")).op(2, "acquire", "k", 1400, 1401, history.OK), results.Valid},
		{"first try after the deadline succeeds: not stuck", base().op(2, "acquire", "k", 3000, 3001, history.OK), results.Valid},
		{"run ended before ttl+slack", base().op(3, "read", "x", 1200, 1201, history.OK), results.Unknown},
		{"nobody tried the key again", base().op(3, "read", "x", 5000, 5001, history.OK), results.Unknown},
		{"the crashed process's own id does not count", base().op(1, "acquire", "k", 1100, 1200, history.OK).op(2, "acquire", "k", 2000, 2001, history.Fail, lkErr("not-acquired")), results.Invalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Liveness(c.h.build(), opt)
			lkWant(t, v, c.want)
			if c.want == results.Invalid {
				lkNames(t, v.Violations[0], 1)
				if v.Violations[0].Kind != "liveness" || v.Violations[0].Fault == "" {
					t.Errorf("violation %+v", v.Violations[0])
				}
			}
		})
	}
	t.Run("recovery measured", func(t *testing.T) {
		v := Liveness(cases[0].h.build(), opt)
		if v.Measures["recovery_ms_p50"] != 500 || v.Measures["recovery_ms_max"] != 500 {
			t.Errorf("measures %v, want recovery 500 ms", v.Measures)
		}
	})
	t.Run("no crash", func(t *testing.T) {
		lkWant(t, Liveness((&lockHist{}).cycle(1, "k", 0, 2, 4, 0, history.OK, "a", 0).build(), opt), results.Valid)
	})
}

func TestLeakedLocks(t *testing.T) {
	state := func(key, pttl, live string) history.Op {
		a := map[string]string{"pttl": pttl}
		if live != "" {
			a["live"] = live
		}
		return history.Op{Time: lkMs(5000), Type: history.OK, Process: history.Resource, F: LockState, Key: key, Attrs: a}
	}
	with := func(ops ...history.Op) []history.Op {
		h := &lockHist{}
		h.cycle(1, "k", 0, 2, 4, 0, history.OK, "a", 0)
		h.ops = append(h.ops, ops...)
		return h.build()
	}
	cases := []struct {
		name string
		h    []history.Op
		want results.Validity
	}{
		{"all keys free", with(state("k", "-2", ""), state("k2", "-2", "")), results.Valid},
		{"never expires (SETNX then crash before EXPIRE)", with(state("k", "-1", "")), results.Invalid},
		{"still held after the quiet period", with(state("k", "350", "")), results.Invalid},
		{"held by a live worker", with(state("k", "350", "true")), results.Valid},
		{"postgres held flag", with(history.Op{Process: history.Resource, F: LockState, Key: "k", Attrs: map[string]string{"held": "true"}}), results.Invalid},
		{"nothing recorded", with(), results.Unknown},
		{"final probe took every key", (&lockHist{}).op(9, "acquire", "k", 10, 11, history.OK, lkAttr("probe", "final")).build(), results.Valid},
		{"final probe found the key held", (&lockHist{}).op(9, "acquire", "k", 10, 11, history.Fail, lkErr("not-acquired"), lkAttr("probe", "final")).build(), results.Invalid},
		{"final probe timed out", (&lockHist{}).op(9, "acquire", "k", 10, 11, history.Info, lkErr("timeout"), lkAttr("probe", "final")).build(), results.Unknown},
		{"final probe timed out, its retry took the key", (&lockHist{}).
			op(9, "acquire", "k", 10, 11, history.Info, lkErr("timeout"), lkAttr("probe", "final")).
			op(9, "acquire", "k", 20, 21, history.OK, lkAttr("probe", "final")).build(), results.Valid},
		{"final probe timed out, its retry found the key held", (&lockHist{}).
			op(9, "acquire", "k", 10, 11, history.Info, lkErr("timeout"), lkAttr("probe", "final")).
			op(9, "acquire", "k", 20, 21, history.Fail, lkErr("not-acquired"), lkAttr("probe", "final")).build(), results.Invalid},
		{"final probe and its retry timed out", (&lockHist{}).
			op(9, "acquire", "k", 10, 11, history.Info, lkErr("timeout"), lkAttr("probe", "final")).
			op(9, "acquire", "k", 20, 21, history.Info, lkErr("timeout"), lkAttr("probe", "final")).build(), results.Unknown},
		{"another key's probe does not settle a timed-out one", (&lockHist{}).
			op(9, "acquire", "k", 10, 11, history.Info, lkErr("timeout"), lkAttr("probe", "final")).
			op(9, "acquire", "j", 20, 21, history.OK, lkAttr("probe", "final")).build(), results.Unknown},
		{"live probe found the key held, final probe free (leaked on a live session)", (&lockHist{}).
			op(9, "acquire", "k", 10, 11, history.Fail, lkErr("not-acquired"), lkAttr("probe", "live")).
			op(10, "acquire", "k", 12, 13, history.OK, lkAttr("probe", "final")).build(), results.Invalid},
		{"live and final probes find the key held: one plain leak", (&lockHist{}).
			op(9, "acquire", "k", 10, 11, history.Fail, lkErr("not-acquired"), lkAttr("probe", "live")).
			op(10, "acquire", "k", 12, 13, history.Fail, lkErr("not-acquired"), lkAttr("probe", "final")).build(), results.Invalid},
		{"live probe timed out", (&lockHist{}).op(9, "acquire", "k", 10, 11, history.Info, lkErr("timeout"), lkAttr("probe", "live")).build(), results.Unknown},
		{"live and final probes free", (&lockHist{}).
			op(9, "acquire", "k", 10, 11, history.OK, lkAttr("probe", "live")).
			op(10, "acquire", "k", 12, 13, history.OK, lkAttr("probe", "final")).build(), results.Valid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := LeakedLocks(c.h, Options{})
			lkWant(t, v, c.want)
		})
	}
	if v := LeakedLocks((&lockHist{}).op(9, "acquire", "k", 10, 11, history.Fail, lkErr("not-acquired"), lkAttr("probe", "live")).build(), Options{}); len(v.Violations) != 1 || v.Violations[0].Kind != "leak-live" {
		t.Errorf("live probe that found the key held: want one leak-live violation, got %+v", v.Violations)
	}
	v := LeakedLocks(with(state("k", "-1", "")), Options{})
	if v.Measures["leaked_forever"] != 1 || !strings.Contains(v.Violations[0].Description, "never") {
		t.Errorf("PTTL -1 should read as never expiring: %+v", v)
	}
}

func TestLocksPerImplementation(t *testing.T) {
	h := &lockHist{}
	// "bad": A pauses, B writes inside A's section; "good": sequential.
	h.cycle(1, "k", 0, 2, 40, 0, history.OK, "a", 0).cycle(2, "k", 10, 12, 14, 0, history.OK, "b", 0)
	for i := range h.ops {
		h.ops[i].Impl = "bad"
	}
	n := len(h.ops)
	h.cycle(3, "k", 0, 2, 4, 0, history.OK, "c", 0).cycle(4, "k", 8, 10, 12, 1, history.OK, "d", 0)
	for i := n; i < len(h.ops); i++ {
		h.ops[i].Impl = "good"
	}
	vs := Locks(h.build(), Options{TTL: 10 * time.Millisecond})
	const perImpl = 7
	if len(vs) != 2*perImpl {
		t.Fatalf("got %d verdicts, want %d per implementation", len(vs), perImpl)
	}
	for _, v := range vs {
		if v.Checker == MutualExclusionName {
			want := results.Valid
			if v.Impl == "bad" {
				want = results.Invalid
			}
			lkWant(t, v, want)
		}
	}
	if vs[0].Impl != "bad" || vs[perImpl].Impl != "good" {
		t.Errorf("order: %s, %s", vs[0].Impl, vs[perImpl].Impl)
	}
}

func TestWindowsAndActiveFault(t *testing.T) {
	h := (&lockHist{}).
		fault(history.Op{Time: lkMs(10), F: history.FaultStart, Fault: "kill:redis-2", Nodes: []string{"redis-2"}, Attrs: map[string]string{"id": "f0", "kind": "kill"}}).
		fault(history.Op{Time: lkMs(20), F: history.FaultStart, Fault: "partition", Nodes: []string{"redis-1"}, Error: "start failed: x", Attrs: map[string]string{"id": "f1"}}).
		fault(history.Op{Time: lkMs(30), F: history.FaultHeal, Fault: "kill:redis-2", Attrs: map[string]string{"id": "f0"}}).
		fault(history.Op{Time: lkMs(40), F: history.FaultStart, Fault: "latency:all=100ms"})
	ws := Windows(h.build())
	if len(ws) != 2 || ws[0].End != lkMs(30) || ws[1].End != Never || ws[1].Kind != "latency" {
		t.Fatalf("windows %+v", ws)
	}
	if f := ActiveFault(ws, lkMs(25), lkMs(26)); f != "kill:redis-2" {
		t.Errorf("active at 25ms: %q", f)
	}
	if f := ActiveFault(ws, lkMs(31), lkMs(35)); f != "" {
		t.Errorf("active at 31ms: %q", f)
	}
	if f := ActiveFault(ws, lkMs(50), lkMs(50)); !strings.HasPrefix(f, "latency") {
		t.Errorf("active at 50ms: %q", f)
	}
}
