package history

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// Every bad line is a *LineError naming the file and line: a truncated last
// line, a line past MaxLine. A line longer than the old 4 MiB limit of the
// report's reader is accepted (one limit for every reader).
func TestReaderLineErrors(t *testing.T) {
	good := `{"index":0,"f":"a"}` + "\n"
	long := `{"index":1,"f":"b","error":"` + strings.Repeat("x", 5<<20) + `"}` + "\n"
	tests := []struct {
		name     string
		in       string
		ops      int
		wantLine int
	}{
		{"truncated last line", good + good + `{"index":2,"f":`, 2, 3},
		{"5 MiB line", good + long + good, 3, 0},
		{"line over MaxLine", good + `{"error":"` + strings.Repeat("y", MaxLine) + `"}` + "\n", 1, 2},
		{"not json", "\n\nnope\n", 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "history.jsonl")
			if err := os.WriteFile(path, []byte(tt.in), 0o644); err != nil {
				t.Fatal(err)
			}
			ops, err := Load(path)
			if len(ops) != tt.ops {
				t.Errorf("read %d ops before the error, want %d", len(ops), tt.ops)
			}
			if tt.wantLine == 0 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			var le *LineError
			if !errors.As(err, &le) || le.Path != path || le.Line != tt.wantLine {
				t.Fatalf("err = %v, want a *LineError for %s line %d", err, path, tt.wantLine)
			}
			if want := fmt.Sprintf("%s line %d", path, tt.wantLine); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		})
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

// WriteTails (the recorder's path: entries encoded by AppendJSONTail on the
// producers, numbered by the writer) writes the very bytes Write does, a
// last entry without its '\n' included, and an entry longer than the
// buffer too.
func TestWriteTailsMatchesWrite(t *testing.T) {
	long := strings.Repeat("x", 300<<10)
	ops := []Op{
		{Time: 12345, Type: Invoke, Process: 2, Impl: "redis-setnx", F: "acquire", Key: "k1"},
		{Time: 99, Type: OK, Process: Resource, F: "resource-write", Key: "k", Value: Int(-7), Token: "tok", Fence: 42,
			Attrs: map[string]string{"seq": "1", "expected": "6"}},
		{Type: Info, Process: Nemesis, F: FaultStart, Fault: "latency:all=200ms", Nodes: []string{"redis-1"}, Error: "quote \" \n <tag> & \x01"},
		{Time: 7, Type: Fail, Process: 3, F: "release", Error: long},
		{Time: 8, Type: OK, Process: 4, F: "read"},
	}
	var want, got bytes.Buffer
	ww, wg := NewWriter(&want), NewWriter(&got)
	var tails []byte
	for i, op := range ops {
		if _, err := ww.Write(op); err != nil {
			t.Fatal(err)
		}
		tails = AppendJSONTail(tails, &ops[i])
		if i < len(ops)-1 {
			tails = append(tails, '\n')
		}
	}
	if n, err := wg.WriteTails(tails[:0]); n != 0 || err != nil {
		t.Fatalf("no tails: %d, %v", n, err)
	}
	if n, err := wg.WriteTails(tails); n != len(ops) || err != nil {
		t.Fatalf("WriteTails = %d, %v; want %d", n, err, len(ops))
	}
	if wg.Len() != ww.Len() {
		t.Errorf("Len %d, want %d", wg.Len(), ww.Len())
	}
	if err := errors.Join(ww.Flush(), wg.Flush()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Errorf("WriteTails wrote\n%.300q\nWrite wrote\n%.300q", got.String(), want.String())
	}
}

// BenchmarkAppendJSONTail is a producer's encoding of one ceiling entry
// (everything but the index, which the writer adds).
func BenchmarkAppendJSONTail(b *testing.B) {
	op := Op{Time: 123456789, Type: Invoke, Process: 17, Impl: "raw", F: "set", Key: "key:123"}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSONTail(buf[:0], &op)
	}
}

// BenchmarkWriteTails is the writer's side of one ceiling entry: numbered
// and copied into the buffer.
func BenchmarkWriteTails(b *testing.B) {
	op := Op{Time: 123456789, Type: OK, Process: 17, Impl: "raw", F: "set", Key: "key:123"}
	var batch []byte
	for range 1000 {
		batch = append(AppendJSONTail(batch, &op), '\n')
	}
	w := NewWriter(io.Discard)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		k, err := w.WriteTails(batch)
		if err != nil {
			b.Fatal(err)
		}
		n += k
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/entry")
}

// WriteTails counts its indexes in decimal (incDecimal): across 9→10,
// 99→100, 999→1000 and after Write's entries they still read back as
// their positions.
func TestWriteTailsIndexesCarry(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	op := Op{Time: 5, Type: OK, Process: 1, F: "read"}
	tail := append(AppendJSONTail(nil, &op), '\n')
	for i := 0; i < 1200; {
		if i%7 == 3 {
			if _, err := w.Write(op); err != nil {
				t.Fatal(err)
			}
			i++
			continue
		}
		k := 1 + i%5
		if _, err := w.WriteTails(bytes.Repeat(tail, k)); err != nil {
			t.Fatal(err)
		}
		i += k
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	ops, err := ReadAll(&out)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(ops)) != w.Len() {
		t.Fatalf("%d ops, Len %d", len(ops), w.Len())
	}
	for i, op := range ops {
		if op.Index != int64(i) {
			t.Fatalf("entry %d has index %d", i, op.Index)
		}
	}
	for _, c := range []struct{ in, want string }{{"0", "1"}, {"9", "10"}, {"199", "200"}, {"999", "1000"}, {"1234", "1235"}} {
		if got := string(incDecimal([]byte(c.in))); got != c.want {
			t.Errorf("incDecimal(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}
