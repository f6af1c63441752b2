package recorder

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
)

func TestNormalizeError(t *testing.T) {
	cases := []struct{ in, want string }{
		{"timeout", "timeout"},
		{"fenced", "fenced"},
		{"not-acquired", "not-acquired"},
		{"read tcp 127.0.0.1:54321->127.0.0.1:6379: i/o timeout", "read tcp ADDR->ADDR: i/o timeout"},
		{"dial tcp [::1]:40123: connect: connection refused", "dial tcp ADDR: connect: connection refused"},
		{"dial tcp localhost:41234: connect: connection refused", "dial tcp ADDR: connect: connection refused"},
		{`failed to connect to host=/tmp/faultline-pg-3141 user=fl: dial error`, "failed to connect to host=PATH user=fl: dial error"},
		{"ERROR: could not serialize access (SQLSTATE 40001)", "ERROR: could not serialize access (SQLSTATE 40001)"},
		{"lock held by 8f14e45fceea167a: retry after 1.5ms", "lock held by ID: retry after DURATION"},
		{"redis-2: process 17 crashed at offset 90210", "redis-2: process N crashed at offset N"},
		{"gid 3fa85f64-5717-4562-b3fc-2c963f66afa6 unknown", "gid ID unknown"},
	}
	for _, c := range cases {
		if got := NormalizeError(c.in); got != c.want {
			t.Errorf("NormalizeError(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	long := "x " + string(bytes.Repeat([]byte("é"), 200))
	if got := NormalizeError(long); len(got) > maxKindLen || !utf8Valid(got) {
		t.Errorf("long message: %d bytes, valid UTF-8 %v", len(got), utf8Valid(got))
	}
}

func utf8Valid(s string) bool { return bytes.Equal([]byte(string([]rune(s))), []byte(s)) }

// The reproduction: 32 identical timeouts, each through another
// ephemeral port, gave 13 keys; now one key with one example message.
func TestIdenticalErrorsOneKind(t *testing.T) {
	h := NewHistory(&bytes.Buffer{}, time.Now())
	s := NewStats(h, []string{"acquire"}, time.Time{})
	w := s.Worker(0, "redis-setnx")
	for i := range 32 {
		msg := fmt.Sprintf("read tcp 127.0.0.1:%d->127.0.0.1:%d: i/o timeout", 40000+i*997, 30000+i)
		w.Done(0, w.Mark(), history.Info, msg)
	}
	w.Done(0, w.Mark(), history.Fail, "not-acquired")
	st := OpStats(s.Merge()["acquire"], time.Second)
	if len(st.Errors) != 2 || st.Errors["read tcp ADDR->ADDR: i/o timeout"] != 32 || st.Errors["not-acquired"] != 1 {
		t.Fatalf("errors by kind: %v", st.Errors)
	}
	if len(st.ErrorExamples) != 1 || st.ErrorExamples["read tcp ADDR->ADDR: i/o timeout"] == "" {
		t.Fatalf("examples: %v", st.ErrorExamples)
	}
	if st.Count != 33 {
		t.Errorf("count %d, want 33", st.Count)
	}
}
