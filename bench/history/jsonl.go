package history

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Writer appends Ops to a JSONL stream through a buffer. It is not safe for
// concurrent use: the runner feeds it from one goroutine (bench/recorder).
type Writer struct {
	buf   *bufio.Writer
	under io.Writer
	line  []byte // reused encoding buffer
	next  int64  // Index of the next Op
	// dec is next in decimal when decFor == next: WriteTails counts in it
	// (one digit changed per entry, mostly) rather than formatting every
	// index anew.
	dec    []byte
	decFor int64
}

// NewWriter returns a Writer on w with a 256 KiB buffer. Index numbering
// starts at 0.
func NewWriter(w io.Writer) *Writer {
	buf := bufio.NewWriterSize(w, 256<<10)
	return &Writer{buf: buf, under: w, line: make([]byte, 0, 512)}
}

// Write assigns op its Index (its position in the history) and appends it.
// It returns the Index given.
func (w *Writer) Write(op Op) (int64, error) {
	op.Index = w.next
	w.line = AppendJSON(w.line[:0], &op)
	w.line = append(w.line, '\n')
	if _, err := w.buf.Write(w.line); err != nil {
		return 0, fmt.Errorf("history: write op %d: %w", op.Index, err)
	}
	w.next++
	return op.Index, nil
}

// WriteTails appends entries encoded by AppendJSONTail, each followed by
// '\n' (tails holds any number of them, in order: what the recorder's
// workers encoded), giving them the next Indexes; it returns how many it
// wrote. An encoded entry holds no '\n' (AppendJSONTail escapes it in
// strings); a last entry without one is ended.
func (w *Writer) WriteTails(tails []byte) (int, error) {
	n := 0
	for len(tails) > 0 {
		line := tails
		if i := bytes.IndexByte(tails, '\n'); i >= 0 {
			line = tails[:i+1]
		}
		tails = tails[len(line):]
		nl := line[len(line)-1] != '\n' // the last entry's end, missing
		// `{"index":N` then the tail, composed in the buffer's free space
		// (one copy of the entry, not two), unless it does not fit even
		// in an empty buffer.
		room := len(line) + maxIndexLen + 1
		if w.buf.Available() < room {
			if err := w.buf.Flush(); err != nil {
				return n, fmt.Errorf("history: write op %d: %w", w.next, err)
			}
		}
		if w.decFor != w.next || len(w.dec) == 0 {
			w.dec, w.decFor = strconv.AppendInt(w.dec[:0], w.next, 10), w.next
		}
		var err error
		if w.buf.Available() >= room {
			b := append(append(append(w.buf.AvailableBuffer(), `{"index":`...), w.dec...), line...)
			if nl {
				b = append(b, '\n')
			}
			_, err = w.buf.Write(b)
		} else {
			w.line = AppendIndex(w.line[:0], w.next)
			if _, err = w.buf.Write(w.line); err == nil {
				_, err = w.buf.Write(line)
			}
			if err == nil && nl {
				err = w.buf.WriteByte('\n')
			}
		}
		if err != nil {
			return n, fmt.Errorf("history: write op %d: %w", w.next, err)
		}
		w.next++
		w.dec, w.decFor = incDecimal(w.dec), w.decFor+1
		n++
	}
	return n, nil
}

// incDecimal adds one to the non-negative decimal number d, in place
// unless it gains a digit.
func incDecimal(d []byte) []byte {
	for i := len(d) - 1; i >= 0; i-- {
		if d[i] < '9' {
			d[i]++
			return d
		}
		d[i] = '0'
	}
	return append([]byte{'1'}, d...)
}

// maxIndexLen is the longest `{"index":N` (N an int64).
const maxIndexLen = len(`{"index":-9223372036854775808`)

// Len is how many Ops were written.
func (w *Writer) Len() int64 { return w.next }

// Flush writes the buffer out, and flushes the writer under it when it
// has a Flush method (a compressor: its pending block reaches the file).
func (w *Writer) Flush() error {
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("history: flush: %w", err)
	}
	if f, ok := w.under.(interface{ Flush() error }); ok {
		if err := f.Flush(); err != nil {
			return fmt.Errorf("history: flush: %w", err)
		}
	}
	return nil
}

// MaxLine is the longest history line every reader accepts (the checkers,
// the report): 16 MiB. The writer never comes close; a longer line means a
// corrupt file.
const MaxLine = 16 << 20

// LineError is a history line that could not be read: malformed JSON, a
// line longer than MaxLine, or a read error. It names the file (when known)
// and the line, from 1.
type LineError struct {
	Path string // "" when the reader was not given one
	Line int
	Err  error
}

func (e *LineError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("history: line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("history: %s line %d: %v", e.Path, e.Line, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// Reader reads a JSONL history, one entry per line. It is the one history
// reader: the checkers use Next, the report uses Line to decode only what it
// needs. Errors are *LineError.
type Reader struct {
	sc   *bufio.Scanner
	path string
	line int
	// cut, when set, says the stream under the reader was cut short (a
	// compressed history whose writer died): its unfinished last line is
	// dropped rather than an error.
	cut func() bool
	op  Op // decode's target, reused
}

// NewReader returns a Reader on r. Lines may be up to MaxLine long.
func NewReader(r io.Reader) *Reader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	rd := &Reader{sc: sc}
	sc.Split(rd.split)
	return rd
}

// split is bufio.ScanLines, except that the unfinished last line of a cut
// stream is dropped.
func (r *Reader) split(data []byte, atEOF bool) (int, []byte, error) {
	if atEOF && len(data) > 0 && r.cut != nil && r.cut() && bytes.IndexByte(data, '\n') < 0 {
		return len(data), nil, nil
	}
	return bufio.ScanLines(data, atEOF)
}

// Named sets the file name its errors give, and returns r.
func (r *Reader) Named(path string) *Reader {
	r.path = path
	return r
}

// Line returns the next non-blank line, without its surrounding white
// space, or io.EOF after the last one. The bytes are valid until the next
// call.
func (r *Reader) Line() ([]byte, error) {
	for r.sc.Scan() {
		r.line++
		if b := bytes.TrimSpace(r.sc.Bytes()); len(b) > 0 {
			return b, nil
		}
	}
	if err := r.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line longer than %d MiB: %w", MaxLine>>20, err)
		}
		return nil, r.Errorf(r.line+1, err)
	}
	return nil, io.EOF
}

// LineNumber is the number (from 1) of the line Line or Next returned last.
func (r *Reader) LineNumber() int { return r.line }

// Errorf wraps err as a *LineError of line n of r's file.
func (r *Reader) Errorf(n int, err error) error {
	return &LineError{Path: r.path, Line: n, Err: err}
}

// Next returns the next Op, or io.EOF after the last one. Blank lines are
// skipped; a malformed line is a *LineError naming its line number.
func (r *Reader) Next() (Op, error) {
	b, err := r.Line()
	if err != nil {
		return Op{}, err
	}
	return r.decode(b)
}

// decode decodes line b, the one Line returned last.
func (r *Reader) decode(b []byte) (Op, error) {
	// Into the reader's own Op: one escaping to the heap per line (what
	// json.Unmarshal's pointer costs) would be 184 bytes of garbage per
	// entry, millions in a long run.
	r.op = Op{}
	if err := json.Unmarshal(b, &r.op); err != nil {
		return Op{}, r.Errorf(r.line, err)
	}
	return r.op, nil
}

// All reads every remaining Op; on an error it returns those read before.
func (r *Reader) All() ([]Op, error) {
	var ops []Op
	for {
		op, err := r.Next()
		if errors.Is(err, io.EOF) {
			return ops, nil
		}
		if err != nil {
			return ops, err
		}
		ops = append(ops, op)
	}
}

// ReadAll reads every Op of r, plain JSONL or zstd-compressed.
func ReadAll(r io.Reader) ([]Op, error) {
	rd, done, err := Decompress(r)
	if err != nil {
		return nil, &LineError{Line: 1, Err: err}
	}
	defer done()
	return NewReader(rd).All()
}

// ForImpl returns the Ops of one implementation's phase: its own entries
// and the nemesis and resource entries recorded for it (Impl == name), in
// history order.
func ForImpl(ops []Op, impl string) []Op {
	var out []Op
	for _, op := range ops {
		if op.Impl == impl {
			out = append(out, op)
		}
	}
	return out
}
