package main

import (
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/bench/results"
)

// TestRunFailoverTwice fails a replicated topology over and back in one
// run: the first failover heals when the second is due (its old primary
// restarted and back as a replica: pg-1 rewound into pg-2's standby, or
// redis-1 made a replica of the new primary as it restarts), the second
// promotes another node, and
// results.json's roles timeline says who was primary when. The heal and
// the second failover are due at the same instant: the sample after the
// heal is taken once the roles have settled and before the second
// failover's kill, so it is asserted exactly.
func TestRunFailoverTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers (-short)")
	}
	// The second failover waits for the first one's heal. On a loaded
	// 2-core machine (load average 20) the rejoin under load took 5-7 s
	// local, 9-18 s docker, and docker's pg_promote up to 13 s. A
	// restarted Redis primary is re-pointed as it restarts (REPLICAOF;
	// left to Sentinel it took 11.1-11.2 s: it waits until the node has
	// reported role master for 8 s and asks a replica's INFO every 10 s).
	for _, tc := range []struct{ name, provider, topology, impl, second, duration string }{
		{"local", "local", "pg-standby", "pg-lease", "12s", "30s"},
		{"docker", "docker", "pg-standby", "pg-lease", "25s", "70s"},
		{"redis-sentinel-local", "local", "redis-sentinel", "redis-sentinel-setnx", "8s", "35s"},
	} {
		provider := tc.provider
		t.Run(tc.name, func(t *testing.T) {
			if provider == "docker" {
				requireDockerImage(t, "faultline/postgres:15")
			}
			dir := t.TempDir()
			code, stdout, stderr := cli(t, "run", "--provider", provider, "--impl", tc.impl, "--topology", tc.topology,
				"--fault", "failover=kill@2s", "--fault", "failover=kill@"+tc.second, "--duration", tc.duration, "--out", dir, "--seed", "1")
			res, err := results.Load(dir)
			if err != nil {
				t.Fatalf("exit %d, no results: %v\n%s\n%s", code, err, stdout, stderr)
			}
			if strings.Contains(stdout+stderr, "fault start failed") || strings.Contains(stdout+stderr, "fault heal failed") || strings.Contains(stdout, "faults: fault") {
				t.Errorf("a fault failed (exit %d):\n%s\n%s", code, stdout, stderr)
			}
			ir := res.Impls[0]
			nodes := []string{"pg-1", "pg-2"}
			if tc.topology == "redis-sentinel" {
				nodes = []string{"redis-1", "redis-2", "redis-3"}
			}
			line := func(s results.RoleSample) string {
				var parts []string
				for _, n := range nodes {
					parts = append(parts, n+" "+s.Roles[n])
				}
				return s.Why + ": " + strings.Join(parts, ", ")
			}
			var got []string
			for _, s := range ir.Roles {
				got = append(got, line(s))
			}
			t.Logf("%s roles timeline:\n%s", tc.name, strings.Join(got, "\n"))
			for _, g := range got {
				if strings.Count(g, "primary") > 1 {
					t.Errorf("two primaries at once: %s", g)
				}
			}
			if len(ir.Failovers) != 2 {
				t.Fatalf("failovers %+v: want 2", ir.Failovers)
			}
			f0, f1 := ir.Failovers[0], ir.Failovers[1]
			// want is the line of a sample: primary p, down d, the other
			// nodes replicas.
			want := func(why, p, d string) string {
				var parts []string
				for _, n := range nodes {
					switch n {
					case p:
						parts = append(parts, n+" primary")
					case d:
						parts = append(parts, n+" down")
					default:
						parts = append(parts, n+" replica")
					}
				}
				return why + ": " + strings.Join(parts, ", ")
			}
			first := nodes[0]
			wantStart := []string{
				want("phase start", first, ""),
				want("after failover=kill (f0) started", f0.New, first),
				want("after failover=kill (f0) healed", f0.New, ""), // settled, and before f1's kill
				want("after failover=kill (f1) started", f1.New, f0.New),
			}
			if f0.Old != first || f1.Old != f0.New || f1.New == f0.New || len(got) < len(wantStart)+1 ||
				strings.Join(got[:len(wantStart)], "\n") != strings.Join(wantStart, "\n") {
				t.Errorf("roles timeline:\n%s\nwant it to start\n%s\n(failovers %s -> %s, %s -> %s)",
					strings.Join(got, "\n"), strings.Join(wantStart, "\n"), f0.Old, f0.New, f1.Old, f1.New)
			}
			// At the end f1's new primary leads and its old primary rejoined;
			// on docker one CI run ended with pg-2 still down after its
			// restart (a rejoin slower than the run's end, under load):
			// logged, not failed.
			last := got[len(got)-1]
			if last != want("load over, faults healed", f1.New, "") &&
				!(provider == "docker" && last == want("load over, faults healed", f1.New, f1.Old)) {
				t.Errorf("last sample %q: want %s primary and the others replicas", last, f1.New)
			}
			if tc.topology == "pg-standby" && (f0.New != "pg-2" || f1.New != "pg-1") {
				t.Errorf("failovers %+v: want pg-1 -> pg-2, then pg-2 -> pg-1", ir.Failovers)
			}
			t.Logf("%s: failover 1 at %.1fs (promoted %.0f ms), healed (%s rejoined) at %.1fs; failover 2 at %.1fs (promoted %.0f ms)",
				tc.name, float64(f0.Lost)/1e9, f0.PromotionMs, f0.Old, float64(f0.End)/1e9, float64(f1.Lost)/1e9, f1.PromotionMs)
		})
	}
}
