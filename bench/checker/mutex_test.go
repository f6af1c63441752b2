package checker

import (
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// TestMutualExclusionClientHistory feeds hand-made client histories (no
// resource log): overlap, no overlap, overlap hidden behind an info write;
// each case has a twin that flips its verdict.
func TestMutualExclusionClientHistory(t *testing.T) {
	cases := []struct {
		name  string
		h     *lockHist
		want  results.Validity
		names []int
	}{
		{
			name: "no overlap: B acquires after A released",
			h: (&lockHist{}).
				cycle(1, "k", 0, 2, 4, 0, history.OK, "a", 0).
				cycle(2, "k", 8, 10, 12, 1, history.OK, "b", 0),
			want: results.Valid,
		},
		{
			name: "overlap: A pauses past its lease, B reads and writes inside A's section",
			h: (&lockHist{}).
				cycle(1, "k", 0, 2, 40, 0, history.OK, "a", 0).
				cycle(2, "k", 10, 12, 14, 0, history.OK, "b", 0),
			want: results.Invalid, names: []int{1, 2},
		},
		{
			name: "overlap on different keys is no overlap",
			h: (&lockHist{}).
				cycle(1, "k1", 0, 2, 40, 0, history.OK, "a", 0).
				cycle(2, "k2", 10, 12, 14, 0, history.OK, "b", 0),
			want: results.Valid,
		},
		{
			name: "overlap where A's write was rejected (fenced) never touched the resource",
			h: (&lockHist{}).
				cycle(1, "k", 0, 2, 40, 0, history.Fail, "a", 1).
				cycle(2, "k", 10, 12, 14, 0, history.OK, "b", 2),
			want: results.Valid,
		},
		{
			name: "hidden behind info: A's write timed out and may land inside B's section",
			h: (&lockHist{}).
				cycle(1, "k", 0, 2, 4, 0, history.Info, "a", 0).
				cycle(2, "k", 10, 12, 14, 0, history.OK, "b", 0),
			want: results.Unknown,
		},
		{
			name: "same as above with A's write acknowledged: no overlap",
			h: (&lockHist{}).
				cycle(1, "k", 0, 2, 4, 0, history.OK, "a", 0).
				cycle(2, "k", 10, 12, 14, 1, history.OK, "b", 0),
			want: results.Valid,
		},
		{
			name: "definite overlap but one write indeterminate: unknown",
			h: (&lockHist{}).
				cycle(1, "k", 0, 2, 40, 0, history.Info, "a", 0).
				cycle(2, "k", 10, 12, 14, 0, history.OK, "b", 0),
			want: results.Unknown,
		},
		{
			name: "incomplete write (history ends) is indeterminate",
			h: (&lockHist{}).
				op(1, "acquire", "k", 0, 1, history.OK).
				op(1, "read", "k", 2, 3, history.OK, lkResult(0)).
				op(1, "write", "k", 4, -1, "", lkValue(1)).
				cycle(2, "k", 10, 12, 14, 0, history.OK, "b", 0),
			want: results.Unknown,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := MutualExclusion(c.h.build(), Options{Impl: "x"})
			lkWant(t, v, c.want)
			if v.Checker != MutualExclusionName || v.Impl != "x" {
				t.Errorf("checker %q impl %q", v.Checker, v.Impl)
			}
			if c.want == results.Invalid {
				lkNames(t, v.Violations[0], c.names...)
				if len(v.Violations[0].Indexes) == 0 || v.Violations[0].Keys[0] != "k" {
					t.Errorf("violation lacks indexes or key: %+v", v.Violations[0])
				}
			}
		})
	}
}

// TestMutualExclusionResourceOracle: the resource's own log decides, both
// ways, whatever the client history suggests.
func TestMutualExclusionResourceOracle(t *testing.T) {
	pause := history.Op{Time: lkMs(3), F: history.FaultStart, Fault: "holder-pause=2xttl",
		Key: "k", Attrs: map[string]string{"id": "f0", "kind": "holder-pause", "process": "1"}}
	heal := history.Op{Time: lkMs(39), F: history.FaultHeal, Fault: "holder-pause=2xttl", Attrs: map[string]string{"id": "f0", "kind": "holder-pause"}}

	t.Run("clobber: A's late write overwrites B's", func(t *testing.T) {
		h := (&lockHist{}).
			cycle(1, "k", 0, 2, 40, 0, history.OK, "a", 0).
			cycle(2, "k", 10, 12, 14, 0, history.OK, "b", 0).
			fault(pause).fault(heal).
			resWrite("k", 2, 1, 0, 0, "b", 0).
			resWrite("k", 1, 1, 0, 1, "a", 0).
			final("k", 1)
		v := MutualExclusion(h.build(), Options{})
		lkWant(t, v, results.Invalid)
		vi := v.Violations[0]
		lkNames(t, vi, 1, 2)
		if vi.Processes[0] != 1 {
			t.Errorf("first process should be the writer 1, got %v", vi.Processes)
		}
		if !strings.Contains(vi.Fault, "holder-pause") || !strings.Contains(vi.Fault, "p1") {
			t.Errorf("fault active not named: %q", vi.Fault)
		}
		if len(vi.Tokens) != 2 || vi.Tokens[0] != "a" || vi.Tokens[1] != "b" {
			t.Errorf("tokens %v, want [a b]", vi.Tokens)
		}
		if vi.Time != lkMs(40) {
			t.Errorf("time %d, want the writer's write invoke %d", vi.Time, lkMs(40))
		}
		if len(vi.Indexes) < 4 {
			t.Errorf("indexes %v: want the resource entries and the client read/write", vi.Indexes)
		}
		t.Log(vi.Description)
	})
	t.Run("clean log beats a suspicious client history", func(t *testing.T) {
		h := (&lockHist{}).
			cycle(1, "k", 0, 2, 40, 0, history.Fail, "a", 1).
			cycle(2, "k", 10, 12, 14, 0, history.OK, "b", 2).
			resWrite("k", 2, 1, 0, 0, "b", 2).
			final("k", 1)
		lkWant(t, MutualExclusion(h.build(), Options{}), results.Valid)
	})
	t.Run("info write decided by the log: it landed late", func(t *testing.T) {
		h := (&lockHist{}).
			cycle(1, "k", 0, 2, 4, 0, history.Info, "a", 0).
			cycle(2, "k", 10, 12, 14, 0, history.OK, "b", 0).
			resWrite("k", 1, 1, 0, 0, "a", 0). // A's write landed after B's read…
			resWrite("k", 2, 1, 0, 1, "b", 0). // …so B overwrote it
			final("k", 1)
		v := MutualExclusion(h.build(), Options{})
		lkWant(t, v, results.Invalid)
		lkNames(t, v.Violations[0], 2, 1)
	})
	t.Run("info write decided by the log: it never landed", func(t *testing.T) {
		h := (&lockHist{}).
			cycle(1, "k", 0, 2, 4, 0, history.Info, "a", 0).
			cycle(2, "k", 10, 12, 14, 0, history.OK, "b", 0).
			resWrite("k", 2, 1, 0, 0, "b", 0).
			final("k", 1)
		lkWant(t, MutualExclusion(h.build(), Options{}), results.Valid)
	})
	t.Run("several clobbered writers are named", func(t *testing.T) {
		h := (&lockHist{}).
			resWrite("k", 2, 1, 0, 0, "b", 0).
			resWrite("k", 3, 2, 1, 1, "c", 0).
			resWrite("k", 1, 1, 0, 2, "a", 0)
		v := MutualExclusion(h.build(), Options{})
		lkWant(t, v, results.Invalid)
		lkNames(t, v.Violations[0], 1, 2, 3)
	})
}
