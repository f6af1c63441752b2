package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/bench/results"
)

// TestRunFailoverTwice fails pg-standby over and back in one run
// (pg-1 -> pg-2 -> pg-1): the first failover heals when the second is due
// (pg-1 rewound into pg-2's standby), the second promotes pg-1 again, and
// results.json's roles timeline says who was primary when.
func TestRunFailoverTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers (-short)")
	}
	// The second failover waits for the first one's heal. On a loaded
	// 2-core machine (load average 20) the rejoin under load took 5-7 s
	// local, 9-18 s docker, and docker's pg_promote up to 13 s.
	for _, tc := range []struct{ provider, second, duration string }{{"local", "12s", "30s"}, {"docker", "25s", "70s"}} {
		provider := tc.provider
		t.Run(provider, func(t *testing.T) {
			if provider == "docker" {
				requireDockerImage(t, "faultline/postgres:15")
			}
			dir := t.TempDir()
			code, stdout, stderr := cli(t, "run", "--provider", provider, "--impl", "pg-lease", "--topology", "pg-standby",
				"--fault", "failover=kill@2s", "--fault", "failover=kill@"+tc.second, "--duration", tc.duration, "--out", dir, "--seed", "1")
			res, err := results.Load(dir)
			if err != nil {
				t.Fatalf("exit %d, no results: %v\n%s\n%s", code, err, stdout, stderr)
			}
			if strings.Contains(stdout+stderr, "fault start failed") || strings.Contains(stdout, "faults: fault") {
				t.Errorf("a fault failed (exit %d):\n%s\n%s", code, stdout, stderr)
			}
			ir := res.Impls[0]
			var got []string
			for _, s := range ir.Roles {
				got = append(got, fmt.Sprintf("%s: pg-1 %s, pg-2 %s", s.Why, s.Roles["pg-1"], s.Roles["pg-2"]))
			}
			// Who was primary when. A heal and the next failover are due at
			// the same instant, so the sample taken after a heal may already
			// see the next kill (CI: "f0 healed: pg-1 replica, pg-2 down");
			// the samples that do not race are asserted exactly, and no
			// sample may ever show two primaries.
			t.Logf("%s roles timeline:\n%s", provider, strings.Join(got, "\n"))
			for _, g := range got {
				if strings.Count(g, "primary") > 1 {
					t.Errorf("two primaries at once: %s", g)
				}
			}
			// At the end pg-1 is primary and pg-2 rejoined; on docker one CI
			// run ended with pg-2 still down after its restart (a rejoin
			// slower than the run's end, under load): logged, not failed.
			endOK := false
			if n := len(got); n >= 4 {
				last := got[n-1]
				endOK = strings.HasSuffix(last, ": pg-1 primary, pg-2 replica") ||
					provider == "docker" && strings.HasSuffix(last, ": pg-1 primary, pg-2 down")
			}
			if !endOK || got[0] != "phase start: pg-1 primary, pg-2 replica" ||
				got[1] != "after failover=kill (f0) started: pg-1 down, pg-2 primary" {
				t.Errorf("roles timeline does not go pg-1, pg-2, then pg-1 primary:\n%s", strings.Join(got, "\n"))
			}
			if len(ir.Failovers) != 2 || ir.Failovers[0].Old != "pg-1" || ir.Failovers[0].New != "pg-2" ||
				ir.Failovers[1].Old != "pg-2" || ir.Failovers[1].New != "pg-1" {
				t.Fatalf("failovers %+v: want pg-1 -> pg-2, then pg-2 -> pg-1", ir.Failovers)
			}
			f0, f1 := ir.Failovers[0], ir.Failovers[1]
			t.Logf("%s: failover 1 at %.1fs (promoted %.0f ms), healed (pg-1 rejoined) at %.1fs; failover 2 at %.1fs (promoted %.0f ms)",
				provider, float64(f0.Lost)/1e9, f0.PromotionMs, float64(f0.End)/1e9, float64(f1.Lost)/1e9, f1.PromotionMs)
		})
	}
}
