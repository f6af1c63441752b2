package bench

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

func runForTest(t *testing.T, ctx context.Context, cfg Config) (*results.Results, []history.Op, error) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real servers (-short)")
	}
	cfg.Out = t.TempDir()
	cfg.Provider = "local"
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	res, err := Run(ctx, cfg)
	if res == nil {
		t.Fatalf("Run: %v", err)
	}
	disk, lerr := results.Load(cfg.Out)
	if lerr != nil {
		t.Fatalf("results.json not saved: %v", lerr)
	}
	if len(disk.Impls) != len(res.Impls) {
		t.Fatalf("results.json has %d implementations, Run returned %d", len(disk.Impls), len(res.Impls))
	}
	ops, herr := history.Load(filepath.Join(cfg.Out, HistoryFile))
	if herr != nil {
		t.Fatal(herr)
	}
	return res, ops, err
}

func verdict(res *results.Results, impl, checker string) results.Verdict {
	for _, v := range res.Verdicts {
		if v.Impl == impl && v.Checker == checker {
			return v
		}
	}
	return results.Verdict{Valid: "missing"}
}

// Two implementations on the same servers, one after the other: the
// unfenced lock loses mutual exclusion under a holder pause of 2×ttl, the
// fenced one has its stale write rejected by the resource.
func TestRunFencedCounterUnderHolderPause(t *testing.T) {
	res, ops, err := runForTest(t, context.Background(), Config{
		Impls: []string{"redis-setnx", "redis-fenced"}, Workload: "fenced-counter",
		Clients: 4, Keys: 2, TTL: 300 * time.Millisecond, Duration: 2500 * time.Millisecond,
		Faults: []string{"holder-pause:2xttl@1s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Path != PathDirect {
		t.Errorf("a client fault alone should run direct, got %s", res.Path)
	}
	if v := verdict(res, "redis-setnx", "mutual-exclusion"); v.Valid != results.Invalid {
		t.Errorf("redis-setnx under holder-pause: mutual-exclusion %s (%s), want a violation", v.Valid, v.Summary)
	}
	if v := verdict(res, "redis-fenced", "mutual-exclusion"); v.Valid != results.Valid {
		t.Errorf("redis-fenced: mutual-exclusion %s: %s", v.Valid, v.Summary)
	}
	if n := res.Impl("redis-fenced").Counters["fenced"]; n < 1 {
		t.Errorf("redis-fenced: %d fenced writes, want the paused holder's write fenced", n)
	}
	if len(res.Faults) != 2 || res.Faults[0].Impl != "redis-setnx" || res.Faults[1].Impl != "redis-fenced" {
		t.Errorf("fault windows: %+v, want one per implementation", res.Faults)
	}
	if ir := res.Impl("redis-fenced"); ir.InsideFaults["cycle"].Count == 0 || ir.OutsideFaults["cycle"].Count == 0 {
		t.Errorf("inside/outside fault percentiles missing: %+v / %+v", ir.InsideFaults, ir.OutsideFaults)
	}
	checkPaired(t, ops)
}

// Open loop at a fixed rate with a holder crash: the iteration count follows
// the rate, the crashed worker goes on as a new process, the key is freed.
func TestRunOpenLoopWithHolderCrash(t *testing.T) {
	const rate, dur = 300.0, 2500 * time.Millisecond
	res, ops, err := runForTest(t, context.Background(), Config{
		Impls: []string{"redis-setnx"}, Workload: "counter", Clients: 4, Keys: 4,
		TTL: 300 * time.Millisecond, Duration: dur, Rate: rate, Faults: []string{"holder-crash@1s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ir := res.Impl("redis-setnx")
	want := rate * dur.Seconds()
	if got := float64(ir.Ops["cycle"].Count); got < 0.6*want || got > 1.1*want {
		t.Errorf("open loop at %v/s for %v: %v iterations, want about %v", rate, dur, got, want)
	}
	if ir.Counters["crashed"] != 1 {
		t.Errorf("crashed = %d, want 1 (counters %v)", ir.Counters["crashed"], ir.Counters)
	}
	successor := false
	for _, op := range ops {
		successor = successor || op.Process >= 4
	}
	if !successor {
		t.Error("no process id >= clients: the crashed worker did not continue as a new process")
	}
	for _, c := range []string{"mutual-exclusion", "liveness", "leaked-locks"} {
		if v := verdict(res, "redis-setnx", c); v.Valid != results.Valid {
			t.Errorf("%s: %s (%s)", c, v.Valid, v.Summary)
		}
	}
	checkPaired(t, ops)
}

// Ctrl-C: the run stops at once, still dumps the resource, checks, and
// saves what was done.
func TestRunInterruptedSavesWhatWasDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := time.Now()
	time.AfterFunc(4*time.Second, cancel) // the "Ctrl-C", during the load phase
	res, ops, err := runForTest(t, ctx, Config{
		Impls: []string{"redis-setnx", "redis-fenced"}, Workload: "counter", Clients: 4, TTL: 300 * time.Millisecond, Duration: time.Minute,
	})
	if !errors.Is(err, context.Canceled) || !res.Interrupted {
		t.Fatalf("err %v, interrupted %v: want context.Canceled and Interrupted", err, res.Interrupted)
	}
	if took := time.Since(started); took > 20*time.Second {
		t.Errorf("an interrupted run took %v to stop", took)
	}
	if len(res.Impls) != 1 || len(res.Notes) == 0 {
		t.Errorf("want the first implementation recorded and a note on the skipped one: %d impls, notes %v", len(res.Impls), res.Notes)
	}
	final := 0
	for _, op := range ops {
		if op.Process == history.Resource && op.F == "final" {
			final++
		}
	}
	if final == 0 {
		t.Error("interrupted run did not dump the resource")
	}
	if v := verdict(res, "redis-setnx", "mutual-exclusion"); v.Valid != results.Valid {
		t.Errorf("mutual-exclusion after interrupt: %s (%s)", v.Valid, v.Summary)
	}
	checkPaired(t, ops)
}

// checkPaired asserts every invocation completes exactly once by its
// process (per implementation), and nothing completes what was not invoked.
func checkPaired(t *testing.T, ops []history.Op) {
	t.Helper()
	type proc struct {
		impl string
		p    int
	}
	open := map[proc]history.Op{}
	n := 0
	for _, op := range ops {
		if op.Process < 0 {
			continue
		}
		k := proc{op.Impl, op.Process}
		if op.Type == history.Invoke {
			if prev, ok := open[k]; ok {
				t.Fatalf("%v invoked %s (index %d) before completing %s (index %d)", k, op.F, op.Index, prev.F, prev.Index)
			}
			open[k] = op
			n++
			continue
		}
		if inv, ok := open[k]; !ok || inv.F != op.F {
			t.Fatalf("completion %+v has no matching invocation", op)
		}
		delete(open, k)
	}
	for k, op := range open {
		t.Errorf("%v: %s (index %d) never completed", k, op.F, op.Index)
	}
	if n == 0 {
		t.Fatal("no operation in the history")
	}
}

// dropCut leaves out only the invocations cut by the run's death: a
// process's last entry, an invocation, made within the window of the
// history's end. Completed operations, an older invocation without
// completion (a hung call: the workload's to judge) and fault events stay.
func TestDropCut(t *testing.T) {
	inv := func(p int, at int64) history.Op {
		return history.Op{Process: p, Type: history.Invoke, F: "acquire", Time: at}
	}
	ok := func(p int, at int64) history.Op {
		return history.Op{Process: p, Type: history.OK, F: "acquire", Time: at}
	}
	fault := history.Op{Process: history.Nemesis, Type: history.Info, F: history.FaultStart, Time: 95}
	cases := []struct {
		name string
		ops  []history.Op
		want []int // indexes kept
	}{
		{"empty", nil, nil},
		{"all completed", []history.Op{inv(0, 1), ok(0, 2), inv(1, 3), ok(1, 4)}, []int{0, 1, 2, 3}},
		{"in flight at the end", []history.Op{inv(0, 1), ok(0, 2), inv(0, 90), inv(1, 95), ok(1, 99), fault, inv(1, 100)}, []int{0, 1, 3, 4, 5}},
		{"older than the window stays", []history.Op{inv(0, 10), inv(1, 95), ok(1, 99), inv(1, 100)}, []int{0, 1, 2}},
		{"a completed op is never cut", []history.Op{inv(0, 98), ok(0, 100)}, []int{0, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, n := dropCut(c.ops, 20)
			if n != len(c.ops)-len(c.want) || len(got) != len(c.want) {
				t.Fatalf("kept %d (dropped %d), want %v", len(got), n, c.want)
			}
			for i, k := range c.want {
				if got[i].Time != c.ops[k].Time || got[i].Process != c.ops[k].Process || got[i].Type != c.ops[k].Type {
					t.Errorf("entry %d: %+v, want %+v", i, got[i], c.ops[k])
				}
			}
		})
	}
}

// --opt hold=D keeps every holder in its critical section for D: with one
// key no two holders overlap, so a phase of length L completes at most
// L/D+2 cycles (one in flight at each end), and still some; without the
// hold it would be thousands.
func TestRunHoldKeepsTheLock(t *testing.T) {
	const hold, phase = 200 * time.Millisecond, 1200 * time.Millisecond
	res, _, err := runForTest(t, context.Background(), Config{
		Impls: []string{"redis-setnx"}, Workload: "counter", Clients: 3, Keys: 1,
		TTL: time.Second, Duration: phase, Opts: map[string]string{"hold": hold.String()},
	})
	if err != nil {
		t.Fatal(err)
	}
	n := res.Impl("redis-setnx").Ops["cycle"].Count
	if n < 1 || n > int64(phase/hold)+2 {
		t.Errorf("%d cycles in %v with hold %v on one key: want 1..%d", n, phase, hold, phase/hold+2)
	}
	if v := verdict(res, "redis-setnx", "mutual-exclusion"); v.Valid != results.Valid {
		t.Errorf("mutual-exclusion %s: %s", v.Valid, v.Summary)
	}
}
