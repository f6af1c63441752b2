package chaos

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/infra"
)

// fakeTopo is a fakeEnv with a redis-sentinel topology whose failover
// kills the primary and "promotes" redis-2 after promote, for pure tests of
// the replication kinds (the real ones run in chaos_failover_test.go).
type fakeTopo struct {
	*fakeEnv
	primary string
	promote time.Duration
}

func (f *fakeTopo) Topology() infra.Topology          { return infra.TopologyRedisSentinel }
func (f *fakeTopo) Link(to string) (infra.Link, bool) { return nil, false }
func (f *fakeTopo) Primary(context.Context) (infra.Node, error) {
	n, _ := f.Node(f.primary)
	return n, nil
}
func (f *fakeTopo) Roles(context.Context) (map[string]infra.Role, error) {
	return map[string]infra.Role{f.primary: infra.RolePrimary}, nil
}
func (f *fakeTopo) Failover(ctx context.Context, how infra.FailoverMode) (infra.FailoverResult, error) {
	res := infra.FailoverResult{Mode: how, Old: f.primary, Started: time.Now()}
	if n, ok := f.Node(f.primary); ok && how == infra.FailoverKill {
		if err := n.Kill(ctx); err != nil {
			return res, err
		}
	}
	time.Sleep(f.promote) // the fake's promotion delay, not a wait for a condition
	f.primary = "redis-2"
	res.New, res.Promoted = "redis-2", time.Now()
	return res, nil
}

func TestReplicationKindsGrammar(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want string // canonical form, or "error: substring"
	}{
		{"failover@2s", "failover@2s"},
		{"failover=force@2s+3s", "failover=force@2s+3s"},
		{"failover=kill@1s", "failover=kill@1s"},
		{"failover:redis-2@1s", "error: takes no target"},
		{"failover=maybe@1s", "error: want kill or force"},
		{"replication-lag@1s+2s", "replication-lag@1s+2s"},
		{"replication-lag:replicas=300ms@1s+2s", "replication-lag:replicas=300ms@1s+2s"},
		{"replication-partition:primary@1s+2s", "replication-partition:primary@1s+2s"},
	} {
		s, err := Parse(tc.spec)
		if want, isErr := strings.CutPrefix(tc.want, "error: "); isErr {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want an error with %q", tc.spec, err, want)
			}
			continue
		}
		if err != nil || s.String() != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.spec, s.String(), err, tc.want)
		}
	}
	sched, _ := ParseSchedule([]string{"kill:redis-1@1s", "failover@2s", "replication-lag@1s+1s", "failover=force@3s"})
	if got := NeedsTopology(sched); strings.Join(got, ",") != "failover,replication-lag" {
		t.Errorf("NeedsTopology = %v", got)
	}
	// On paper (before servers start) a bad target is caught; on an
	// environment without a topology the kinds refuse to build.
	nodes, _ := infra.TopologyNodes(infra.TopologyRedisSentinel)
	bad, _ := ParseSchedule([]string{"replication-partition:redis-9@1s+1s"})
	if err := CheckTargets(bad, nodes, time.Second); err == nil || !strings.Contains(err.Error(), "redis-9") {
		t.Errorf("CheckTargets(redis-9): %v", err)
	}
	if err := CheckTargets(sched, nodes, time.Second); err != nil {
		t.Errorf("CheckTargets: %v", err)
	}
	if _, err := Plan(sched, newFakeEnv("redis-1"), nil, time.Second); err == nil || !strings.Contains(err.Error(), "needs a replicated topology") {
		t.Errorf("Plan without a topology: %v", err)
	}
}

// The runner dates a failover's start event at the primary's loss (not at
// the promotion, when Start returns), names both primaries and marks the
// promotion in history time; heal restarts the old primary.
func TestFailoverEventDatedAtLoss(t *testing.T) {
	env := &fakeTopo{fakeEnv: newFakeEnv("redis-1", "redis-2", "redis-3"), primary: "redis-1", promote: 80 * time.Millisecond}
	sched, _ := ParseSchedule([]string{"failover@10ms+200ms"})
	var evs []Event
	origin := time.Now()
	_, err := Run(context.Background(), sched, env, nil, func(e Event) { evs = append(evs, e) }, RunOptions{Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Heal || !evs[1].Heal {
		t.Fatalf("events %+v: want a start and a heal", evs)
	}
	start := evs[0]
	promoted, err := strconv.ParseInt(start.Attrs["promoted_ns"], 10, 64)
	if err != nil {
		t.Fatalf("promoted_ns %q: %v", start.Attrs["promoted_ns"], err)
	}
	if start.Attrs["old"] != "redis-1" || start.Attrs["new"] != "redis-2" || start.Attrs["mode"] != "kill" {
		t.Errorf("attrs %v: want old redis-1, new redis-2, mode kill", start.Attrs)
	}
	// Promotion is 80 ms (the fake's sleep) after the loss, at least.
	if promoted-start.Time < int64(80*time.Millisecond) {
		t.Errorf("start at %d, promoted at %d: the start should be dated at the loss, 80 ms before", start.Time, promoted)
	}
	if len(start.Nodes) != 1 || start.Nodes[0] != "redis-1" {
		t.Errorf("nodes %v, want the old primary", start.Nodes)
	}
	if got := env.calls(); strings.Join(got, ";") != "kill redis-1;start redis-1" {
		t.Errorf("calls %v: want the old primary killed, then restarted", got)
	}
}
