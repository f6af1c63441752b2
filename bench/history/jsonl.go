package history

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// Writer appends Ops to a JSONL stream through a buffer. It is not safe for
// concurrent use: the runner feeds it from one goroutine (bench/recorder).
type Writer struct {
	buf  *bufio.Writer
	line []byte // reused encoding buffer
	next int64  // Index of the next Op
}

// NewWriter returns a Writer on w with a 256 KiB buffer. Index numbering
// starts at 0.
func NewWriter(w io.Writer) *Writer {
	buf := bufio.NewWriterSize(w, 256<<10)
	return &Writer{buf: buf, line: make([]byte, 0, 512)}
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

// Len is how many Ops were written.
func (w *Writer) Len() int64 { return w.next }

// Flush writes the buffer out.
func (w *Writer) Flush() error {
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("history: flush: %w", err)
	}
	return nil
}

// Reader reads Ops back from a JSONL stream, one per line.
type Reader struct {
	sc   *bufio.Scanner
	line int
}

// NewReader returns a Reader on r. Lines may be up to 16 MiB long.
func NewReader(r io.Reader) *Reader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	return &Reader{sc: sc}
}

// Next returns the next Op, or io.EOF after the last one. Blank lines are
// skipped; a malformed line is an error naming its line number.
func (r *Reader) Next() (Op, error) {
	for r.sc.Scan() {
		r.line++
		b := r.sc.Bytes()
		if len(b) == 0 {
			continue
		}
		var op Op
		if err := json.Unmarshal(b, &op); err != nil {
			return Op{}, fmt.Errorf("history: line %d: %w", r.line, err)
		}
		return op, nil
	}
	if err := r.sc.Err(); err != nil {
		return Op{}, fmt.Errorf("history: line %d: %w", r.line+1, err)
	}
	return Op{}, io.EOF
}

// ReadAll reads every Op of r.
func ReadAll(r io.Reader) ([]Op, error) {
	rd := NewReader(r)
	var ops []Op
	for {
		op, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return ops, nil
		}
		if err != nil {
			return ops, err
		}
		ops = append(ops, op)
	}
}

// Load reads a history.jsonl file.
func Load(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	ops, err := ReadAll(f)
	if err != nil {
		return ops, fmt.Errorf("%s: %w", path, err)
	}
	return ops, nil
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
