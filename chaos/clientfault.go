package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
