package chaos

import (
	"context"
	"time"
)

// Clients is the workload side of client faults: the runner implements it,
// because only the workers know who holds which lock. chaos calls it at the
// scheduled times and records what it reports in the history.
//
// Every method that names a key accepts "" for "whichever key is held first".
// Methods that wait for a holder return once the fault has hit one (or ctx
// ends, with ctx's error): the returned Holder is recorded in the fault-start
// event (Key, Attrs "process", "token", "fence"), which is how the liveness
// checker finds the crashed process.
type Clients interface {
	// PauseHolder makes the next worker that holds key stop inside its
	// critical section — after its read returned, before its write is
	// invoked — for d (the GC-pause case). It returns when the pause begins.
	PauseHolder(ctx context.Context, key string, d time.Duration) (Holder, error)
	// CrashHolder makes the next worker that holds key die inside its
	// critical section without releasing (its lease must expire on its
	// own); the worker continues under a new process id. It returns once
	// the worker has crashed.
	CrashHolder(ctx context.Context, key string) (Holder, error)
	// DelayWrite makes the next write of a holder of key reach the resource
	// d after it was invoked (the write is recorded as invoked, then held
	// back): the delayed-write case of a message stuck in the network past
	// the lease. It returns when the write is being held back.
	DelayWrite(ctx context.Context, key string, d time.Duration) (Holder, error)
	// SkewClock makes every lock client's clock (lock.Options.Now) run at
	// rate times real time from now on; rate 1 heals.
	SkewClock(ctx context.Context, rate float64) error
}

// Holder is the worker a client fault hit.
type Holder struct {
	Process int
	Key     string
	Token   string
	Fence   uint64
	// OSPid is the OS process of an implementation that runs in one of its
	// own (exec:), which the fault stopped or killed for real; 0 = none.
	OSPid int
}

// HolderKeeper is an optional part of Clients (the lock workloads have it):
// a lossy failover keeps one lock holder working across it, so that a lock
// acknowledged inside its window is still held when the primary is lost.
type HolderKeeper interface {
	// KeepHolder arms a keep (before the link is cut): once it is open
	// (after the cut), the first worker granted a lock whose acquire was
	// invoked after Open, on a key no lock acquired before Open was released
	// from since KeepHolder (such a release may never reach the promoted
	// replica, which then keeps the key until its ttl), stays inside its critical
	// section — after its read, before its write — until the keep is
	// released and another process has written that key, or until its lease
	// is about to expire (a tenth of the ttl before it, at least 100 ms),
	// whichever comes first. From Close until another process wrote the
	// kept key, every worker's next cycle asks for that key: the contender
	// is scripted, not left to chance. nil when the workload has keeping
	// turned off.
	KeepHolder() Keep
}

// Keep is one armed HolderKeeper request.
type Keep interface {
	// Open starts the window: locks whose acquire is invoked from now on
	// may be kept (the replication link is cut).
	Open()
	// Close stops the keep from taking a holder (the lossy window is over)
	// and returns the holder it took, if any.
	Close() (Holder, bool)
	// Release lets the holder go on (the failover is over): it writes once
	// another process has written its key, or its lease is about to expire.
	Release()
}
