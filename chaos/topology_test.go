package chaos

import (
	"context"
	"fmt"
	"slices"
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

func (f *fakeTopo) Topology() infra.Topology { return infra.TopologyRedisSentinel }
func (f *fakeTopo) Link(to string) (infra.Link, bool) {
	n, ok := f.Node(to)
	if !ok {
		return nil, false
	}
	return fakeLink{n}, true
}

// fakeLink is a node's peer link on its fake proxy (toxics land in the
// fake's call log as on a client proxy).
type fakeLink struct{ n infra.Node }

func (l fakeLink) Name() string       { return "peer:" + l.n.Name() }
func (l fakeLink) From() string       { return "*" }
func (l fakeLink) To() string         { return l.n.Name() }
func (l fakeLink) Proxy() infra.Proxy { return l.n.Proxy() }
func (f *fakeTopo) Primary(context.Context) (infra.Node, error) {
	n, _ := f.Node(f.primary)
	return n, nil
}
func (f *fakeTopo) Roles(context.Context) (map[string]infra.Role, error) {
	return map[string]infra.Role{f.primary: infra.RolePrimary}, nil
}
func (f *fakeTopo) WaitSettled(context.Context) error { return nil }
func (f *fakeTopo) Failover(ctx context.Context, how infra.FailoverMode) (infra.FailoverResult, error) {
	res := infra.FailoverResult{Mode: how, Old: f.primary, Started: time.Now()}
	if n, ok := f.Node(f.primary); ok && how == infra.FailoverKill {
		if err := n.Kill(ctx); err != nil {
			return res, err
		}
	}
	time.Sleep(f.promote) // the fake's promotion delay, not a wait for a condition
	next := "redis-2"     // like pg-standby: the other one of redis-1 and redis-2, if it is up
	if f.primary == next {
		next = "redis-1"
	}
	n, _ := f.Node(next)
	if fn := n.(*fakeNode); fn.state() != "" {
		return res, fmt.Errorf("%s is %s: no replica to promote", next, fn.state())
	}
	f.primary = next
	res.New, res.Promoted = next, time.Now()
	return res, nil
}

func TestReplicationKindsGrammar(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want string // canonical form, or "error: substring"
	}{
		{"failover@2s", "failover@2s"},
		{"failover=lossy@2s", "failover=lossy@2s"},
		{"failover=800ms@2s", "failover=800ms@2s"},
		{"failover=force@2s+3s", "failover=force@2s+3s"},
		{"failover=kill@1s", "failover=kill@1s"},
		{"failover:redis-2@1s", "error: takes no target"},
		{"failover=maybe@1s", "error: want lossy, a lag such as 800ms (lossy with that lag), kill or force"},
		{"failover=0s@1s", "error: lag 0s: want a duration in (0, 1m]"},
		{"failover=2m@1s", "error: lag 2m: want a duration in (0, 1m]"},
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
	sched, _ := ParseSchedule([]string{"failover=kill@10ms+200ms"})
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

// A lossy failover (the default) cuts the primary's replication link, lets
// it acknowledge writes for the lag, kills it, waits for the promotion and
// only then restores the link; heal restarts the old primary. The event is
// dated at the kill, the lag recorded.
func TestLossyFailoverOrder(t *testing.T) {
	env := &fakeTopo{fakeEnv: newFakeEnv("redis-1", "redis-2", "redis-3"), primary: "redis-1", promote: 20 * time.Millisecond}
	sched, _ := ParseSchedule([]string{"failover=60ms@10ms+200ms"})
	var evs []Event
	origin := time.Now()
	if _, err := Run(context.Background(), sched, env, nil, func(e Event) { evs = append(evs, e) }, RunOptions{Origin: origin}); err != nil {
		t.Fatal(err)
	}
	env.mu.Lock()
	log := append([]string(nil), env.log...) // in order (calls() sorts)
	env.mu.Unlock()
	var calls []string
	for _, c := range log {
		calls = append(calls, strings.Fields(c)[0]+" "+strings.Fields(c)[len(strings.Fields(c))-1])
	}
	want := "toxic redis-1;toxic redis-1;kill redis-1;untoxic redis-1;untoxic redis-1;start redis-1"
	if got := strings.Join(calls, ";"); got != want {
		t.Errorf("calls %s\nwant  %s", got, want)
	}
	if len(evs) != 2 || evs[0].Attrs["mode"] != "lossy" || evs[0].Attrs["lag"] != "60ms" || evs[0].Attrs["old"] != "redis-1" {
		t.Fatalf("events %+v: want a lossy start (lag 60ms, old redis-1) and a heal", evs)
	}
	// Dated at the kill: the cut began at 10 ms, the kill at least 60 ms later.
	if evs[0].Time < int64(70*time.Millisecond) {
		t.Errorf("start dated at %v: want at the kill, after the 60 ms lag", time.Duration(evs[0].Time))
	}
}

// Two failovers in a schedule run one after the other: the first, with no
// +duration, heals (its old primary restarts, the replica the second
// promotes) when the second is due, and the second starts once that heal
// returned. Overlapping windows and two failovers at once are refused.
func TestFailoverChain(t *testing.T) {
	env := &fakeTopo{fakeEnv: newFakeEnv("redis-1", "redis-2", "redis-3"), primary: "redis-1", promote: 10 * time.Millisecond}
	sched, err := ParseSchedule([]string{"failover=kill@10ms", "failover=kill@150ms"})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Plan(sched, env, nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if plan[0].Length != 140*time.Millisecond || plan[1].Length != 0 {
		t.Errorf("lengths %v, %v: want the first to last until the second is due (140ms), the second until the end", plan[0].Length, plan[1].Length)
	}
	var evs []Event
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	if _, err := RunPlanned(ctx, plan, func(e Event) { evs = append(evs, e) }, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	env.mu.Lock()
	calls := strings.Join(env.log, ";")
	env.mu.Unlock()
	if want := "kill redis-1;start redis-1;kill redis-2;start redis-2"; calls != want {
		t.Errorf("calls %s, want %s", calls, want)
	}
	var order []string
	for _, e := range evs {
		order = append(order, fmt.Sprintf("%s heal=%v old=%s new=%s", e.ID, e.Heal, e.Attrs["old"], e.Attrs["new"]))
	}
	want := []string{"f0 heal=false old=redis-1 new=redis-2", "f0 heal=true old= new=", "f1 heal=false old=redis-2 new=redis-1", "f1 heal=true old= new="}
	if strings.Join(order, "; ") != strings.Join(want, "; ") {
		t.Errorf("events\n%s\nwant\n%s", strings.Join(order, "\n"), strings.Join(want, "\n"))
	}

	for _, tc := range []struct {
		specs []string
		want  string
	}{
		{[]string{"failover@1s+3s", "failover@5s"}, ""},
		{[]string{"failover@1s+5s", "failover@5s"}, "its old primary is still down at 5s"},
		{[]string{"failover@2s", "failover=force@2s"}, "two failovers at once"},
	} {
		sched, err := ParseSchedule(tc.specs)
		if err != nil {
			t.Fatal(err)
		}
		err = CheckTargets(sched, []infra.NodeSpec{{Name: "redis-1", Kind: infra.Redis}}, time.Second)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: %v, want %q", tc.specs, err, tc.want)
		}
	}
}

// A failover chained after another starts only once the runner recorded
// the first one's heal: whatever the record function does for the heal
// (bench samples the node roles there) sees the healed set, never the
// second failover's kill, although the heal and the second failover are
// due at the same instant. The record function watches for that kill for
// 300 ms; the heal itself waits for the roles to settle (WaitSettled).
func TestFailoverChainHealRecordedFirst(t *testing.T) {
	env := &fakeTopo{fakeEnv: newFakeEnv("redis-1", "redis-2", "redis-3"), primary: "redis-1", promote: 10 * time.Millisecond}
	sched, err := ParseSchedule([]string{"failover=kill@10ms", "failover=kill@100ms"})
	if err != nil {
		t.Fatal(err)
	}
	killedSecond := func() bool {
		env.mu.Lock()
		defer env.mu.Unlock()
		return slices.Contains(env.log, "kill redis-2")
	}
	var seen []string
	record := func(e Event) {
		if e.ID != "f0" || !e.Heal {
			return
		}
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) {
			if killedSecond() {
				seen = append(seen, fmt.Sprintf("the second failover killed redis-2 while f0's heal was being recorded (%v before the deadline)", time.Until(deadline).Round(time.Millisecond)))
				return
			}
			time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := Run(ctx, sched, env, nil, record, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, s := range seen {
		t.Error(s)
	}
	if !killedSecond() {
		t.Error("the second failover never ran")
	}
}
