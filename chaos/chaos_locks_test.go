package chaos_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/impl/lock"
)

// lockWorkloads are the workloads whose rows TestChaosLocks runs.
var lockWorkloads = []string{"counter", "fenced-counter"}

// TestChaosLocks runs every lock row of the expected-verdict matrix
// (chaos/expected.md) against real servers and asserts its verdict.
func TestChaosLocks(t *testing.T) {
	m := loadMatrix(t)
	env := needEnv(t)
	t.Logf("environment: %s (%s), started in %v", env.Provider(), env.ProviderReason(), suiteEnv.took.Round(time.Millisecond))
	for _, row := range m.Rows {
		if !slices.Contains(lockWorkloads, row.Workload) || topologyRow(row) {
			continue // topology rows are TestChaosFailover's
		}
		t.Run(row.Name(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			var o outcome
			if row.Scripted() {
				o = runScript(t, ctx, env, row)
			} else {
				o = runWorkload(t, ctx, env, row)
			}
			assertRow(t, row, o)
		})
	}
}

// TestChaosMatrixCoverage checks, without servers, that the matrix holds
// what issue 7 requires: every registered lock implementation against
// kill, pause, partition (minority and majority for the quorum locks),
// latency, holder-pause and holder-crash; every mutant against the fault
// that exposes it; every scripted row has a script; every row's specs parse.
func TestChaosMatrixCoverage(t *testing.T) {
	m := loadMatrix(t)
	has := func(impl, fault string) bool { return len(m.Lookup(impl, fault)) > 0 }
	for _, info := range lock.All() {
		if !has(info.Name, "none") {
			t.Errorf("%s: no row without a fault (issue 4: a clean verdict on the counter workload)", info.Name)
		}
		if info.Mutant {
			exposed := false
			for _, r := range m.Rows {
				if r.Impl == info.Name && r.Expect != chaos.Safe {
					exposed = true
				}
			}
			if !exposed {
				t.Errorf("mutant %s: no row where a checker catches it", info.Name)
			}
			continue
		}
		faults := []string{"kill", "pause", "partition", "latency", "holder-pause", "holder-crash"}
		switch {
		case info.Topology != "":
			faults = []string{"failover"} // issue 12: TestChaosFailover
		case info.RedisNodes > 1:
			faults = []string{"kill-minority", "kill-majority", "pause-minority", "pause-majority",
				"partition-minority", "partition-majority", "latency", "holder-pause", "holder-crash",
				"restart-majority", "restart-majority-delayed"}
		}
		for _, f := range faults {
			if !has(info.Name, f) {
				t.Errorf("%s: no row for fault %s", info.Name, f)
			}
		}
	}
	for _, want := range [][2]string{
		{"redis-release-unchecked", "holder-pause"},
		{"redis-seed-literal", "crash-after-setnx"},
		{"redlock-no-quorum", "restart-minority"},
		{"redlock-no-quorum", "partition-minority-acquire"},
		{"pg-advisory", "conn-cut"},
	} {
		rows := m.Lookup(want[0], want[1])
		if len(rows) == 0 || rows[0].Expect == chaos.Safe {
			t.Errorf("%s under %s: want a row expecting it to be caught", want[0], want[1])
		}
	}
	for _, r := range m.Rows {
		if _, err := lock.Lookup(r.Impl); err != nil && slices.Contains(lockWorkloads, r.Workload) {
			t.Errorf("line %d: %v", r.Line, err)
		}
		if r.Scripted() {
			_, ok := scripts[r.Fault]
			if topologyRow(r) {
				_, ok = failoverScripts[r.Fault]
			}
			if dockerRow(r) {
				_, ok = pairScripts[r.Fault]
			}
			if !ok {
				t.Errorf("line %d: scripted row %s has no script", r.Line, r.Name())
			}
			continue
		}
		if _, _, err := rowSettings(r, suiteTTL); err != nil && slices.Contains(lockWorkloads, r.Workload) { // bank rows' settings are bank params (chaos_txn_test.go)
			t.Errorf("%v", err)
		}
		if _, err := chaos.ParseSchedule(r.Specs()); err != nil {
			t.Errorf("line %d: %v", r.Line, err)
		}
	}
	// pg-lease loses mutual exclusion only when an asynchronous standby is
	// promoted (its failover-async row); redis-sentinel-wait when the
	// replica promoted is not the one whose acknowledgement WAIT counted
	// (its failover-unacked row; WAIT 1 of 2 is no consensus).
	if !m.Allowed("redis-setnx", "mutual-exclusion") || !m.Allowed("redis-sentinel-wait", "mutual-exclusion") {
		t.Errorf("Allowed: redis-setnx and redis-sentinel-wait may lose mutual exclusion")
	}
}
