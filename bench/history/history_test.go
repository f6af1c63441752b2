package history

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	ops := []Op{
		{},
		{Index: 3, Time: 12345, Type: Invoke, Process: 2, Impl: "redis-setnx", F: "acquire", Key: "k1"},
		{Index: 4, Time: 99, Type: OK, Process: Resource, F: "resource-write", Key: "k", Value: Int(-7), Token: "tok", Fence: 42,
			Attrs: map[string]string{"seq": "1", "expected": "6", "current": "6", "writer": "3"}},
		{Type: Info, Process: Nemesis, F: FaultStart, Fault: "latency:all=200ms±50ms", Nodes: []string{"redis-1", "redis-2"},
			Error: "quote \" back\\slash \n newline <tag> & \x01"},
		{Value: Int(0), Nodes: []string{}, Attrs: map[string]string{}},
	}
	for i, op := range ops {
		want, err := json.Marshal(&op)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendJSON(nil, &op); !bytes.Equal(got, want) {
			t.Errorf("op %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func TestWriterReaderRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	in := []Op{
		{Type: Invoke, Process: 1, F: "write", Key: "k", Value: Int(5)},
		{Type: OK, Process: 1, F: "write", Key: "k"},
		{Type: Info, Process: Nemesis, F: FaultHeal, Fault: "kill:redis-2", Nodes: []string{"redis-2"}},
	}
	for i, op := range in {
		idx, err := w.Write(op)
		if err != nil || idx != int64(i) {
			t.Fatalf("Write %d: idx %d err %v", i, idx, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	out, err := ReadAll(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("read %d ops, wrote %d", len(out), len(in))
	}
	for i := range in {
		in[i].Index = int64(i)
		a, _ := json.Marshal(in[i])
		b, _ := json.Marshal(out[i])
		if !bytes.Equal(a, b) {
			t.Errorf("op %d: wrote %s read %s", i, a, b)
		}
	}
}

func TestReaderNamesBadLine(t *testing.T) {
	r := NewReader(strings.NewReader("{\"index\":0,\"f\":\"a\"}\n\n{broken\n"))
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	_, err := r.Next()
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("want an error naming line 3, got %v", err)
	}
	r = NewReader(strings.NewReader(""))
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("empty stream: %v", err)
	}
}

func BenchmarkWriter(b *testing.B) {
	w := NewWriter(io.Discard)
	op := Op{Time: 123456789, Type: OK, Process: 7, Impl: "redis-setnx", F: "acquire", Key: "k3", Token: "f3a9c2d1e0b4a7c6", Fence: 1234}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.Write(op); err != nil {
			b.Fatal(err)
		}
	}
}
