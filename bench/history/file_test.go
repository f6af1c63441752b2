package history

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// sampleOps is a two-implementation history with a nemesis pair, shaped
// like a counter run's.
func sampleOps(cycles int) []Op {
	var ops []Op
	for _, impl := range []string{"redis-setnx", "redis-setnx-b"} { // one name a prefix of the other
		ops = append(ops, Op{Type: Info, Process: Nemesis, Impl: impl, F: FaultStart, Fault: "kill:redis-1", Nodes: []string{"redis-1"}})
		for i := range cycles {
			p, k, tok := i%8, fmt.Sprintf("k%d", i%4), fmt.Sprintf("tok-%s-%d", impl, i)
			ops = append(ops,
				Op{Time: int64(i) * 1000, Type: Invoke, Process: p, Impl: impl, F: "acquire", Key: k, Token: tok},
				Op{Time: int64(i)*1000 + 300, Type: OK, Process: p, Impl: impl, F: "acquire", Key: k, Token: tok, Fence: uint64(i + 1)},
				Op{Time: int64(i)*1000 + 400, Type: Invoke, Process: p, Impl: impl, F: "write", Key: k, Value: Int(int64(i))},
				Op{Time: int64(i)*1000 + 600, Type: Info, Process: p, Impl: impl, F: "write", Key: k, Error: "timeout"},
			)
		}
		ops = append(ops, Op{Type: Info, Process: Nemesis, Impl: impl, F: FaultHeal, Fault: "kill:redis-1", Nodes: []string{"redis-1"}},
			Op{Type: OK, Process: Resource, Impl: impl, F: "resource-write", Key: "k0", Attrs: map[string]string{"seq": "1"}})
	}
	for i := range ops {
		ops[i].Index = int64(i)
	}
	return ops
}

// writeHistory writes ops to dir/name, compressed when name ends in .zst,
// through the same Writer and compressor a run uses.
func writeHistory(t testing.TB, dir, name string, ops []Op) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var under io.Writer = f
	var z io.WriteCloser
	if strings.HasSuffix(name, ".zst") {
		if z, err = NewCompressor(f); err != nil {
			t.Fatal(err)
		}
		under = z
	}
	w := NewWriter(under)
	for _, op := range ops {
		if _, err := w.Write(op); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if z != nil {
		if err := z.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func jsonEqual(t *testing.T, got, want []Op) {
	t.Helper()
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(want)
	if !bytes.Equal(a, b) {
		t.Fatalf("read %d ops, want %d; first difference in\n got %.300s\nwant %.300s", len(got), len(want), a, b)
	}
}

// Both formats read back to the same ops, through Load, ReadAll and
// LoadImpl (which equals ForImpl, also for an impl whose name prefixes
// another's); a compressed history is several times smaller.
func TestFormatsReadBackAlike(t *testing.T) {
	ops := sampleOps(500)
	dir := t.TempDir()
	plain := writeHistory(t, dir, PlainFileName, ops)
	zst := writeHistory(t, dir, FileName, ops)
	for _, path := range []string{plain, zst} {
		got, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		jsonEqual(t, got, ops)
		b, _ := os.ReadFile(path)
		got, err = ReadAll(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		jsonEqual(t, got, ops)
		for _, impl := range []string{"redis-setnx", "redis-setnx-b", "absent"} {
			mine, err := LoadImpl(path, impl)
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, mine, ForImpl(ops, impl))
		}
	}
	ps, _ := os.Stat(plain)
	zs, _ := os.Stat(zst)
	if zs.Size()*4 > ps.Size() {
		t.Errorf("compressed history %d bytes, plain %d: less than 4x smaller", zs.Size(), ps.Size())
	}
}

// The compressed history is standard zstd: the zstd command line reads it
// back to the plain file, byte for byte.
func TestZstdcatReadsHistory(t *testing.T) {
	bin, err := exec.LookPath("zstd")
	if err != nil {
		t.Skip("zstd command not installed (apt package zstd)")
	}
	ops := sampleOps(50)
	dir := t.TempDir()
	plain := writeHistory(t, dir, PlainFileName, ops)
	zst := writeHistory(t, dir, FileName, ops)
	out, err := exec.Command(bin, "-dc", zst).Output()
	if err != nil {
		t.Fatalf("zstd -dc: %v", err)
	}
	want, _ := os.ReadFile(plain)
	if !bytes.Equal(out, want) {
		t.Fatalf("zstd -dc gave %d bytes, the plain writer %d", len(out), len(want))
	}
}

// Find prefers the compressed history, falls back to the plain one, and
// says when there is neither.
func TestFind(t *testing.T) {
	dir := t.TempDir()
	if _, err := Find(dir); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), PlainFileName) {
		t.Fatalf("empty dir: %v", err)
	}
	plain := writeHistory(t, dir, PlainFileName, nil)
	if p, err := Find(dir); err != nil || p != plain {
		t.Fatalf("plain only: %q %v", p, err)
	}
	zst := writeHistory(t, dir, FileName, nil)
	if p, err := Find(dir); err != nil || p != zst {
		t.Fatalf("both: %q %v, want %s", p, err, zst)
	}
}

// A compressed history cut inside its last frame (a run killed before
// closing it) reads up to its last complete block and says it was cut;
// other damage is a *LineError naming the file, after the ops before it.
func TestCompressedDamage(t *testing.T) {
	ops := sampleOps(2000)
	dir := t.TempDir()
	zst := writeHistory(t, dir, FileName, ops)
	b, _ := os.ReadFile(zst)
	for _, tt := range []struct {
		name    string
		data    []byte
		cut     bool // read to the cut, no error
		minRead int
	}{
		{"cut", b[:len(b)*2/3], true, 1},
		{"cut in the header", b[:3], false, 0},
		{"garbage after the frame", append(append([]byte(nil), b...), bytes.Repeat([]byte{0xff}, 64)...), false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := f.All()
			if len(got) > len(ops) || len(got) < tt.minRead {
				t.Fatalf("read %d of %d ops from a damaged file", len(got), len(ops))
			}
			if tt.cut {
				if err != nil || !f.Truncated() {
					t.Fatalf("cut file: err %v, Truncated %v; want no error, truncated", err, f.Truncated())
				}
				jsonEqual(t, got, ops[:len(got)])
				return
			}
			var le *LineError
			if !errors.As(err, &le) || le.Path != path {
				t.Fatalf("err = %v, want a *LineError naming %s", err, path)
			}
		})
	}
}

// LoadImpl shares repeated strings instead of holding one copy per entry.
func TestLoadImplSharesStrings(t *testing.T) {
	dir := t.TempDir()
	path := writeHistory(t, dir, FileName, sampleOps(10))
	ops, err := LoadImpl(path, "redis-setnx")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ops, ForImpl(sampleOps(10), "redis-setnx")) {
		t.Fatal("LoadImpl differs from ForImpl")
	}
	same := func(a, b string) bool { return a != "" && a == b && unsafe.StringData(a) == unsafe.StringData(b) }
	if !same(ops[1].F, ops[5].F) || !same(ops[1].Impl, ops[9].Impl) {
		t.Error("operation and impl names are copied per entry")
	}
}

// BenchmarkWriteHistory: the writer's cost per entry, plain and through the
// compressor, and the bytes each entry takes on disk (benchstat-able).
func BenchmarkWriteHistory(b *testing.B) {
	ops := sampleOps(1000)
	for _, format := range []string{"jsonl", "zstd"} {
		b.Run(format, func(b *testing.B) {
			var cw countWriter
			var under io.Writer = &cw
			var z io.WriteCloser
			if format == "zstd" {
				z, _ = NewCompressor(&cw)
				under = z
			}
			w := NewWriter(under)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if _, err := w.Write(ops[n%len(ops)]); err != nil {
					b.Fatal(err)
				}
				n++
			}
			_ = w.Flush()
			if z != nil {
				_ = z.Close()
			}
			b.ReportMetric(float64(cw)/float64(n), "bytes/op-entry")
		})
	}
}

// BenchmarkReadHistory: reading a history back, whole (Load) and one
// implementation's phase (LoadImpl, what the checks do), per entry.
func BenchmarkReadHistory(b *testing.B) {
	ops := sampleOps(5000)
	dir := b.TempDir()
	for _, name := range []string{PlainFileName, FileName} {
		path := writeHistory(b, dir, name, ops)
		for _, mode := range []string{"Load", "LoadImpl"} {
			b.Run(name+"/"+mode, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if mode == "Load" {
						_, err = Load(path)
					} else {
						_, err = LoadImpl(path, "redis-setnx")
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/entry")
			})
		}
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// EachImpl hands each implementation its own ops, and a malformed line of
// any implementation (or of none) fails the first pass with its line.
func TestEachImpl(t *testing.T) {
	ops := sampleOps(20)
	dir := t.TempDir()
	path := writeHistory(t, dir, FileName, ops)
	impls := []string{"redis-setnx-b", "redis-setnx"}
	var seen []string
	truncated, err := EachImpl(path, impls, func(impl string, mine []Op) error {
		seen = append(seen, impl)
		jsonEqual(t, mine, ForImpl(ops, impl))
		return nil
	})
	if err != nil || truncated || !reflect.DeepEqual(seen, impls) {
		t.Fatalf("EachImpl: %v, truncated %v, visited %v", err, truncated, seen)
	}
	b, _ := os.ReadFile(writeHistory(t, dir, PlainFileName, ops))
	bad := filepath.Join(t.TempDir(), PlainFileName)
	if err := os.WriteFile(bad, append(b, "{\"impl\":\"other\",\"index\":\"x\"}\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = EachImpl(bad, impls, func(string, []Op) error { return nil })
	var le *LineError
	if !errors.As(err, &le) || le.Line != len(ops)+1 {
		t.Fatalf("err = %v, want a *LineError at line %d", err, len(ops)+1)
	}
}

// CountMatching counts, per needle, the lines of one implementation that
// hold it: the sizes the checks allocate before streaming a phase.
func TestCountMatching(t *testing.T) {
	ops := []Op{
		{Index: 0, Type: Invoke, Process: 1, Impl: "a", F: "acquire"},
		{Index: 1, Type: OK, Process: 1, Impl: "a", F: "acquire"},
		{Index: 2, Type: Invoke, Process: 2, Impl: "ab", F: "acquire"},
		{Index: 3, Type: Invoke, Process: 1, Impl: "a", F: "write"},
		{Index: 4, Type: OK, Process: Resource, Impl: "a", F: "resource-write"},
		{Index: 5, Type: OK, Process: Resource, Impl: "ab", F: "resource-write"},
	}
	path := writeHistory(t, t.TempDir(), "history.jsonl.zst", ops)
	n, err := CountMatching(path, "a", []byte(`"type":"invoke"`), []byte(`"f":"resource-write"`))
	if err != nil {
		t.Fatal(err)
	}
	if n[0] != 2 || n[1] != 1 {
		t.Fatalf("counted %v, want [2 1] (impl ab's lines left out)", n)
	}
}
