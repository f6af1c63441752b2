package history

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

// File names of a run's history: runs write the zstd-compressed one
// (readable by `zstdcat history.jsonl.zst`); older runs wrote plain JSONL,
// which every reader still accepts.
const (
	FileName      = "history.jsonl.zst"
	PlainFileName = "history.jsonl"
)

// zstdMagic opens every zstd frame (RFC 8878).
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// Find returns the history file of run directory dir: history.jsonl.zst,
// else history.jsonl. When neither exists the error wraps fs.ErrNotExist
// and names both.
func Find(dir string) (string, error) {
	for _, name := range []string{FileName, PlainFileName} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("history: %w", err)
		}
	}
	return "", fmt.Errorf("history: neither %s nor %s in %s: %w", FileName, PlainFileName, dir, fs.ErrNotExist)
}

// File is an open history file: a Reader over its (decompressed) lines.
// Close it when done.
type File struct {
	*Reader
	f    *os.File
	dec  *zstd.Decoder
	tail *unfinished // nil for plain files
}

// Open opens a history file for streaming, plain or zstd-compressed (told
// apart by the content, not the name). A compressed history whose last
// frame stops short — the run died before closing it (kill -9, OOM, a
// crashed machine) — reads up to its last complete block, then ends:
// Truncated says so. Other damage is an error (but a damaged block header
// that claims to run past the end of the file reads as a cut).
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	r, dec, err := decompress(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("history: %s: %w", path, err)
	}
	file := &File{f: f, dec: dec}
	if dec != nil {
		file.tail = &unfinished{r: r}
		r = file.tail
	}
	file.Reader = NewReader(r).Named(path)
	file.Reader.cut = file.Truncated
	return file, nil
}

// Truncated says whether the compressed stream ended inside a frame (the
// writer never closed it), as far as it has been read.
func (f *File) Truncated() bool { return f.tail != nil && f.tail.cut }

// unfinished ends a compressed stream cut inside its last frame at the last
// complete block, as the end of the history.
type unfinished struct {
	r   io.Reader
	cut bool
}

func (u *unfinished) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		u.cut = true
		err = io.EOF
	}
	return n, err
}

// Close releases the file and the decoder.
func (f *File) Close() error {
	if f.dec != nil {
		f.dec.Close()
	}
	return f.f.Close()
}

// Decompress returns a reader of r's history lines: r itself when it is
// plain JSONL, a streaming zstd decoder when it starts with a zstd frame.
// Close the returned closer when done (a no-op for plain input).
func Decompress(r io.Reader) (io.Reader, func(), error) {
	rd, dec, err := decompress(r)
	if err != nil {
		return nil, nil, err
	}
	if dec == nil {
		return rd, func() {}, nil
	}
	return rd, dec.Close, nil
}

func decompress(r io.Reader) (io.Reader, *zstd.Decoder, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(len(zstdMagic))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	if !bytes.Equal(head, zstdMagic) {
		return br, nil, nil
	}
	// One goroutine and low memory: the checkers stream, they do not need
	// the decoder to run ahead.
	dec, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, nil, fmt.Errorf("zstd: %w", err)
	}
	return dec, dec, nil
}

// Load reads every Op of a history file, plain or compressed; a bad line is
// a *LineError naming it. It holds the whole history in memory: prefer
// LoadImpl or Open for long runs.
func Load(path string) ([]Op, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.All()
}

// LoadImpl streams a history file and keeps only the Ops of implementation
// impl (what ForImpl would return), so that memory holds one
// implementation's phase at a time. Every line is checked: one that is not
// valid JSON is a *LineError even when it is not impl's.
func LoadImpl(path, impl string) ([]Op, error) {
	n, err := countImpl(path, impl)
	if err != nil {
		return nil, err
	}
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.impl(impl, true, n)
}

// countImpl is an upper bound of how many lines of the history at path are
// implementation impl's (those that hold its name as a JSON string), read
// without decoding any: the slice of impl's Ops is then allocated once, at
// its size, instead of growing by copies (which, for a long run, allocated
// several times the phase's size and held two copies at each growth). A
// read error is left to the decoding pass, which reports it with its line.
func countImpl(path, impl string) (int, error) { return countLines(path, impl, nil) }

// countLines counts the lines of the history at path that hold impl's name
// as a JSON string, and also, when not nil, the bytes of also.
func countLines(path, impl string, also []byte) (int, error) {
	needle := appendString(nil, impl)
	if bytes.ContainsRune(needle, '\\') {
		return 0, nil // an escaped name: impl finds its lines by decoding
	}
	f, err := Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	for {
		b, err := f.Line()
		if err != nil {
			return n, nil
		}
		if bytes.Contains(b, needle) && (also == nil || bytes.Contains(b, also)) {
			n++
		}
	}
}

// EachImpl streams a history file once per implementation of impls and
// calls fn with that implementation's Ops (LoadImpl's), so that memory
// holds one phase at a time. The first pass checks every line (a malformed
// one is a *LineError); later passes skip other implementations' lines
// without decoding them. truncated says the compressed history stops
// inside its last frame (File.Truncated): the run died before closing it.
func EachImpl(path string, impls []string, fn func(impl string, ops []Op) error) (truncated bool, err error) {
	for i, impl := range impls {
		n, err := countImpl(path, impl)
		if err != nil {
			return truncated, err
		}
		f, err := Open(path)
		if err != nil {
			return truncated, err
		}
		ops, err := f.impl(impl, i == 0, n)
		truncated = truncated || f.Truncated()
		f.Close()
		if err != nil {
			return truncated, err
		}
		if err := fn(impl, ops); err != nil {
			return truncated, err
		}
	}
	return truncated, nil
}

// impl reads every remaining Op of implementation impl; on an error it
// returns those read before. With validate, lines of other implementations
// are decoded too (a malformed one is an error); without, they are skipped unread. Strings repeated
// across entries (impl, operation, key, type, error) are shared, not copied
// per entry. size, when known, is the capacity to allocate (countImpl).
func (r *Reader) impl(impl string, validate bool, size int) ([]Op, error) {
	var ops []Op // nil when there are none, as before
	if size > 0 {
		ops = make([]Op, 0, size)
	}
	err := r.eachOf(impl, validate, func(op *Op) { ops = append(ops, *op) })
	return ops, err
}

// StreamImpl streams the history file at path once and calls visit with
// each Op of implementation impl, in order, as LoadImpl would return them
// (strings shared), without holding them: visit gets the same *Op each
// time and must copy what it keeps. With validate, other implementations'
// lines are decoded too (a malformed one is a *LineError). truncated is
// File.Truncated.
func StreamImpl(path, impl string, validate bool, visit func(*Op)) (truncated bool, err error) {
	f, err := Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	err = f.eachOf(impl, validate, visit)
	return f.Truncated(), err
}

// CountInvocations is an upper bound of the invocations of implementation
// impl in the history at path (lines holding its name and "type":"invoke"),
// counted without decoding: what to allocate before StreamImpl.
func CountInvocations(path, impl string) (int, error) {
	return countLines(path, impl, []byte(`"type":"invoke"`))
}

// CountMatching counts, in one pass over the history at path and without
// decoding, the lines of implementation impl that hold each of needles
// (n[i]: those holding needles[i]): upper bounds of how many entries of a
// kind a phase has, to allocate before StreamImpl. An escaped name counts
// nothing (as countLines).
func CountMatching(path, impl string, needles ...[]byte) ([]int, error) {
	n := make([]int, len(needles))
	needle := appendString(nil, impl)
	if bytes.ContainsRune(needle, '\\') {
		return n, nil
	}
	f, err := Open(path)
	if err != nil {
		return n, err
	}
	defer f.Close()
	for {
		b, err := f.Line()
		if err != nil {
			return n, nil // a read error is the decoding pass's to report
		}
		if !bytes.Contains(b, needle) {
			continue
		}
		for i, x := range needles {
			if bytes.Contains(b, x) {
				n[i]++
			}
		}
	}
}

// eachOf calls visit with every remaining Op of implementation impl (see
// StreamImpl); on an error it stops.
func (r *Reader) eachOf(impl string, validate bool, visit func(*Op)) error {
	// A line of impl holds its name as a JSON string; a line without those
	// bytes cannot be one of impl's (an escaped name is decoded below).
	needle := appendString(nil, impl)
	plain := !bytes.ContainsRune(needle, '\\')
	in := newInterner()
	tokens := map[int]string{} // process → its last token, shared by the entries repeating it
	var op Op                  // one for every line: visit copies what it keeps
	for {
		b, err := r.Line()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if plain && !bytes.Contains(b, needle) {
			if validate {
				if _, err := r.decode(b); err != nil {
					return err
				}
			}
			continue
		}
		op, err = r.decode(b)
		if err != nil {
			return err
		}
		if op.Impl != impl {
			continue
		}
		in.op(&op)
		if op.Token != "" { // an operation's token recurs in its process's next entries
			if t := tokens[op.Process]; t == op.Token {
				op.Token = t
			} else {
				tokens[op.Process] = op.Token
			}
		}
		visit(&op)
	}
}

// interner shares the few distinct strings a long history repeats millions
// of times, so that a loaded history costs its structs, not its strings.
type interner map[string]string

func newInterner() interner { return interner{} }

// limit bounds the table: keys and errors are few in practice, but a
// history is input, and an interner must not become a copy of it.
const internLimit = 1 << 16

func (in interner) s(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := in[s]; ok {
		return v
	}
	if len(in) < internLimit {
		in[s] = s
	}
	return s
}

func (in interner) op(op *Op) {
	op.Type = Type(in.s(string(op.Type)))
	op.Impl = in.s(op.Impl)
	op.F = in.s(op.F)
	op.Key = in.s(op.Key)
	op.Error = in.s(op.Error)
}

// NewCompressor returns a streaming zstd compressor writing to w, tuned for
// a run's history (fastest level, one goroutine: the run's CPU belongs to
// the system under test). Its Flush ends the pending block, so the file
// trails the run by at most one flush; Close ends the frame.
func NewCompressor(w io.Writer) (io.WriteCloser, error) {
	enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("history: zstd: %w", err)
	}
	return enc, nil
}
