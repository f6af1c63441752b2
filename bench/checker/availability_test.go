package checker

import (
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// lkFailedAcquire marks a failed acquire as the workload does: its timeout
// (ms) and whether it was a TryAcquire.
func lkFailedAcquire(timeoutMs string, try bool) lkOpt {
	return func(i, d *history.Op) {
		d.Attrs = map[string]string{AttrTimeoutMs: timeoutMs}
		if try {
			d.Attrs[AttrTry] = "true"
		}
	}
}

// pauseWindow is a client fault (a paused holder) from a to b (ms).
func pauseWindow(h *lockHist, a, b int64) *lockHist {
	attrs := map[string]string{"id": "c1", "kind": "holder-pause", "process": "0"}
	return h.fault(history.Op{Time: lkMs(a), F: history.FaultStart, Fault: "holder-pause:k0=800ms", Key: "k0", Attrs: attrs}).
		fault(history.Op{Time: lkMs(b), F: history.FaultHeal, Fault: "holder-pause:k0=800ms", Key: "k0", Attrs: attrs})
}

func TestAvailability(t *testing.T) {
	notAcq := lkErr("not-acquired")
	for _, tc := range []struct {
		name    string
		h       *lockHist
		want    results.Validity
		kinds   []string
		measure map[string]float64
	}{
		{name: "every acquire ok", want: results.Valid,
			h: (&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.OK, "a", 0).cycle(1, "k0", 10, 12, 14, 1, history.OK, "b", 0)},
		{name: "gave up at once with its timeout unused", want: results.Invalid, kinds: []string{"gave-up-early"},
			h: (&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.OK, "a", 0).
				op(1, "acquire", "k0", 1, 2, history.Fail, notAcq, lkFailedAcquire("800", false))},
		{name: "a TryAcquire that finds the key held is the contract", want: results.Valid,
			h: (&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.OK, "a", 0).
				op(1, "acquire", "k0", 1, 2, history.Fail, notAcq, lkFailedAcquire("800", true))},
		{name: "timed out under contention while others got the key", want: results.Valid, measure: map[string]float64{"served_by_others": 1},
			h: (&lockHist{}).op(1, "acquire", "k0", 0, 800, history.Fail, notAcq, lkFailedAcquire("800", false)).
				cycle(0, "k0", 100, 102, 104, 0, history.OK, "a", 0)},
		{name: "timed out behind a holder whose release was lost", want: results.Valid, measure: map[string]float64{"blocked_by_holder": 1},
			h: (&lockHist{}).op(0, "acquire", "k0", 0, 1, history.OK, lkToken("a")).
				op(0, "release", "k0", 5, 1005, history.Info, lkErr("timeout")).
				op(1, "acquire", "k0", 2, 802, history.Info, lkErr("timeout"), lkFailedAcquire("800", false))},
		{name: "stalled: nobody got the free key and no fault was active", want: results.Invalid, kinds: []string{"stalled"},
			h: (&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.OK, "a", 0).
				op(1, "acquire", "k0", 10, 810, history.Fail, notAcq, lkFailedAcquire("800", false))},
		{name: "a possible orphan lease makes a stall unknown", want: results.Unknown,
			h: (&lockHist{}).op(0, "acquire", "k0", 0, 1, history.OK, lkToken("a")).
				op(0, "release", "k0", 5, 105, history.Info, lkErr("timeout")).
				op(1, "acquire", "k0", 700, 1500, history.Fail, notAcq, lkFailedAcquire("800", false))},
		{name: "one fast error on a loaded machine, the retry works", want: results.Valid, measure: map[string]float64{"served_by_others": 1},
			h: (&lockHist{}).op(1, "acquire", "k0", 0, 1, history.Info, lkErr("i/o timeout"), lkFailedAcquire("800", false)).
				cycle(1, "k0", 6, 8, 10, 0, history.OK, "b", 0)},
		{name: "node down: acquires fail in the window", want: results.Invalid, kinds: []string{"unavailable"},
			measure: map[string]float64{"window1_acquires": 3, "window1_failed": 2, "window1_failed_share": 2.0 / 3, "window1_unavailable": 2},
			h: killWindow((&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.OK, "a", 0).
				op(2, "acquire", "k0", 3, 20, history.OK, lkToken("b")).
				op(2, "release", "k0", 21, 22, history.OK, lkToken("b")).
				op(0, "acquire", "k0", 30, 31, history.Info, lkErr("connection refused"), lkFailedAcquire("800", false)).
				op(1, "acquire", "k0", 32, 832, history.Info, lkErr("timeout"), lkFailedAcquire("800", false)).
				cycle(0, "k0", 900, 902, 904, 1, history.OK, "c", 0), 5, 850)},
		{name: "a grant asked for before the fault does not show the faulted service working", want: results.Invalid, kinds: []string{"unavailable"},
			measure: map[string]float64{"window1_unavailable": 1},
			h: killWindow((&lockHist{}).
				op(0, "acquire", "k0", 0, 100, history.OK, lkToken("a")).
				op(0, "release", "k0", 101, 102, history.OK, lkToken("a")).
				op(1, "acquire", "k0", 10, 810, history.Info, lkErr("timeout"), lkFailedAcquire("800", false)), 5, 850)},
		{name: "a fault that leaves the lock working", want: results.Valid,
			measure: map[string]float64{"window1_acquires": 2, "window1_failed": 1, "window1_unavailable": 0},
			h: killWindow((&lockHist{}).
				op(1, "acquire", "k0", 10, 810, history.Fail, notAcq, lkFailedAcquire("800", false)).
				cycle(0, "k0", 100, 102, 104, 0, history.OK, "a", 0), 5, 850)},
		{name: "a paused holder blocks others: a client fault, not unavailability", want: results.Valid,
			h: pauseWindow((&lockHist{}).op(0, "acquire", "k0", 0, 1, history.OK, lkToken("a")).
				op(1, "acquire", "k0", 10, 810, history.Fail, notAcq, lkFailedAcquire("800", false)), 5, 805)},
		{name: "final probes are not judged", want: results.Valid,
			h: (&lockHist{}).op(1, "acquire", "k0", 10, 11, history.Fail, notAcq, lkAttr("probe", "final"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Availability(tc.h.build(), Options{TTL: 400 * time.Millisecond})
			lkWant(t, v, tc.want)
			for i, k := range tc.kinds {
				if i >= len(v.Violations) || v.Violations[i].Kind != k {
					t.Fatalf("violation %d: want kind %s, got %+v", i, k, v.Violations)
				}
			}
			for k, want := range tc.measure {
				if got := v.Measures[k]; got != want {
					t.Errorf("measure %s = %v, want %v (summary %s)", k, got, want, v.Summary)
				}
			}
			if tc.want == results.Invalid && (v.Violations[0].Description == "" || len(v.Violations[0].Processes) == 0) {
				t.Errorf("counterexample without description or process: %+v", v.Violations[0])
			}
		})
	}
}
