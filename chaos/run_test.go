package chaos

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// events collects recorded nemesis entries.
type events struct {
	mu  sync.Mutex
	ops []Event
}

func (e *events) record(op Event) {
	e.mu.Lock()
	e.ops = append(e.ops, op)
	e.mu.Unlock()
}

func (e *events) list() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.ops...)
}

func mustSchedule(t *testing.T, specs ...string) Schedule {
	t.Helper()
	s, err := ParseSchedule(specs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func healthy(t *testing.T, env *fakeEnv) {
	t.Helper()
	for _, n := range env.nodes {
		if s := n.state(); s != "" {
			t.Errorf("node %s left faulted after Run: %s", n.name, s)
		}
	}
}

func TestRunTimesAndEvents(t *testing.T) {
	env := newFakeEnv("redis-1", "redis-2", "redis-3", "resource")
	cl := &fakeClients{}
	var ev events
	sched := mustSchedule(t,
		"kill:redis-1@20ms+60ms",
		"latency:redis-2=100ms±10ms@30ms+40ms",
		"holder-pause:k1=50ms@10ms",
		"holder-crash@10ms",
		"partition:majority@0s+30ms",
	)
	start := time.Now()
	windows, err := Run(context.Background(), sched, env, cl, ev.record, RunOptions{TTL: 100 * time.Millisecond, Impl: "redis-setnx"})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	// Lower bounds are exact (a timer never fires early); the upper bounds
	// only catch a fault left on or started far too late: a loaded CI
	// machine may delay a timer by a scheduler slice or several.
	const slack = 2 * time.Second
	if took < 80*time.Millisecond || took > 80*time.Millisecond+slack {
		t.Errorf("Run took %v; the last fault heals at 80ms", took)
	}
	healthy(t, env)
	if len(windows) != 5 {
		t.Fatalf("%d windows, want 5: %+v", len(windows), windows)
	}
	byFault := map[string]int{}
	for i, w := range windows {
		byFault[w.Fault] = i
		if w.Impl != "redis-setnx" {
			t.Errorf("window %s impl %q", w.Fault, w.Impl)
		}
		if i > 0 && w.Start < windows[i-1].Start {
			t.Error("windows not sorted by start")
		}
	}
	check := func(fault string, start, length time.Duration, nodes string) {
		t.Helper()
		w := windows[byFault[fault]]
		if w.Fault != fault {
			t.Fatalf("no window %q", fault)
		}
		if got := time.Duration(w.Start); got < start || got > start+slack {
			t.Errorf("%s started at %v, want ~%v", fault, got, start)
		}
		// The heal's timer runs from the scheduled start, the window's
		// start is stamped once the fault is in place: the end, not the
		// length, has the exact lower bound.
		if end := time.Duration(w.End); end < start+length {
			t.Errorf("%s ended at %v, before its scheduled heal at %v", fault, end, start+length)
		}
		if got := time.Duration(w.End - w.Start); got > length+slack {
			t.Errorf("%s lasted %v, want ~%v", fault, got, length)
		}
		if strings.Join(w.Nodes, ",") != nodes {
			t.Errorf("%s nodes %v, want %s", fault, w.Nodes, nodes)
		}
	}
	check("kill:redis-1", 20*time.Millisecond, 60*time.Millisecond, "redis-1")
	check("latency:redis-2=100ms±10ms", 30*time.Millisecond, 40*time.Millisecond, "redis-2")
	check("holder-pause:k1=50ms", 10*time.Millisecond, 50*time.Millisecond, "")
	check("holder-crash", 10*time.Millisecond, 0, "")
	check("partition:majority", 0, 30*time.Millisecond, "redis-1,redis-2")

	// Every start has its heal, paired by id, with the holder named.
	ops := ev.list()
	if len(ops) != 10 {
		t.Fatalf("%d events, want 10", len(ops))
	}
	starts := map[string]Event{}
	for _, op := range ops {
		if op.ID == "" || op.Impl != "redis-setnx" {
			t.Errorf("bad event %+v", op)
		}
		switch op.Heal {
		case false:
			starts[op.ID] = op
		case true:
			s, ok := starts[op.ID]
			if !ok || op.Time < s.Time {
				t.Errorf("heal %+v without an earlier start", op)
			}
		}
	}
	for _, op := range starts {
		if op.Kind == "holder-crash" {
			if !op.HolderHit || op.Holder.Process != 7 || op.Holder.Key != "k1" || op.Holder.Fence != 42 {
				t.Errorf("holder-crash event does not name the holder: %+v", op)
			}
		}
	}
	calls := strings.Join(env.calls(), "\n")
	for _, want := range []string{"kill redis-1", "start redis-1", "toxic latency downstream faultline-f1-downstream map[jitter:10 latency:100] on redis-2",
		"toxic timeout upstream faultline-f4-upstream map[timeout:0] on redis-1", "toxic timeout downstream faultline-f4-downstream map[timeout:0] on redis-2"} {
		if !strings.Contains(calls, want) {
			t.Errorf("missing call %q in:\n%s", want, calls)
		}
	}
	if got := strings.Join(cl.log, ";"); got != `pause "k1" 50ms;crash "" 0s` && got != `crash "" 0s;pause "k1" 50ms` {
		t.Errorf("client calls %q", got)
	}
}

// TestRunHealsEverythingAtTheEnd: faults with no end are healed when the
// run's context ends; faults not yet due never start.
func TestRunHealsEverythingAtTheEnd(t *testing.T) {
	env := newFakeEnv("redis-1", "redis-2", "redis-3", "redis-4", "redis-5")
	cl := &fakeClients{}
	var ev events
	sched := mustSchedule(t,
		"partition:redis-1@0s", "pause:redis-2@0s", "kill:redis-3@0s", "partition-refuse:redis-4@0s",
		"one-way:redis-5@0s", "bandwidth:redis-5@0s", "reset-peer:redis-5@0s", "slow-close:redis-5@0s",
		"clock-drift=1.5@0s", "kill:redis-1@10s+1s",
	)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	windows, err := Run(ctx, sched, env, cl, ev.record, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Run took %v after its context ended", took)
	}
	healthy(t, env)
	if cl.rate != 1 {
		t.Errorf("clock left skewed at %g", cl.rate)
	}
	if len(windows) != 9 {
		t.Errorf("%d windows, want 9 (the fault due at 10s never starts)", len(windows))
	}
	for _, w := range windows {
		if d := time.Duration(w.End); d < 90*time.Millisecond {
			t.Errorf("%s healed at %v, before the run ended", w.Fault, d)
		}
	}
	for _, c := range env.calls() {
		if c == "kill redis-1" {
			t.Error("the fault due at 10s started")
		}
	}
}

func TestRunFailedStart(t *testing.T) {
	env := newFakeEnv("redis-1", "redis-2")
	env.nodes[0].failKill = true
	var ev events
	windows, err := Run(context.Background(), mustSchedule(t, "kill:redis-1,redis-2@0s+20ms", "pause:redis-2@0s+10ms"), env, nil, ev.record, RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "cannot kill") {
		t.Fatalf("error %v, want the kill failure", err)
	}
	healthy(t, env) // redis-2 was killed then restarted by the heal
	if len(windows) != 1 || windows[0].Kind != "pause" {
		t.Errorf("windows %+v, want only the pause", windows)
	}
	var failed bool
	for _, op := range ev.list() {
		failed = failed || (!op.Heal && strings.Contains(op.Error, "cannot kill"))
	}
	if !failed {
		t.Error("the failed start is not recorded with its error")
	}
}

func TestRunClientFaultThatNeverHits(t *testing.T) {
	var ev events
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	windows, err := Run(ctx, mustSchedule(t, "holder-pause:1s@0s"), nil, &fakeClients{never: true}, ev.record, RunOptions{})
	if err == nil {
		t.Error("a client fault that never hit should be reported")
	}
	if len(windows) != 0 || len(ev.list()) != 0 {
		t.Errorf("no holder was hit: want no window and no event, got %v / %v", windows, ev.list())
	}
}

func TestRunRejectsBadPlan(t *testing.T) {
	env := newFakeEnv("redis-1")
	_, err := Run(context.Background(), mustSchedule(t, "kill:redis-9@0s", "holder-pause:1s@0s"), env, nil, nil, RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "redis-9") || !strings.Contains(err.Error(), "chaos.Clients") {
		t.Fatalf("error %v should name both bad faults", err)
	}
	if len(env.calls()) != 0 {
		t.Error("a bad plan started faults")
	}
}
