package chaos_test

// Scripted interleavings of the Chaos suite: named processes (A, B, C)
// drive a lock workload operation by operation (workload.Steps) against the
// real lock servers and the real protected resource, with faults applied at
// exact points between their steps. The verdict never depends on timing;
// where a step needs time to pass (a lease running out), the script waits
// for the event itself (a blocking acquire) or checks that a lease is still
// valid before relying on it ("scenario precondition").

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/faultline-dev/faultline/bench"
	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/workload"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/infra"
)

// script is one scripted scenario; ttl is its lock ttl; beforeProbes
// (optional) runs after the quiet period, before the probes; opTimeout
// (optional) replaces the suite's operation timeout when it is longer.
type script struct {
	ttl          time.Duration
	run          func(s *scene)
	beforeProbes func(s *scene, ctx context.Context)
	opTimeout    time.Duration
}

// scripts are the scripted faults of the matrix, by fault name. The
// quorum scenarios use a 2.5 s ttl: A's lease must outlive three node
// restarts, which took up to ~1 s on a 2-core machine at load 9.
var scripts = map[string]script{
	"restart-majority":           {ttl: quorumTTL, run: func(s *scene) { restartScenario(s, "majority", false) }},
	"restart-majority-delayed":   {ttl: quorumTTL, run: func(s *scene) { restartScenario(s, "majority", true) }},
	"restart-minority":           {ttl: quorumTTL, run: func(s *scene) { restartScenario(s, "minority", false) }},
	"partition-minority-acquire": {ttl: quorumTTL, run: partitionAcquireScenario},
	"conn-cut":                   {ttl: suiteTTL, run: connCutScenario},
	"stale-release":              {ttl: suiteTTL, run: staleReleaseScenario},
	"crash-after-setnx":          {ttl: suiteTTL, run: crashAfterSetNXScenario, beforeProbes: (*scene).lockState},
	"release-race":               {ttl: releaseRaceTTL, run: releaseRaceScenario, opTimeout: 2 * releaseRaceTTL}, // A's release waits 1.3×ttl
}

const key = "k0"

// quorumTTL is the lock ttl of the quorum scenarios.
const quorumTTL = 2500 * time.Millisecond

// releaseRaceTTL is the release race's ttl: B's lease must outlive A's
// gapped release (1.3×ttl after A's GET) and C's whole cycle, about 0.7×ttl
// of margin; at 1 s a Python adapter at load 15-20 used it all (B's lease
// had -231 ms left).
const releaseRaceTTL = 2 * time.Second

// scene is a scripted scenario in progress: a PhaseSpec.Script of
// bench.RunPhase.
type scene struct {
	t      *testing.T
	ctx    context.Context
	d      *bench.Driver
	row    chaos.Row
	ttl    time.Duration
	faults int
}

// runScript runs the row's scripted scenario through bench.RunPhase (the
// script in place of the workers) and checks the history.
func runScript(t *testing.T, ctx context.Context, env *infra.Env, row chaos.Row) outcome {
	t.Helper()
	sc, ok := scripts[row.Fault]
	if !ok {
		t.Fatalf("row %s (line %d): run is script but there is no script named %q", row.Name(), row.Line, row.Fault)
	}
	ttl, _, err := rowSettings(row, sc.ttl) // a row's ttl= overrides the script's
	if err != nil {
		t.Fatal(err)
	}
	cfg := lockConfig(row, ttl, 1)
	cfg.Path = bench.PathProxied // the scripts' faults act on nodes and their proxies
	cfg.OpTimeout = max(cfg.OpTimeout, sc.opTimeout)
	r := newPhaseRun(t, row, cfg, nil)
	var s *scene
	r.spec.Script = func(ctx context.Context, d *bench.Driver) error {
		s = &scene{t: t, ctx: ctx, d: d, row: row, ttl: ttl}
		sc.run(s)
		return nil
	}
	if sc.beforeProbes != nil {
		r.spec.BeforeProbes = func(ctx context.Context) { sc.beforeProbes(s, ctx) }
	}
	return r.run(t, ctx, env)
}

// phase starts another session of the same implementation with params (for
// a process with a test hook); call it before the first step.
func (s *scene) phase(params map[string]string) workload.Session {
	s.t.Helper()
	ph, err := s.d.Session(s.ctx, params)
	if err != nil {
		s.t.Fatalf("%v", err)
	}
	return ph
}

// proc opens the next process on ph (nil = the main session).
func (s *scene) proc(ph workload.Session) *workload.Steps {
	s.t.Helper()
	c, w, err := s.d.Open(s.ctx, ph)
	if err != nil {
		s.t.Fatalf("%v", err)
	}
	st, err := workload.NewSteps(c, w)
	if err != nil {
		s.t.Fatalf("%v", err)
	}
	return st
}

// must fails the scenario (not the verdict) when a precondition does not
// hold: the environment did not behave as the script requires.
func (s *scene) must(ok bool, format string, args ...any) {
	s.t.Helper()
	if !ok {
		s.t.Fatalf("scenario precondition failed: "+format, args...)
	}
}

// event logs a nemesis entry.
func (s *scene) event(f, what, kind, id string, nodes []string, extra func(*history.Op)) {
	op := history.Op{Time: s.d.History().Now(), Type: history.Info, Process: history.Nemesis, Impl: s.row.Impl,
		F: f, Fault: what, Nodes: nodes, Attrs: map[string]string{"id": id, "kind": kind}}
	if extra != nil {
		extra(&op)
	}
	s.d.History().Log(op)
}

// fault starts f now, logging its start, and returns its heal (which logs
// the heal).
func (s *scene) fault(f chaos.Fault, what string) (heal func()) {
	s.t.Helper()
	s.faults++
	id := "s" + strconv.Itoa(s.faults)
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	err := f.Start(ctx)
	cancel()
	s.event(history.FaultStart, what, f.Kind(), id, f.Targets(), nil)
	if err != nil {
		s.t.Fatalf("start %s: %v", what, err)
	}
	healed := false
	heal = func() {
		if healed {
			return
		}
		healed = true
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 30*time.Second)
		defer cancel()
		if err := f.Heal(ctx); err != nil {
			s.t.Errorf("heal %s: %v", what, err)
		}
		s.event(history.FaultHeal, what, f.Kind(), id, f.Targets(), nil)
	}
	s.t.Cleanup(heal)
	return heal
}

// crashed logs that p died holding key (a holder-crash fault event, which
// the liveness checker measures recovery from).
func (s *scene) crashed(p *workload.Steps, l lock.Lease) {
	s.faults++
	id := "s" + strconv.Itoa(s.faults)
	what := "holder-crash:" + key
	set := func(op *history.Op) {
		op.Key, op.Token, op.Fence = key, l.Token, l.Fence
		op.Attrs["process"] = strconv.Itoa(p.Process())
	}
	s.event(history.FaultStart, what, "holder-crash", id, nil, set)
	s.event(history.FaultHeal, what, "holder-crash", id, nil, set)
	_ = p.Locker().Close() // the process is gone: no release
}

func (s *scene) nodes(target string) []infra.Node {
	s.t.Helper()
	ns, err := chaos.ResolveNodes(s.d.Env(), target)
	if err != nil {
		s.t.Fatalf("%v", err)
	}
	return ns
}

func nodeNames(ns []infra.Node) string {
	out := ""
	for i, n := range ns {
		if i > 0 {
			out += ","
		}
		out += n.Name()
	}
	return out
}

// cycle is a whole critical section: read, write, release.
func (s *scene) cycle(p *workload.Steps, l lock.Lease) {
	v, err := p.Read(s.ctx, l)
	s.must(err == nil, "p%d read: %v", p.Process(), err)
	_ = p.Write(s.ctx, l, v)
	_ = p.Release(s.ctx, l)
}

// acquire is a blocking acquire that must succeed.
func (s *scene) acquire(p *workload.Steps, timeout time.Duration) lock.Lease {
	s.t.Helper()
	l, err := p.Acquire(s.ctx, key, timeout, false)
	s.must(err == nil, "p%d acquire %s: %v", p.Process(), key, err)
	return l
}

// stillHeld checks that A's lease has margin left before relying on it.
func (s *scene) stillHeld(p *workload.Steps, l lock.Lease) {
	s.t.Helper()
	left := time.Until(l.Expiry)
	s.must(left > s.ttl/10, "p%d's lease has %v left (ttl %v): the steps before took too long on this machine", p.Process(), left, s.ttl)
}

// restartScenario (L4/L5): A holds k0 on all 5 nodes and has read the
// counter; the target nodes are SIGKILLed and restart empty — at once, or
// one ttl later (delayed). B then tries to acquire while A's lease is still
// valid: with a quorum of empty nodes it gets the lock and writes, and A,
// within its lease, writes over B's increment. If B could not get in, A
// writes and releases, and B takes the lock after the restart.
func restartScenario(s *scene, target string, delayed bool) {
	a := s.proc(nil)
	la := s.acquire(a, 2*s.ttl)
	va, err := a.Read(s.ctx, la)
	s.must(err == nil, "A read: %v", err)

	nodes := s.nodes(target)
	heal := s.fault(chaos.NewKill(nodes), "kill:"+nodeNames(nodes))
	killed := time.Now()
	if !delayed {
		heal() // restart at once: the nodes come back empty
	}
	b := s.proc(nil)
	var lb lock.Lease
	var bErr error
	if delayed {
		// B keeps trying for half of A's lease: never a quorum.
		lb, bErr = b.Acquire(s.ctx, key, time.Until(la.Expiry)/2, false)
	} else {
		lb, bErr = b.Acquire(s.ctx, key, 0, true)
	}
	if bErr == nil {
		s.cycle(b, lb)
	}
	s.stillHeld(a, la)
	_ = a.Write(s.ctx, la, va)
	_ = a.Release(s.ctx, la)
	if delayed {
		elapse(s.ctx, time.Until(killed.Add(s.ttl))) // the restart waits one ttl
		heal()
	}
	if bErr != nil {
		s.cycle(b, s.acquire(b, 3*s.ttl))
	}
}

// partitionAcquireScenario: the minority is blackholed while A acquires k0
// (on the other 3 nodes) and reads; the partition heals; B tries once: it
// finds k0 free on the 2 healed nodes and held on 3. A correct Redlock sees
// no quorum; the no-quorum mutant accepts 2 of 5, and B's write and A's
// (still within its lease) overlap.
func partitionAcquireScenario(s *scene) {
	nodes := s.nodes("minority")
	heal := s.fault(chaos.NewPartition("script", nodes), "partition:"+nodeNames(nodes))
	a := s.proc(nil)
	la := s.acquire(a, 2*s.ttl)
	va, err := a.Read(s.ctx, la)
	s.must(err == nil, "A read: %v", err)
	heal()
	b := s.proc(nil)
	lb, bErr := b.Acquire(s.ctx, key, 0, true)
	if bErr == nil {
		s.cycle(b, lb)
	}
	s.stillHeld(a, la)
	_ = a.Write(s.ctx, la, va)
	_ = a.Release(s.ctx, la)
	if bErr != nil {
		s.cycle(b, s.acquire(b, 3*s.ttl))
	}
}

// connCutScenario (L13): A holds k0 on pg-1 and has read the counter; every
// live connection to pg-1 is cut (its proxy drops them and re-opens). The
// server frees a session lock at once; a lease row stays until its ttl. B
// acquires (waiting as long as needed), reads, writes and releases; then A,
// unaware, writes its stale increment: a violation without fencing, a
// fenced write with it.
func connCutScenario(s *scene) {
	a := s.proc(nil)
	la := s.acquire(a, 2*s.ttl)
	va, err := a.Read(s.ctx, la)
	s.must(err == nil, "A read: %v", err)
	nodes := s.nodes("pg-1")
	heal := s.fault(chaos.NewPartitionRefuse(nodes), "partition-refuse:pg-1")
	heal() // connections are cut; new ones are accepted again
	b := s.proc(nil)
	lb := s.acquire(b, 10*s.ttl)
	s.cycle(b, lb)
	err = a.Write(s.ctx, la, va)
	if s.row.Workload == "fenced-counter" && s.row.Impl == "pg-lease" {
		s.must(err == nil || workload.IsFenced(err), "A write: %v", err)
	}
	_ = a.Release(s.ctx, la)
}

// staleReleaseScenario (L8/L15): A holds k0 and has read; its lease runs
// out (B's blocking acquire returns when it does); B holds k0 and has read;
// A, back, releases its old lease; C tries once. A checked release leaves
// B's lock alone (not-held) and C fails; a plain DEL frees B's lock, C gets
// in, writes, and B's write then clobbers C's.
func staleReleaseScenario(s *scene) {
	a := s.proc(nil)
	la := s.acquire(a, 2*s.ttl)
	_, err := a.Read(s.ctx, la)
	s.must(err == nil, "A read: %v", err)
	b := s.proc(nil)
	lb := s.acquire(b, 4*s.ttl) // returns once A's lease has expired
	vb, err := b.Read(s.ctx, lb)
	s.must(err == nil, "B read: %v", err)
	_ = a.Release(s.ctx, la) // A never writes: it noticed nothing, it just releases
	c := s.proc(nil)
	if lc, err := c.Acquire(s.ctx, key, 0, true); err == nil {
		s.cycle(c, lc)
	}
	s.stillHeld(b, lb)
	_ = b.Write(s.ctx, lb, vb)
	_ = b.Release(s.ctx, lb)
}

// releaseRaceScenario (L8 with a non-atomic release): A's release passes
// its GET-and-compare while A still holds k0, then waits 1.3×ttl (option
// release-gap, honoured by the GET+compare+DEL releases) before its DEL;
// meanwhile A's lease expires and B takes k0; A's DEL deletes B's key; C
// acquires beside B and writes; B's write clobbers C's. With an atomic
// compare-and-delete release there is no gap: A frees its own key and B
// and C take turns.
func releaseRaceScenario(s *scene) {
	gapped := s.phase(map[string]string{"release-gap": (s.ttl * 13 / 10).String()})
	a := s.proc(gapped)
	la := s.acquire(a, 2*s.ttl)
	va, err := a.Read(s.ctx, la)
	s.must(err == nil, "A read: %v", err)
	_ = a.Write(s.ctx, la, va)
	released := make(chan struct{})
	go func() { defer close(released); _ = a.Release(s.ctx, la) }()
	b := s.proc(nil)
	lb := s.acquire(b, 4*s.ttl) // once A's lease has expired (or A released)
	vb, err := b.Read(s.ctx, lb)
	s.must(err == nil, "B read: %v", err)
	<-released
	c := s.proc(nil)
	if lc, err := c.Acquire(s.ctx, key, 0, true); err == nil {
		s.cycle(c, lc)
	}
	s.stillHeld(b, lb)
	_ = b.Write(s.ctx, lb, vb)
	_ = b.Release(s.ctx, lb)
}

// crashAfterSetNXScenario (L14): A dies right after taking k0 — for
// redis-seed-literal between SETNX and EXPIRE (its crash-after-setnx test
// hook), for the others after their one atomic acquire. B then tries for
// 2×ttl, past ttl+slack: with an expiring key it gets in, with a key that
// has no ttl it never does. After the quiet period the key's PTTL on
// redis-1 is recorded (-1: held forever) and the final probe runs.
func crashAfterSetNXScenario(s *scene) {
	hooked := s.phase(map[string]string{"crash-after-setnx": "true"})
	a := s.proc(hooked)
	la, err := a.Acquire(s.ctx, key, 0, true)
	// exec: implementations die for real (lock.ErrProcessLost).
	s.must(err == nil || errors.Is(err, lock.ErrSimulatedCrash) || errors.Is(err, lock.ErrProcessLost), "A acquire: %v", err)
	s.crashed(a, la)
	b := s.proc(nil)
	if lb, err := b.Acquire(s.ctx, key, 2*s.ttl, false); err == nil {
		s.cycle(b, lb)
	}
}

// lockState records k0's PTTL on redis-1 as a lock-state entry for the
// leaked-locks checker.
func (s *scene) lockState(ctx context.Context) {
	n, ok := s.d.Env().Node("redis-1")
	s.must(ok, "no redis-1")
	c := redis.NewClient(&redis.Options{Addr: n.DirectAddr(), Password: n.Password(), MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	d, err := c.PTTL(ctx, key).Result()
	s.must(err == nil, "PTTL %s on redis-1: %v", key, err)
	pttl := d.Milliseconds()
	if d < 0 { // go-redis returns -1 and -2 as nanosecond durations
		pttl = int64(d)
	}
	s.d.History().Log(history.Op{Time: s.d.History().Now(), Type: history.OK, Process: history.Resource, Impl: s.row.Impl,
		F: "lock-state", Key: key, Attrs: map[string]string{"pttl": fmt.Sprint(pttl)}})
}
