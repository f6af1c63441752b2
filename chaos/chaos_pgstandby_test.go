package chaos_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/workload"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/infra"
)

// TestChaosPGStandby runs the pg-standby rows (setting standby=async|sync)
// apart from the other suites: each row gets a fresh pg-standby (a row's
// lost writes and sequence values must not reach the next) plus the counter
// workload's resource node, or for a bank row participant B (pg-b), its
// standby synchronous or not as the row says.
func TestChaosPGStandby(t *testing.T) {
	m := loadMatrix(t)
	if testing.Short() {
		t.Skip("Chaos suite: starts a replicated PostgreSQL per row (skipped with -short)")
	}
	provider := os.Getenv("FAULTLINE_PROVIDER")
	if provider == "" {
		provider = "local"
	}
	ran := 0
	for _, row := range m.Rows {
		if rowTopology(row) != infra.TopologyPGStandby {
			continue
		}
		ran++
		t.Run(row.Name(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			start := time.Now()
			extra := []infra.NodeSpec{{Name: "resource", Kind: infra.Redis}}
			if row.Workload == workload.BankName {
				extra = []infra.NodeSpec{{Name: workload.BankNodeB, Kind: infra.Postgres}}
			}
			env, err := infra.Up(ctx, infra.Spec{Topology: infra.TopologyPGStandby, Provider: provider,
				Nodes:       extra,
				Replication: infra.ReplicationOptions{SyncStandby: row.Settings()["standby"] == "sync"}})
			if err != nil {
				t.Fatalf("pg-standby did not start: %v", err)
			}
			defer func() {
				if err := env.Close(context.WithoutCancel(ctx)); err != nil {
					t.Errorf("close: %v", err)
				}
			}()
			t.Logf("environment: pg-standby %s, standby=%s, started in %v", env.Provider(), row.Settings()["standby"], time.Since(start).Round(time.Millisecond))
			if row.Workload == workload.BankName {
				assertBankRow(t, row, runBankRow(t, ctx, env, row))
				return
			}
			var o outcome
			if row.Scripted() {
				o = runFailoverScript(t, ctx, env, row)
			} else {
				o = runWorkload(t, ctx, env, row)
			}
			assertRow(t, row, o)
		})
	}
	if ran == 0 {
		t.Fatal("no pg-standby row (setting standby=…) in chaos/expected.md")
	}
}

// seqLogAhead is how far ahead of its last value PostgreSQL WAL-logs a
// sequence (SEQ_LOG_VALS): a standby promoted after losing the WAL of some
// nextval calls resumes at most this far past the last value it received.
const seqLogAhead = 32

// standbyFailoverScenario (issue 12, L6 on PostgreSQL): the primary's
// peer link (pg-2's WAL receiver) is cut; A takes and gives back k0 until
// its fences ran more than seqLogAhead past the first one drawn in the
// cut, then takes k0 once more and reads; pg-1 is killed and pg-2
// promoted; B acquires k0 on pg-2 and writes; A, within its lease, writes
// its stale increment. Asynchronous standby: everything A was granted in
// the cut is gone from pg-2, so B overlaps A (mutual exclusion, lost
// update, A's grant a lost acknowledged write) with a fence that went
// backwards (the sequence resumes from the last value pg-2 received, plus
// at most seqLogAhead). Synchronous standby (remote_apply): A's first
// grant in the cut waits for pg-2 and times out (indeterminate), so A
// holds nothing and nothing acknowledged is lost.
func standbyFailoverScenario(s *scene) {
	b := s.proc(nil)
	a := s.proc(nil)
	p, err := chaos.Build(chaos.Spec{Kind: "replication-partition", Target: "primary"}, "script", s.d.Env(), nil, s.ttl)
	s.must(err == nil, "build the partition: %v", err)
	healCut := s.fault(p.Fault, "replication-partition:primary")
	la, aErr := a.Acquire(s.ctx, key, 300*time.Millisecond, false)
	if aErr == nil {
		first := la.Fence
		for i := 0; la.Fence <= first+seqLogAhead && i < 4*seqLogAhead; i++ {
			_ = a.Release(s.ctx, la)
			la, aErr = a.Acquire(s.ctx, key, 300*time.Millisecond, false)
			s.must(aErr == nil, "A acquire %d in the cut: %v", i, aErr)
		}
		s.must(la.Fence > first+seqLogAhead, "A's fences stayed within %d..%d", first, la.Fence)
		s.t.Logf("A drew fences %d..%d on the cut-off primary", first, la.Fence)
	}
	var va int64
	if aErr == nil {
		va, err = a.Read(s.ctx, la)
		s.must(err == nil, "A read: %v", err)
	}
	healFailover, rep := s.failover()
	healCut()
	s.t.Logf("failover %s → %s", rep.Attrs["old"], rep.Attrs["new"])
	lb, bErr := b.Acquire(s.ctx, key, s.ttl, false)
	s.must(bErr == nil, "B could not acquire k0 on the new primary: %v", bErr)
	s.t.Logf("B's fence on the new primary: %d", lb.Fence)
	s.cycle(b, lb)
	if aErr == nil {
		s.stillHeld(a, la)
		_ = a.Write(s.ctx, la, va)
		_ = a.Release(s.ctx, la)
	}
	healFailover()
}
