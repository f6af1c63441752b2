package checker

import (
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// TestLivenessContentionAfterRecovery: once another process re-acquired the
// crashed holder's key in time, a later acquire that happens to be pending
// at the deadline (ordinary contention) is no evidence of a stuck key.
// Regression test for a false alarm seen in the Chaos suite
// (redis-setnx/holder-crash: recovered after 400 ms, yet Invalid).
func TestLivenessContentionAfterRecovery(t *testing.T) {
	opt := Options{TTL: 500 * time.Millisecond, Slack: 200 * time.Millisecond}
	h := (&lockHist{}).
		op(1, "acquire", "k", 900, 901, history.OK).
		op(1, "read", "k", 902, 903, history.OK, lkResult(0)).
		fault(lkCrash(1000, "1", "k")).
		op(2, "acquire", "k", 1100, 1500, history.OK). // recovered after 500 ms
		op(2, "release", "k", 1501, 1502, history.OK).
		op(3, "acquire", "k", 1650, 1750, history.OK) // pending at the deadline (1700), behind p2
	lkWant(t, Liveness(h.build(), opt), results.Valid)
}
