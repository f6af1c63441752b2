package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// errNoClients is returned when a client fault runs without a workload that
// implements Clients.
var errNoClients = errors.New("client faults need a workload that implements chaos.Clients (the lock workloads do)")

// holderFault is a client fault aimed at the next holder of a key.
type holderFault struct {
	kind    string
	clients Clients
	key     string
	hit     func(ctx context.Context) (Holder, error)

	mu     sync.Mutex
	holder Holder
	ok     bool
}

func (f *holderFault) Kind() string { return f.kind }

// Targets is the key ("" = any key).
func (f *holderFault) Targets() []string { return []string{f.key} }

func (f *holderFault) Start(ctx context.Context) error {
	if f.clients == nil {
		return fmt.Errorf("%s: %w", f.kind, errNoClients)
	}
	h, err := f.hit(ctx)
	if err != nil {
		return fmt.Errorf("%s on key %q: %w", f.kind, f.key, err)
	}
	f.mu.Lock()
	f.holder, f.ok = h, true
	f.mu.Unlock()
	return nil
}

// Heal does nothing: the pause or delay ends by itself, a crash is final.
func (f *holderFault) Heal(context.Context) error { return nil }

// Holder implements HolderFault.
func (f *holderFault) Holder() (Holder, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holder, f.ok
}

// HolderPause stops the next holder of a key inside its critical section
// for a while (the GC-pause case).
type HolderPause struct{ holderFault }

// NewHolderPause pauses the next holder of key ("" = any) for d.
func NewHolderPause(c Clients, key string, d time.Duration) *HolderPause {
	f := &HolderPause{holderFault{kind: "holder-pause", clients: c, key: key}}
	f.hit = func(ctx context.Context) (Holder, error) { return c.PauseHolder(ctx, key, d) }
	return f
}

// HolderCrash kills the next holder of a key inside its critical section.
type HolderCrash struct{ holderFault }

// NewHolderCrash crashes the next holder of key ("" = any).
func NewHolderCrash(c Clients, key string) *HolderCrash {
	f := &HolderCrash{holderFault{kind: "holder-crash", clients: c, key: key}}
	f.hit = func(ctx context.Context) (Holder, error) { return c.CrashHolder(ctx, key) }
	return f
}

// DelayedWrite holds back the next write of a holder of a key for a while
// after it was invoked.
type DelayedWrite struct{ holderFault }

// NewDelayedWrite delays the next write of a holder of key ("" = any) by d.
func NewDelayedWrite(c Clients, key string, d time.Duration) *DelayedWrite {
	f := &DelayedWrite{holderFault{kind: "delayed-write", clients: c, key: key}}
	f.hit = func(ctx context.Context) (Holder, error) { return c.DelayWrite(ctx, key, d) }
	return f
}

// ClockDrift makes every lock client's clock run at Rate × real time until
// Heal.
type ClockDrift struct {
	clients Clients
	rate    float64
}

// NewClockDrift returns a clock drift at rate.
func NewClockDrift(c Clients, rate float64) *ClockDrift { return &ClockDrift{clients: c, rate: rate} }

// Kind implements Fault.
func (f *ClockDrift) Kind() string { return "clock-drift" }

// Targets implements Fault (every client).
func (f *ClockDrift) Targets() []string { return nil }

// Start skews the clients' clocks.
func (f *ClockDrift) Start(ctx context.Context) error {
	if f.clients == nil {
		return fmt.Errorf("clock-drift: %w", errNoClients)
	}
	if err := f.clients.SkewClock(ctx, f.rate); err != nil {
		return fmt.Errorf("clock-drift %g: %w", f.rate, err)
	}
	return nil
}

// Heal puts the clients' clocks back to real time.
func (f *ClockDrift) Heal(ctx context.Context) error {
	if f.clients == nil {
		return nil
	}
	if err := f.clients.SkewClock(ctx, 1); err != nil {
		return fmt.Errorf("clock-drift heal: %w", err)
	}
	return nil
}
