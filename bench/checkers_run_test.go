package bench

import (
	"context"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/results"
)

// onlyInvalid fails t unless exactly the named checkers are invalid for
// impl (the mutant is caught by them and by nothing else), and every other
// verdict is valid.
func onlyInvalid(t *testing.T, res *results.Results, impl string, checkers ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, c := range checkers {
		want[c] = true
		if v := verdict(res, impl, c); v.Valid != results.Invalid || v.Count == 0 {
			t.Errorf("%s: %s is %s with %d violations (%s), want caught", impl, c, v.Valid, v.Count, v.Summary)
		}
	}
	for _, v := range res.Verdicts {
		if v.Impl == impl && !want[v.Checker] && v.Valid != results.Valid {
			t.Errorf("%s: %s is %s (%s), want valid", impl, v.Checker, v.Valid, v.Summary)
		}
	}
}

// TestRunFenceOrderCatchesPerClientFence: with no fault at all, the mutant
// whose fence counts per client passes every other checker while the
// fencing resource rejects most of its correct writes; fence-order catches
// it (regressions and rejections inside uncontested leases). Its correct
// twin redis-fenced is clean.
func TestRunFenceOrderCatchesPerClientFence(t *testing.T) {
	res, _, err := runForTest(t, context.Background(), Config{
		Impls: []string{"redis-fence-per-client", "redis-fenced"}, Workload: "fenced-counter",
		Clients: 3, Keys: 1, TTL: 400 * time.Millisecond, Duration: 1500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	onlyInvalid(t, res, "redis-fence-per-client", "fence-order")
	onlyInvalid(t, res, "redis-fenced")
	v := verdict(res, "redis-fence-per-client", "fence-order")
	kinds := map[string]int{}
	for _, x := range v.Violations {
		kinds[x.Kind]++
	}
	if kinds["fence-regression"] == 0 || kinds["fenced-in-lease"] == 0 {
		t.Errorf("fence-order counterexamples by kind %v, want both fence-regression and fenced-in-lease", kinds)
	}
	ir := res.Impl("redis-fence-per-client")
	cycles := ir.Ops["cycle"].Count
	t.Logf("mutant: %d cycles, %d writes rejected as fenced; fence-order: %s", cycles, ir.Counters["fenced"], v.Summary)
	t.Logf("twin: %s", verdict(res, "redis-fenced", "fence-order").Summary)
}

// TestRunAvailabilityCatchesAcquireOnce: with no fault, the mutant whose
// Acquire gives up after one attempt is caught by availability alone
// (gave-up-early); its correct twin redis-setnx is clean, availability
// included, under the same contention.
func TestRunAvailabilityCatchesAcquireOnce(t *testing.T) {
	res, _, err := runForTest(t, context.Background(), Config{
		Impls: []string{"redis-acquire-once", "redis-setnx"}, Workload: "counter",
		Clients: 3, Keys: 1, TTL: 400 * time.Millisecond, Duration: 1500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	onlyInvalid(t, res, "redis-acquire-once", "availability")
	onlyInvalid(t, res, "redis-setnx")
	v := verdict(res, "redis-acquire-once", "availability")
	if len(v.Violations) == 0 || v.Violations[0].Kind != "gave-up-early" {
		t.Errorf("availability counterexamples %+v, want gave-up-early", v.Violations)
	}
	t.Logf("mutant: %s", v.Summary)
	t.Logf("twin: %s", verdict(res, "redis-setnx", "availability").Summary)
}
