package workload

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faultline-dev/faultline/chaos"
)

// Faults is one phase's client-fault injector: the nemesis (chaos.Run)
// arms a fault, and the next worker that reaches the matching point of its
// critical section takes it. It implements chaos.Clients. The chaos side
// records the fault-start/heal events with the Holder it gets back.
//
// Workers check Armed (one atomic load) before anything else, so an idle
// injector costs nothing on the hot path.
type Faults struct {
	armed atomic.Int32
	mu    sync.Mutex
	reqs  []*faultReq
	clock atomic.Pointer[skew]
	// keyPrefix is the phase's Target.KeyPrefix: a fault armed for key
	// "k0" hits the holder of keyPrefix+"k0".
	keyPrefix string
	// keepEpoch counts the keeps armed (KeepHolder); a worker reads it
	// before each acquire. keep is the current one, until its holder is done.
	keepEpoch atomic.Int64
	keep      atomic.Pointer[keep]
	// noKeep turns KeepHolder off (--opt failover-holder=false).
	noKeep bool
}

var _ chaos.HolderKeeper = (*Faults)(nil)

var _ chaos.Clients = (*Faults)(nil)

type faultKind int

const (
	pauseHolder faultKind = iota
	crashHolder
	delayWrite
)

type faultReq struct {
	kind faultKind
	key  string // "" = any key
	d    time.Duration
	hit  chan chaos.Holder // buffered 1; receives the holder hit
	gone chan struct{}     // closed when HealAll disarms it
	// reserved: one worker's operation in flight may hit it (reserve);
	// nobody else sees it until that worker takes or releases it.
	reserved bool
}

// NewFaults returns an injector with nothing armed.
func NewFaults() *Faults { return &Faults{} }

// Armed says whether any holder fault waits for a holder.
func (f *Faults) Armed() bool { return f.armed.Load() > 0 }

func (f *Faults) arm(ctx context.Context, r *faultReq) (chaos.Holder, error) {
	r.hit = make(chan chaos.Holder, 1)
	r.gone = make(chan struct{})
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	f.armed.Add(1)
	f.mu.Unlock()
	select {
	case h := <-r.hit:
		return h, nil
	case <-r.gone:
		return chaos.Holder{}, errors.New("client fault healed before it hit any holder")
	case <-ctx.Done():
		if f.remove(r) {
			return chaos.Holder{}, ctx.Err()
		}
		return <-r.hit, nil // taken meanwhile: it hit
	}
}

func (f *Faults) remove(r *faultReq) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, q := range f.reqs {
		if q == r {
			f.reqs = append(f.reqs[:i], f.reqs[i+1:]...)
			f.armed.Add(-1)
			return true
		}
	}
	return false
}

// reserve sets aside the first armed, unreserved fault of kind for key
// for one operation of the caller (a crash inside an acquire): no other
// worker sees it until takeReserved or unreserve. nil when none.
func (f *Faults) reserve(kind faultKind, key string) *faultReq {
	if !f.Armed() {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.reqs {
		if r.kind == kind && !r.reserved && (r.key == "" || f.keyPrefix+r.key == key) {
			r.reserved = true
			return r
		}
	}
	return nil
}

// unreserve gives a reserved fault back (its operation did not hit it).
func (f *Faults) unreserve(r *faultReq) {
	f.mu.Lock()
	r.reserved = false
	f.mu.Unlock()
}

// takeReserved hands the reserved fault r to holder h; false if HealAll
// disarmed it meanwhile.
func (f *Faults) takeReserved(r *faultReq, h chaos.Holder) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, q := range f.reqs {
		if q == r {
			f.reqs = append(f.reqs[:i], f.reqs[i+1:]...)
			f.armed.Add(-1)
			r.hit <- h
			return true
		}
	}
	return false
}

// take hands the first armed fault of kind matching key to holder h.
func (f *Faults) take(kind faultKind, h chaos.Holder) (time.Duration, bool) {
	if !f.Armed() {
		return 0, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.reqs {
		if r.kind == kind && !r.reserved && (r.key == "" || f.keyPrefix+r.key == h.Key) {
			f.reqs = append(f.reqs[:i], f.reqs[i+1:]...)
			f.armed.Add(-1)
			r.hit <- h
			return r.d, true
		}
	}
	return 0, false
}

// PauseHolder makes the next holder of key (after its read, before its
// write) stop for d; it returns when the pause begins.
func (f *Faults) PauseHolder(ctx context.Context, key string, d time.Duration) (chaos.Holder, error) {
	return f.arm(ctx, &faultReq{kind: pauseHolder, key: key, d: d})
}

// CrashHolder makes the next holder of key (after its read) die without
// writing or releasing; its worker continues as a new process.
func (f *Faults) CrashHolder(ctx context.Context, key string) (chaos.Holder, error) {
	return f.arm(ctx, &faultReq{kind: crashHolder, key: key})
}

// DelayWrite holds back the next write of a holder of key for d after its
// invocation is recorded; it returns when the write is being held back.
func (f *Faults) DelayWrite(ctx context.Context, key string, d time.Duration) (chaos.Holder, error) {
	return f.arm(ctx, &faultReq{kind: delayWrite, key: key, d: d})
}

// keep is one KeepHolder request (see chaos.HolderKeeper).
type keep struct {
	f *Faults
	// open is keepEpoch once Open ran (math.MaxInt64 before): acquires
	// invoked after Open read at least this.
	open     atomic.Int64
	released chan struct{} // closed by Release: the failover is over
	// opened is closed by Open (or Close): until then the link is being
	// cut, and workers hold their next acquire (waitOpen), so that only the
	// keys held when it was armed can be tainted.
	opened   chan struct{}
	openOnce sync.Once
	written  chan struct{} // closed when another process wrote the holder's key
	relOnce  sync.Once
	// steer: from the kill (Close) until another process wrote the kept
	// key, every worker's next cycle asks for that key (steerKey).
	steer atomic.Bool

	mu      sync.Mutex
	closed  bool // no holder is taken any more
	taken   bool
	holder  chaos.Holder
	wrote   bool
	tainted map[string]bool // keys held when it was armed
}

// KeepHolder arms a keep (chaos.HolderKeeper); nil when turned off.
func (f *Faults) KeepHolder() chaos.Keep {
	if f.noKeep {
		return nil
	}
	k := &keep{f: f, released: make(chan struct{}), written: make(chan struct{}), opened: make(chan struct{}), tainted: map[string]bool{}}
	k.open.Store(math.MaxInt64)
	f.keep.Store(k)
	return k
}

// Open implements chaos.Keep: acquires invoked from now on may be kept.
func (k *keep) Open() {
	e := k.f.keepEpoch.Add(1)
	k.open.Store(e) // a worker that read e before its acquire was invoked after this point
	k.openOnce.Do(func() { close(k.opened) })
}

// keepOpenWait bounds how long a worker holds its next acquire while a
// keep's link is being cut (waitOpen).
const keepOpenWait = 2 * time.Second

// waitOpen holds a worker's next acquire while an armed keep's link is
// being cut (between KeepHolder and Open; keepOpenWait at most). Without
// it, every cycle in that window taints its key (its release may be lost
// in the cut): on a fast machine 3 workers cycled through all 8 keys while
// the cut was applied, and no grant could be kept.
func (f *Faults) waitOpen(ctx context.Context) {
	k := f.keep.Load()
	if k == nil {
		return
	}
	select {
	case <-k.opened:
		return
	default:
	}
	t := time.NewTimer(keepOpenWait)
	defer t.Stop()
	select {
	case <-k.opened:
	case <-t.C:
	case <-ctx.Done():
	}
}

// Close implements chaos.Keep.
func (k *keep) Close() (chaos.Holder, bool) {
	k.openOnce.Do(func() { close(k.opened) }) // no worker waits for an Open that will not come
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	if !k.taken {
		k.f.keep.CompareAndSwap(k, nil)
	} else if !k.wrote {
		k.steer.Store(true)
	}
	return k.holder, k.taken
}

// steerKey is the key a worker's next cycle asks for when a kept holder
// waits for a contender (its key), else "". Every worker goes for it from
// the primary's loss until one wrote it, so the promoted replica's first
// grant of it never waits on chance.
func (f *Faults) steerKey() string {
	k := f.keep.Load()
	if k == nil || !k.steer.Load() {
		return ""
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.holder.Key
}

// Release implements chaos.Keep.
func (k *keep) Release() { k.relOnce.Do(func() { close(k.released) }) }

// takeKeep hands the armed keep to holder h if h's acquire was invoked
// after the keep opened (epoch: keepEpoch read before the acquire) and h's
// key is not tainted; nil otherwise.
func (f *Faults) takeKeep(h chaos.Holder, epoch int64) *keep {
	k := f.keep.Load()
	if k == nil || epoch < k.open.Load() {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed || k.taken || k.tainted[h.Key] {
		return nil
	}
	k.taken, k.holder = true, h
	return k
}

// noteRelease is called before a worker releases key, which it acquired
// with keepEpoch at epoch: a release once a keep is armed (before the link
// is cut) of a lock acquired before it opened (once the link is cut) may
// never reach the replica promoted, which then keeps the key until its
// ttl: key is tainted.
func (f *Faults) noteRelease(key string, epoch int64) {
	if k := f.keep.Load(); k != nil && epoch < k.open.Load() {
		k.mu.Lock()
		k.tainted[key] = true
		k.mu.Unlock()
	}
}

// noteWrite is called after process wrote key: it frees a kept holder of
// key waiting for another process's write.
func (f *Faults) noteWrite(key string, process int) {
	k := f.keep.Load()
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.taken && !k.wrote && k.holder.Key == key && k.holder.Process != process {
		k.wrote = true
		k.steer.Store(false)
		close(k.written)
	}
}

// keepMargin is how long before its lease could expire a kept holder
// writes at the latest: a tenth of the ttl, at least 100 ms, at most half.
func keepMargin(ttl time.Duration) time.Duration {
	return min(max(ttl/10, 100*time.Millisecond), ttl/2)
}

// wait keeps the holder whose acquire was invoked at start: until the
// failover is over and another process wrote its key, or until
// keepMargin before start+ttl, or ctx ends. It reports whether another
// process wrote the key meanwhile.
func (k *keep) wait(ctx context.Context, start time.Time, ttl time.Duration) (bool, error) {
	defer k.f.keep.CompareAndSwap(k, nil)
	t := time.NewTimer(time.Until(start.Add(ttl - keepMargin(ttl))))
	defer t.Stop()
	for _, ch := range []chan struct{}{k.released, k.written} {
		select {
		case <-ch:
		case <-t.C:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return true, nil
}

// skew is a clock running at rate from since, offset by offset.
type skew struct {
	since  time.Time
	offset time.Duration
	rate   float64
}

// SkewClock makes Now run at rate × real time from now on (continuously:
// no jump); rate 1 heals.
func (f *Faults) SkewClock(_ context.Context, rate float64) error {
	now := time.Now()
	cur := f.Now()
	if rate == 1 || rate <= 0 || math.IsNaN(rate) {
		f.clock.Store(nil) // heal: back to real time (the skew so far is dropped)
		return nil
	}
	f.clock.Store(&skew{since: now, offset: cur.Sub(now), rate: rate})
	return nil
}

// Now is the lock clients' clock (lock.Options.Now): real time, or skewed.
func (f *Faults) Now() time.Time {
	now := time.Now()
	s := f.clock.Load()
	if s == nil {
		return now
	}
	return now.Add(s.offset + time.Duration(float64(now.Sub(s.since))*(s.rate-1)))
}

// HealAll disarms every fault that has not hit yet and puts the clock back.
func (f *Faults) HealAll() {
	f.mu.Lock()
	f.armed.Add(-int32(len(f.reqs)))
	for _, r := range f.reqs {
		close(r.gone)
	}
	f.reqs = nil
	f.mu.Unlock()
	f.clock.Store(nil)
}
