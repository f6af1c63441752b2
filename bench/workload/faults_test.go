package workload

import (
	"context"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/chaos"
)

func TestFaultsHitTheNextMatchingHolderOnce(t *testing.T) {
	f := NewFaults()
	if _, ok := f.take(pauseHolder, chaos.Holder{Key: "k1"}); ok {
		t.Fatal("nothing armed, yet a fault was taken")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan chaos.Holder, 1)
	go func() {
		h, err := f.PauseHolder(ctx, "k2", 300*time.Millisecond)
		if err != nil {
			t.Error(err)
		}
		got <- h
	}()
	deadline := time.Now().Add(2 * time.Second)
	for !f.Armed() { // poll with a deadline: the arming goroutine is starting
		if time.Now().After(deadline) {
			t.Fatal("PauseHolder never armed")
		}
		time.Sleep(time.Millisecond)
	}
	cases := []struct {
		kind faultKind
		key  string
		want bool
	}{
		{crashHolder, "k2", false}, // other kind
		{pauseHolder, "k1", false}, // other key
		{pauseHolder, "k2", true},
		{pauseHolder, "k2", false}, // taken once only
	}
	for i, c := range cases {
		d, ok := f.take(c.kind, chaos.Holder{Process: 7, Key: c.key, Token: "t", Fence: 3})
		if ok != c.want || (ok && d != 300*time.Millisecond) {
			t.Fatalf("case %d: take = %v, %v", i, d, ok)
		}
	}
	if h := <-got; h.Process != 7 || h.Key != "k2" || h.Fence != 3 {
		t.Fatalf("PauseHolder returned %+v", h)
	}
	if f.Armed() {
		t.Fatal("still armed after the hit")
	}
}

func TestFaultsDisarm(t *testing.T) {
	f := NewFaults()
	// Cancelled before any holder: error, nothing left armed.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.CrashHolder(ctx, ""); err == nil {
		t.Fatal("CrashHolder returned without a holder and without an error")
	}
	if f.Armed() {
		t.Fatal("a cancelled fault stayed armed")
	}
	// HealAll releases a waiting arm with an error.
	done := make(chan error, 1)
	go func() {
		_, err := f.DelayWrite(context.Background(), "", time.Second)
		done <- err
	}()
	deadline := time.Now().Add(2 * time.Second)
	for !f.Armed() {
		if time.Now().After(deadline) {
			t.Fatal("DelayWrite never armed")
		}
		time.Sleep(time.Millisecond)
	}
	f.HealAll()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a healed fault reported a hit")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("HealAll left DelayWrite waiting")
	}
	if _, ok := f.take(delayWrite, chaos.Holder{Key: "k"}); ok {
		t.Fatal("a healed fault was taken")
	}
}

func TestSkewClock(t *testing.T) {
	f := NewFaults()
	if d := time.Since(f.Now()); d < 0 || d > time.Second {
		t.Fatalf("unskewed clock off by %v", d)
	}
	if err := f.SkewClock(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	real0, skew0 := time.Now(), f.Now()
	time.Sleep(50 * time.Millisecond) // let time pass: the point is the rate
	real1, skew1 := time.Now(), f.Now()
	rate := float64(skew1.Sub(skew0)) / float64(real1.Sub(real0))
	if rate < 2.7 || rate > 3.3 {
		t.Fatalf("clock rate %.2f, want 3", rate)
	}
	if jump := skew0.Sub(real0); jump < -time.Millisecond || jump > 5*time.Millisecond {
		t.Fatalf("skewing jumped the clock by %v", jump)
	}
	_ = f.SkewClock(context.Background(), 1)
	if d := time.Since(f.Now()); d < -time.Millisecond || d > time.Second {
		t.Fatalf("healed clock off by %v", d)
	}
}

// TestReservedFaultGoesToOneWorker: a crash reserved for one worker's
// acquire is invisible to others until it is taken or given back.
func TestReservedFaultGoesToOneWorker(t *testing.T) {
	f := NewFaults()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan chaos.Holder, 1)
	go func() {
		h, err := f.CrashHolder(ctx, "")
		if err != nil {
			t.Error(err)
		}
		got <- h
	}()
	deadline := time.Now().Add(2 * time.Second)
	for !f.Armed() { // poll with a deadline: the arming goroutine is starting
		if time.Now().After(deadline) {
			t.Fatal("CrashHolder never armed")
		}
		time.Sleep(time.Millisecond)
	}
	r := f.reserve(crashHolder, "k1")
	if r == nil {
		t.Fatal("reserve: nothing, want the armed crash")
	}
	if f.reserve(crashHolder, "k2") != nil {
		t.Fatal("a second worker reserved the same crash")
	}
	if _, ok := f.take(crashHolder, chaos.Holder{Key: "k2"}); ok {
		t.Fatal("take handed out a reserved crash")
	}
	f.unreserve(r)
	r = f.reserve(crashHolder, "k2")
	if r == nil {
		t.Fatal("after unreserve the crash is not available again")
	}
	if !f.takeReserved(r, chaos.Holder{Process: 4, Key: "k2", OSPid: 1234}) {
		t.Fatal("takeReserved: false")
	}
	if h := <-got; h.Process != 4 || h.OSPid != 1234 {
		t.Errorf("CrashHolder returned %+v, want p4 with its OS pid", h)
	}
	if f.Armed() {
		t.Error("still armed after the crash was taken")
	}
}

// TestKeepHolderTakesAFreshGrantOnAFreeKey: a failover's keep goes to the
// first holder whose acquire was invoked after it was armed, on a key
// nobody held then; that holder waits for the release and another
// process's write of its key, bounded by its lease.
func TestKeepHolderTakesAFreshGrantOnAFreeKey(t *testing.T) {
	f := NewFaults()
	before := f.keepEpoch.Load() // p1 invoked its acquire of k1 before the cut
	f.noteRelease("k0", before)  // nothing armed: no taint
	k := f.KeepHolder()
	f.noteRelease("k5", f.keepEpoch.Load()) // acquired after the arm, released before the link was cut: maybe lost
	if got := f.takeKeep(chaos.Holder{Process: 6, Key: "k0"}, f.keepEpoch.Load()); got != nil {
		t.Fatal("a grant was kept before the keep opened (the link not cut yet)")
	}
	k.Open()
	after := f.keepEpoch.Load()
	if got := f.takeKeep(chaos.Holder{Process: 1, Key: "k1"}, before); got != nil {
		t.Fatal("a grant invoked before the keep opened was kept")
	}
	f.noteRelease("k1", before) // p1 held k1 at the cut: its release may be lost
	for _, key := range []string{"k1", "k5"} {
		if got := f.takeKeep(chaos.Holder{Process: 2, Key: key}, after); got != nil {
			t.Fatalf("a grant of %s, released after the arm by a lock acquired before the cut, was kept (it may come back on the promoted replica)", key)
		}
	}
	got := f.takeKeep(chaos.Holder{Process: 3, Key: "k2"}, after)
	if got == nil {
		t.Fatal("the first fresh grant of a free key was not kept")
	}
	if again := f.takeKeep(chaos.Holder{Process: 4, Key: "k3"}, after); again != nil {
		t.Fatal("a second holder was kept")
	}
	if got := f.steerKey(); got != "" {
		t.Fatalf("workers steered to %q before the kill (Close)", got)
	}
	if h, ok := k.Close(); !ok || h.Process != 3 || h.Key != "k2" {
		t.Fatalf("Close = %+v, %v; want p3 k2", h, ok)
	}
	if got := f.steerKey(); got != "k2" {
		t.Fatalf("after the kill workers ask for %q, want the kept key k2", got)
	}
	done := make(chan bool, 1)
	go func() {
		wrote, err := got.wait(context.Background(), time.Now(), 10*time.Second)
		if err != nil {
			t.Error(err)
		}
		done <- wrote
	}()
	f.noteWrite("k2", 5) // before the release: waited for too
	f.noteWrite("k2", 3) // its own write does not count
	if got := f.steerKey(); got != "" {
		t.Fatalf("workers still steered to %q after p5 wrote k2", got)
	}
	k.Release()
	select {
	case wrote := <-done:
		if !wrote {
			t.Fatal("the holder did not see p5's write")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the kept holder still waits after the release and another process's write")
	}
	if f.keep.Load() != nil {
		t.Fatal("the keep outlived its holder")
	}
	// Bounded by the lease: nobody writes, the holder goes on keepMargin
	// before start+ttl.
	k2 := f.KeepHolder()
	k2.Open()
	h := f.takeKeep(chaos.Holder{Process: 1, Key: "k0"}, f.keepEpoch.Load())
	k2.Close()
	k2.Release()
	start := time.Now()
	wrote, err := h.wait(context.Background(), start, 400*time.Millisecond)
	if took := time.Since(start); wrote || err != nil || took < 290*time.Millisecond || took > 2*time.Second {
		t.Fatalf("wait = %v, %v after %v; want false, nil at 300ms (ttl 400ms - margin 100ms)", wrote, err, took)
	}
	f.noKeep = true
	if f.KeepHolder() != nil {
		t.Fatal("KeepHolder armed with failover-holder=false")
	}
}

// TestWaitOpenHoldsAcquiresWhileTheLinkIsCut: between a keep's arm and its
// Open (the link being cut) a worker's next acquire waits; Open or Close
// lets it go, and with no keep armed nothing waits.
func TestWaitOpenHoldsAcquiresWhileTheLinkIsCut(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(chaos.Keep)
	}{
		{"open", func(k chaos.Keep) { k.Open() }},
		{"close", func(k chaos.Keep) { k.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFaults()
			f.waitOpen(context.Background()) // nothing armed: returns at once
			k := f.KeepHolder()
			done := make(chan struct{})
			go func() { defer close(done); f.waitOpen(context.Background()) }()
			select {
			case <-done:
				t.Fatal("an acquire went ahead while the link was being cut")
			case <-time.After(50 * time.Millisecond): // it is still held: nothing to poll for
			}
			tc.end(k)
			select {
			case <-done:
			case <-time.After(keepOpenWait / 2):
				t.Fatalf("the acquire was still held after %s", tc.name)
			}
		})
	}
}
