package bench

import (
	"context"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/results"
)

// Workers sharing one Locker (--share 2), as goroutines share a client in a
// service: the mutant that takes a session advisory lock through a
// connection pool re-enters or leaks the lock (the live probe, run while
// the owners' clients are open, finds a key held by an idle pooled
// session; the final probe after their close finds it free), while
// pg-advisory (one dedicated session, sharers wait) and redis-setnx (a
// token per lease) stay safe when shared.
func TestRunShareCatchesPooledSessionLock(t *testing.T) {
	res, ops, err := runForTest(t, context.Background(), Config{
		Impls: []string{"pg-advisory-pool", "pg-advisory", "redis-setnx"}, Workload: "counter",
		Clients: 4, Share: 2, Keys: 1, TTL: 400 * time.Millisecond, Duration: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Config["share"]; got != float64(2) {
		t.Errorf("results config share = %v, want 2", got)
	}
	me, leaks := verdict(res, "pg-advisory-pool", "mutual-exclusion"), verdict(res, "pg-advisory-pool", "leaked-locks")
	if me.Valid != results.Invalid && leaks.Valid != results.Invalid {
		t.Errorf("pg-advisory-pool shared by 2 workers: mutual-exclusion %s (%s), leaked-locks %s (%s): want it caught",
			me.Valid, me.Summary, leaks.Valid, leaks.Summary)
	}
	live, final := 0, 0
	for _, op := range ops {
		if op.Impl == "pg-advisory-pool" && op.F == "acquire" && op.Type != "invoke" {
			switch op.Attrs["probe"] {
			case "live":
				live++
			case "final":
				final++
			}
		}
	}
	if live != 1 || final != 1 {
		t.Errorf("pg-advisory-pool: %d live and %d final probe completions, want one of each (1 key)", live, final)
	}
	for _, impl := range []string{"pg-advisory", "redis-setnx"} {
		for _, v := range res.Verdicts {
			if v.Impl == impl && v.Valid == results.Invalid {
				t.Errorf("%s shared by 2 workers: %s is invalid: %s", impl, v.Checker, v.Summary)
			}
		}
	}
	t.Logf("pg-advisory-pool: mutual-exclusion %s: %s; leaked-locks %s: %s", me.Valid, me.Summary, leaks.Valid, leaks.Summary)
}
