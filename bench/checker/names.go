package checker

import (
	"sync"
	"sync/atomic"
)

// names interns the strings a history repeats by the million (functions,
// keys, errors) as small ids, so that an Operation holds 4 bytes for each
// instead of a 16-byte string header. Id 0 is "". The table only grows:
// it holds each distinct string once for the life of the process (a run's
// keys and errors are few; the checks of one process share it).
var names = newNameTable()

// funcs interns the operations' functions (acquire, read, …), as uint16
// ids in an Operation; a history with more distinct functions than that
// keeps the rest as strings (funcOverflow).
var funcs = newNameTable()

const funcOverflow = 1<<16 - 1

type nameTable struct {
	mu   sync.Mutex
	ids  map[string]uint32
	list atomic.Pointer[[]string] // readers index it without the lock
}

func newNameTable() *nameTable {
	t := &nameTable{ids: map[string]uint32{"": 0}}
	l := []string{""}
	t.list.Store(&l)
	return t
}

// id returns s's id, adding s if new.
func (t *nameTable) id(s string) uint32 {
	if s == "" {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.ids[s]; ok {
		return id
	}
	l := append(*t.list.Load(), s) // a reader holds the old header, whose elements never change
	id := uint32(len(l) - 1)
	t.ids[s] = id
	t.list.Store(&l)
	return id
}

// get returns the string of id.
func (t *nameTable) get(id uint32) string { return (*t.list.Load())[id] }
