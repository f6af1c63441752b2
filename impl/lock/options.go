package lock

import (
	"context"
	"sync"
	"time"
)

// WithOptions adds the Reentrant and Watchdog behaviour of opt to any
// Locker, once for every implementation; it returns l unchanged when opt
// asks for neither. Every registered factory applies it.
//
// Reentrant: while this Locker holds key (its lease not lost: by its own
// clock unexpired, or kept alive by the watchdog), Acquire and TryAcquire of
// key return the same lease and increment a hold count; Release decrements
// it and frees the key on the servers only at zero. The count lives in this
// client, not on the servers.
//
// Watchdog: after each acquisition a goroutine refreshes the lease to its
// ttl every ttl/3 (each refresh bounded by the lease's current expiry, at
// least ttl/3) until Release, Close or the first failed refresh; after a
// failure the lease is considered lost. The Lease value the caller holds
// keeps its original Expiry; Held reports the current one.
func WithOptions(l Locker, opt Options) Locker {
	if !opt.Reentrant && !opt.Watchdog {
		return l
	}
	return &optioned{inner: l, opt: opt, clock: opt.Clock(), held: map[string]*hold{}}
}

// Held returns the lease this Locker currently holds on key, as refreshed
// by its watchdog, when l was built with Reentrant or Watchdog.
func Held(l Locker, key string) (Lease, bool) {
	o, ok := l.(*optioned)
	if !ok {
		return Lease{}, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.held[key]
	if h == nil || h.lost {
		return Lease{}, false
	}
	return h.lease, true
}

type optioned struct {
	inner Locker
	opt   Options
	clock func() time.Time

	mu   sync.Mutex
	held map[string]*hold // by key
}

// hold is one lease this Locker holds; guarded by optioned.mu.
type hold struct {
	lease Lease
	ttl   time.Duration
	count int
	lost  bool          // a watchdog refresh failed
	stop  func()        // stops the watchdog (nil without one)
	done  chan struct{} // closed when the watchdog has exited
}

func (o *optioned) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return o.acquire(ctx, key, ttl, o.inner.Acquire)
}

func (o *optioned) TryAcquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return o.acquire(ctx, key, ttl, o.inner.TryAcquire)
}

func (o *optioned) acquire(ctx context.Context, key string, ttl time.Duration,
	get func(context.Context, string, time.Duration) (Lease, error)) (Lease, error) {
	if o.opt.Reentrant {
		o.mu.Lock()
		if h := o.held[key]; h != nil && o.alive(h) {
			h.count++
			l := h.lease
			o.mu.Unlock()
			return l, nil
		}
		o.mu.Unlock()
	}
	l, err := get(ctx, key, ttl)
	if err != nil {
		return l, err
	}
	h := &hold{lease: l, ttl: ttl, count: 1}
	o.mu.Lock()
	old := o.held[key]
	o.held[key] = h
	if o.opt.Watchdog {
		stop := make(chan struct{})
		h.stop, h.done = sync.OnceFunc(func() { close(stop) }), make(chan struct{})
		go o.watchdog(stop, h)
	}
	o.mu.Unlock()
	stopWatchdog(old)
	return l, nil
}

// alive says whether a hold may be handed out again; o.mu held. The
// watchdog keeps h.lease.Expiry current; a refresh still in flight at the
// expiry (it may take until then) does not extend it.
func (o *optioned) alive(h *hold) bool {
	return !h.lost && o.clock().Before(h.lease.Expiry)
}

func stopWatchdog(h *hold) {
	if h != nil && h.stop != nil {
		h.stop()
		<-h.done
	}
}

// watchdog refreshes h every ttl/3 until stop is closed or a refresh
// fails. A refresh may take until the lease it extends expires (at least
// ttl/3): a slower one could not keep it anyway, and cutting a quicker one
// short loses a lease that was still valid; for a session lock (pg-advisory)
// a statement cut by its deadline costs the connection and with it the lock
// (a 100 ms bound lost pg-advisory's lock in
// TestConformance/pg-advisory/watchdog 4 times in 60 at load ~30).
// Stopping never cancels a refresh in flight either: stopWatchdog waits for
// it, at most that long.
func (o *optioned) watchdog(stop <-chan struct{}, h *hold) {
	defer close(h.done)
	o.mu.Lock()
	every := h.ttl / 3
	o.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		o.mu.Lock()
		l, ttl := h.lease, h.ttl
		o.mu.Unlock()
		rctx, cancel := context.WithTimeout(context.Background(), max(every, l.Expiry.Sub(o.clock())))
		nl, err := o.inner.Refresh(rctx, l, ttl)
		cancel()
		o.mu.Lock()
		if err != nil {
			h.lost = true
			o.mu.Unlock()
			return
		}
		h.lease = nl
		o.mu.Unlock()
	}
}

func (o *optioned) Release(ctx context.Context, l Lease) error {
	o.mu.Lock()
	h := o.held[l.Key]
	if h == nil || h.lease.Token != l.Token {
		o.mu.Unlock()
		return o.inner.Release(ctx, l)
	}
	if o.opt.Reentrant && h.count > 1 && !h.lost {
		h.count--
		o.mu.Unlock()
		return nil
	}
	delete(o.held, l.Key)
	o.mu.Unlock()
	stopWatchdog(h)
	return o.inner.Release(ctx, h.lease)
}

func (o *optioned) Refresh(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	nl, err := o.inner.Refresh(ctx, l, ttl)
	if err != nil {
		return nl, err
	}
	o.mu.Lock()
	if h := o.held[l.Key]; h != nil && h.lease.Token == l.Token {
		h.lease, h.ttl, h.lost = nl, ttl, false
	}
	o.mu.Unlock()
	return nl, nil
}

func (o *optioned) Close() error {
	o.mu.Lock()
	hs := make([]*hold, 0, len(o.held))
	for k, h := range o.held {
		hs = append(hs, h)
		delete(o.held, k)
	}
	o.mu.Unlock()
	for _, h := range hs {
		stopWatchdog(h)
	}
	return o.inner.Close()
}
