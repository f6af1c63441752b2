package checker

import (
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// killWindow is a node fault from a to b (ms).
func killWindow(h *lockHist, a, b int64) *lockHist {
	attrs := map[string]string{"id": "f1", "kind": "kill"}
	return h.fault(history.Op{Time: lkMs(a), F: history.FaultStart, Fault: "kill:redis-1", Nodes: []string{"redis-1"}, Attrs: attrs}).
		fault(history.Op{Time: lkMs(b), F: history.FaultHeal, Fault: "kill:redis-1", Nodes: []string{"redis-1"}, Attrs: attrs})
}

func TestFenceOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		h     *lockHist
		want  results.Validity
		kinds []string // violation kinds, in order
		procs []int    // processes the first violation names
		rej   map[string]float64
	}{
		{name: "increasing fences, accepted writes", want: results.Valid,
			h: (&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.OK, "a", 1).cycle(1, "k0", 10, 12, 14, 1, history.OK, "b", 2)},
		{name: "no fencing tokens", want: results.Valid,
			h: (&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.OK, "a", 0).cycle(1, "k0", 10, 12, 14, 1, history.OK, "b", 0)},
		{name: "later acquisition with a smaller fence", want: results.Invalid, kinds: []string{"fence-regression"}, procs: []int{0, 1},
			h: (&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.OK, "a", 5).cycle(1, "k0", 10, 12, 14, 1, history.OK, "b", 3)},
		{name: "equal fence for another lease", want: results.Invalid, kinds: []string{"fence-regression"},
			h: (&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.OK, "a", 5).cycle(1, "k0", 10, 12, 14, 1, history.OK, "b", 5)},
		{name: "fences per key are independent", want: results.Valid,
			h: (&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.OK, "a", 5).cycle(1, "k1", 10, 12, 14, 0, history.OK, "b", 1)},
		{name: "concurrent acquisitions are not ordered", want: results.Valid,
			h: (&lockHist{}).op(0, "acquire", "k0", 0, 10, history.OK, lkToken("a"), lkFence(5)).
				op(1, "acquire", "k0", 5, 20, history.OK, lkToken("b"), lkFence(3))},
		{name: "re-entrant acquire returns the same lease", want: results.Valid,
			h: (&lockHist{}).op(0, "acquire", "k0", 0, 1, history.OK, lkToken("a"), lkFence(5)).
				op(0, "acquire", "k0", 2, 3, history.OK, lkToken("a"), lkFence(5))},
		{name: "indeterminate acquisition has no known fence", want: results.Valid,
			h: (&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.OK, "a", 5).op(1, "acquire", "k0", 10, 11, history.Info, lkErr("timeout"))},
		{name: "rejected write overtaken by a later holder", want: results.Valid, rej: map[string]float64{"rejected_overtaken": 1},
			h: (&lockHist{}).
				op(0, "acquire", "k0", 0, 1, history.OK, lkToken("a"), lkFence(1)).
				op(0, "read", "k0", 2, 3, history.OK, lkResult(0)).
				cycle(1, "k0", 500, 502, 504, 0, history.OK, "b", 2).
				op(0, "write", "k0", 800, 801, history.Fail, lkValue(1), lkToken("a"), lkFence(1), lkErr("fenced")).
				op(0, "release", "k0", 802, 803, history.Fail, lkToken("a"), lkErr("not-held"))},
		{name: "rejected inside an uncontested lease", want: results.Invalid, kinds: []string{"fenced-in-lease"}, procs: []int{0},
			rej: map[string]float64{"rejected_in_lease": 1},
			h:   (&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.Fail, "a", 3)},
		{name: "per-client fences: regression and rejection", want: results.Invalid, kinds: []string{"fence-regression", "fenced-in-lease"},
			h: (&lockHist{}).cycle(1, "k0", 0, 2, 4, 0, history.OK, "b", 9).cycle(0, "k0", 10, 12, 14, 1, history.Fail, "a", 3)},
		{name: "rejected while a fault was active", want: results.Valid, rej: map[string]float64{"rejected_during_fault": 1},
			h: killWindow((&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.Fail, "a", 3), 3, 50)},
		{name: "holders before the writer's grant do not explain a rejection", want: results.Invalid, kinds: []string{"fenced-in-lease"},
			h: (&lockHist{}).cycle(1, "k0", 0, 2, 4, 0, history.OK, "b", 9).
				op(0, "acquire", "k0", 1, 10, history.OK, lkToken("a"), lkFence(3)).
				op(0, "read", "k0", 11, 12, history.OK, lkResult(1)).
				op(0, "write", "k0", 13, 14, history.Fail, lkValue(2), lkToken("a"), lkFence(3), lkErr("fenced"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := FenceOrder(tc.h.build(), Options{TTL: 400 * time.Millisecond})
			lkWant(t, v, tc.want)
			if v.Count != len(v.Violations) {
				t.Errorf("count %d, %d violations", v.Count, len(v.Violations))
			}
			for i, k := range tc.kinds {
				if i >= len(v.Violations) || v.Violations[i].Kind != k {
					t.Fatalf("violation %d: want kind %s, got %+v", i, k, v.Violations)
				}
			}
			if len(tc.procs) > 0 {
				lkNames(t, v.Violations[0], tc.procs...)
				if !strings.Contains(v.Violations[0].Description, "fence") {
					t.Errorf("description does not name the fences: %s", v.Violations[0].Description)
				}
			}
			for k, want := range tc.rej {
				if v.Measures[k] != want {
					t.Errorf("measure %s = %v, want %v (summary %s)", k, v.Measures[k], want, v.Summary)
				}
			}
		})
	}
}
