// Package registry is the name → implementation table behind lock.Register
// and txn.Register, in the manner of database/sql drivers.
package registry

import (
	"fmt"
	"sort"
	"sync"
)

// Registry holds implementations of one kind (kind names it in errors).
type Registry[T any] struct {
	kind string
	mu   sync.RWMutex
	byID map[string]T
}

// New returns an empty registry; kind is used in messages ("lock", "txn").
func New[T any](kind string) *Registry[T] {
	return &Registry[T]{kind: kind, byID: map[string]T{}}
}

// Register adds v under name. It panics on a duplicate name, as
// database/sql.Register does.
func (r *Registry[T]) Register(name string, v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.byID[name]; dup {
		panic(r.kind + ": Register called twice for " + name)
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
	return zero, fmt.Errorf("unknown %s implementation %q (known: %v)", r.kind, name, r.namesLocked())
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

func (r *Registry[T]) namesLocked() []string {
	names := make([]string, 0, len(r.byID))
	for n := range r.byID {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
