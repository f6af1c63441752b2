package checker

import (
	"strconv"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// failoverWindow is a failover (redis-1 lost at a ms, redis-2 promoted at
// p ms, old primary back at b ms).
func failoverWindow(h *lockHist, a, p, b int64) *lockHist {
	attrs := map[string]string{"id": "f0", "kind": FailoverKind, AttrOldPrimary: "redis-1", AttrNewPrimary: "redis-2", AttrPromoted: itoa(lkMs(p))}
	return h.fault(history.Op{Time: lkMs(a), F: history.FaultStart, Fault: "failover", Nodes: []string{"redis-1"}, Attrs: attrs}).
		fault(history.Op{Time: lkMs(b), F: history.FaultHeal, Fault: "failover", Nodes: []string{"redis-1"}, Attrs: map[string]string{"id": "f0", "kind": FailoverKind}})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// The mutant and its twin: A's lock, acknowledged before the primary dies
// (ttl 10 s), is gone from the promoted replica when B acquires at 1.5 s
// (L6: the replica never got it) — or B's acquire fails until A releases
// after the failover, and A's release finds its key (WAIT made it reach
// the replica).
func TestLostAckWrite(t *testing.T) {
	notAcq := lkErr("not-acquired")
	for _, tc := range []struct {
		name    string
		h       *lockHist
		want    results.Validity
		measure map[string]float64
		names   []int
	}{
		{name: "mutant: B acquires A's live key on the new primary", want: results.Invalid, names: []int{0, 1},
			measure: map[string]float64{"at_stake": 1, "lost": 1},
			h: failoverWindow((&lockHist{}).op(0, "acquire", "k0", 0, 1, history.OK, lkToken("a")).
				op(1, "acquire", "k0", 1400, 1500, history.OK, lkToken("b")).
				op(0, "release", "k0", 3000, 3001, history.Fail, lkErr("not-held"), lkToken("a")), 100, 1200, 5000)},
		{name: "twin: the key survived, B waits for A's release", want: results.Valid,
			measure: map[string]float64{"at_stake": 1, "lost": 0, "kept": 1},
			h: failoverWindow((&lockHist{}).op(0, "acquire", "k0", 0, 1, history.OK, lkToken("a")).
				op(1, "acquire", "k0", 1400, 2900, history.Fail, notAcq).
				op(0, "release", "k0", 3000, 3001, history.OK, lkToken("a")).
				op(1, "acquire", "k0", 3002, 3003, history.OK, lkToken("b")), 100, 1200, 5000)},
		{name: "mutant: the holder's own release finds its key gone", want: results.Invalid, names: []int{0},
			h: failoverWindow((&lockHist{}).op(0, "acquire", "k0", 0, 1, history.OK, lkToken("a")).
				op(0, "release", "k0", 2000, 2001, history.Fail, lkErr("not-held"), lkToken("a")), 100, 1200, 5000)},
		{name: "the lease expired before anyone looked: not lost, unobserved", want: results.Unknown,
			measure: map[string]float64{"at_stake": 1, "lost": 0, "unobserved": 1},
			h: failoverWindow((&lockHist{}).op(0, "acquire", "k0", 0, 1, history.OK, lkToken("a")).
				op(1, "acquire", "k0", 10500, 10600, history.OK, lkToken("b")), 100, 1200, 12000)},
		{name: "released before the failover: nothing at stake (untested)", want: results.Unknown,
			h: failoverWindow((&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.OK, "a", 0).
				op(1, "acquire", "k0", 1400, 1500, history.OK, lkToken("b")), 100, 1200, 5000)},
		{name: "no failover: untested", want: results.Unknown,
			h: (&lockHist{}).op(0, "acquire", "k0", 0, 1, history.OK, lkToken("a")).
				op(1, "acquire", "k0", 1400, 1500, history.OK, lkToken("b"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := LostAckWrite(tc.h.build(), Options{TTL: 10 * time.Second})
			lkWant(t, v, tc.want)
			for k, want := range tc.measure {
				if got := v.Measures[k]; got != want {
					t.Errorf("measure %s = %v, want %v (%s)", k, got, want, v.Summary)
				}
			}
			if len(tc.names) > 0 {
				lkNames(t, v.Violations[0], tc.names...)
			}
		})
	}
}

// Locks judges lost-ack-write only when the history has a failover.
func TestLocksAddsLostAckWriteOnFailover(t *testing.T) {
	plain := (&lockHist{}).cycle(0, "k0", 0, 2, 4, 0, history.OK, "a", 0)
	for _, v := range Locks(plain.build(), Options{TTL: time.Second}) {
		if v.Checker == LostAckWriteName {
			t.Fatalf("lost-ack-write judged a history without failover: %+v", v)
		}
	}
	h := failoverWindow((&lockHist{}).op(0, "acquire", "k0", 0, 1, history.OK, lkToken("a")).
		op(1, "acquire", "k0", 1400, 1500, history.OK, lkToken("b")), 100, 1200, 5000)
	found := false
	for _, v := range Locks(h.build(), Options{TTL: 10 * time.Second}) {
		found = found || (v.Checker == LostAckWriteName && v.Valid == results.Invalid)
	}
	if !found {
		t.Fatal("Locks did not report the lost acknowledged write")
	}
}

// Failovers: loss → promotion (infra) and loss → first write invoked after
// the loss (clients); the availability verdict carries both.
func TestFailoverTimes(t *testing.T) {
	h := failoverWindow((&lockHist{}).op(0, "acquire", "k0", 50, 150, history.OK, lkToken("a")). // invoked before the loss
													op(2, "acquire", "k1", 101, 105, history.OK, lkToken("c")). // the old primary, not dead yet
													op(1, "acquire", "k0", 300, 900, history.Fail, lkErr("not-acquired")).
													op(1, "acquire", "k0", 1300, 1400, history.OK, lkToken("b")), 100, 1200, 5000).build()
	fs := Failovers(h)
	if len(fs) != 1 {
		t.Fatalf("%d failovers, want 1", len(fs))
	}
	f := fs[0]
	if f.Old != "redis-1" || f.New != "redis-2" || f.PromotionMs != 1100 || f.FailoverMs != 1300 {
		t.Fatalf("failover %+v: want redis-1→redis-2, promotion 1100 ms, first write 1300 ms", f)
	}
	v := Availability(h, Options{TTL: 400 * time.Millisecond})
	if v.Measures["failover1_unavailable_ms"] != 1300 || v.Measures["failover1_promotion_ms"] != 1100 {
		t.Fatalf("availability measures %v: want failover1_unavailable_ms 1300, failover1_promotion_ms 1100", v.Measures)
	}
	// No write after the loss: no failover time, said so.
	h = failoverWindow((&lockHist{}).op(1, "acquire", "k0", 300, 900, history.Fail, lkErr("not-acquired")), 100, 1200, 5000).build()
	if f := Failovers(h)[0]; f.FirstWrite != 0 || f.FailoverMs != 0 {
		t.Fatalf("no write after the loss, got %+v", f)
	}
}
