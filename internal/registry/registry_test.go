package registry

import (
	"strings"
	"testing"
)

func TestRegistry(t *testing.T) {
	r := New[int]("lock implementation")
	r.Register("b", 2)
	r.Register("a", 1)
	if got := r.All(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("All = %v, want [1 2] (sorted by name)", got)
	}
	if got := r.Names(); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("Names = %v, want [a b]", got)
	}
	if v, err := r.Lookup("b"); err != nil || v != 2 {
		t.Fatalf("Lookup(b) = %v, %v", v, err)
	}
	_, err := r.Lookup("nope")
	if err == nil || !strings.Contains(err.Error(), `unknown lock implementation "nope" (known: [a b])`) {
		t.Fatalf("Lookup(nope) error = %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate Register did not panic")
		}
	}()
	r.Register("a", 3)
}
