// Package registry is the generic name → value table behind lock.Register,
// txn.Register and workload.Register, in the manner of database/sql drivers.
package registry

import (
	"fmt"
	"sort"
	"sync"
)

// Registry holds values of one kind, safe for concurrent use.
type Registry[T any] struct {
	what string // names the kind in messages
	mu   sync.RWMutex
	byID map[string]T
}

// New returns an empty registry; what names its kind in messages ("lock
// implementation", "workload").
func New[T any](what string) *Registry[T] {
	return &Registry[T]{what: what, byID: map[string]T{}}
}

// Register adds v under name. It panics on a duplicate name, as
// database/sql.Register does.
func (r *Registry[T]) Register(name string, v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.byID[name]; dup {
		panic(r.what + ": Register called twice for " + name)
	}
	r.byID[name] = v
}

// Lookup returns the value registered under name; the error lists the
// known names.
func (r *Registry[T]) Lookup(name string) (T, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if v, ok := r.byID[name]; ok {
		return v, nil
	}
	var zero T
	return zero, fmt.Errorf("unknown %s %q (known: %v)", r.what, name, r.namesLocked())
}

// All returns every registered value, sorted by name.
func (r *Registry[T]) All() []T {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]T, 0, len(r.byID))
	for _, name := range r.namesLocked() {
		out = append(out, r.byID[name])
	}
	return out
}

// Names returns every registered name, sorted.
func (r *Registry[T]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.namesLocked()
}

func (r *Registry[T]) namesLocked() []string {
	names := make([]string, 0, len(r.byID))
	for n := range r.byID {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
