package results

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// FileName is the name of the results file in a run directory.
const FileName = "results.json"

// MaxFileSize bounds what Decode reads: a results.json of a long run with
// many implementations is a few megabytes; anything past this is not one.
const MaxFileSize = 256 << 20

// ReadError is every failure to read a results.json: the file is missing
// or unreadable, is not JSON, is not a faultline results file, was written
// with another schema, or holds a field of the wrong type. Callers (the
// report, the gate) treat it as bad input (exit 2).
type ReadError struct {
	// Path is the file read ("" when Decode read a stream without a name).
	Path string
	// What says what was wrong, in plain words.
	What string
	// Found and Expected are the schema versions when the file was written
	// with another schema (both 0 otherwise).
	Found, Expected int
	// Err is the underlying error, if any (os.ErrNotExist, a JSON error).
	Err error
}

func (e *ReadError) Error() string {
	msg := "results: " + e.What
	if e.Path != "" {
		msg = "results: " + e.Path + ": " + e.What
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ReadError) Unwrap() error { return e.Err }

// Load reads a results.json file (or the results.json inside a run
// directory) and checks its schema version. Every error is a *ReadError
// naming the file.
func Load(path string) (*Results, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, FileName)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, &ReadError{Path: path, What: "cannot read it (pass the results.json of a saved run, e.g. reports/runs/<run-id>/results.json)", Err: err}
	}
	defer f.Close()
	r, err := Decode(f)
	var re *ReadError
	if errors.As(err, &re) {
		re.Path = path
	}
	return r, err
}

// Decode reads one results.json from rd and checks its schema version.
// Every error is a *ReadError (with an empty Path).
func Decode(rd io.Reader) (*Results, error) {
	b, err := io.ReadAll(io.LimitReader(rd, MaxFileSize+1))
	if err != nil {
		return nil, &ReadError{What: "cannot read it", Err: err}
	}
	if len(b) > MaxFileSize {
		return nil, &ReadError{What: fmt.Sprintf("larger than %d MiB: not a results file", MaxFileSize>>20)}
	}
	var probe struct {
		Schema *int `json:"schema"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, &ReadError{What: "not a results file (invalid JSON)", Err: err}
	}
	if probe.Schema == nil {
		return nil, &ReadError{What: fmt.Sprintf("has no \"schema\" field, expected schema %d: not a faultline results file", Schema)}
	}
	if *probe.Schema != Schema {
		return nil, &ReadError{Found: *probe.Schema, Expected: Schema,
			What: fmt.Sprintf("results schema %d, expected schema %d (re-run the scenario with this version, refresh a baseline with `make baseline`, or use the faultline version that wrote it)", *probe.Schema, Schema)}
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, &ReadError{What: fmt.Sprintf("does not match results schema %d", Schema), Err: err}
	}
	return &r, nil
}

// Save writes r to path (a file, or a directory that gets results.json)
// atomically: a temporary file renamed into place. It sets r.Schema.
func Save(path string, r *Results) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, FileName)
	}
	r.Schema = Schema
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("results: encode: %w", err)
	}
	b = compactNumberArrays(b)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".results-*.json")
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("results: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("results: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("results: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

// Impl returns the result of the named implementation, or nil.
func (r *Results) Impl(name string) *ImplResult {
	for i := range r.Impls {
		if r.Impls[i].Name == name {
			return &r.Impls[i]
		}
	}
	return nil
}

// Violations counts the violations the checkers found (Verdict.Found, not
// the stored counterexamples) in invalid verdicts on impl ("" = all); an
// invalid verdict that found none counts as one.
func (r *Results) Violations(impl string) int {
	n := 0
	for _, v := range r.Verdicts {
		if v.Valid != Invalid || (impl != "" && v.Impl != impl) {
			continue
		}
		n += max(1, v.Found())
	}
	return n
}

// compactNumberArrays puts every array of plain numbers on one line
// (histogram counts would otherwise take a line per bucket). Text inside
// JSON strings is left alone.
func compactNumberArrays(b []byte) []byte {
	out := make([]byte, 0, len(b))
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			out = append(out, c)
			if c == '\\' && i+1 < len(b) {
				i++
				out = append(out, b[i])
			} else if c == '"' {
				inString = false
			}
			continue
		case c == '"':
			inString = true
		case c == '[':
			if j := numberArrayEnd(b, i); j > 0 {
				out = append(out, '[')
				for _, f := range bytes.Fields(b[i+1 : j]) {
					out = append(out, f...)
				}
				out = append(out, ']')
				i = j
				continue
			}
		}
		out = append(out, c)
	}
	return out
}

// numberArrayEnd returns the index of the ']' closing the array opened at
// b[i] if it holds only numbers, else 0.
func numberArrayEnd(b []byte, i int) int {
	numbers := false
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == ']':
			if numbers {
				return j
			}
			return 0
		case c >= '0' && c <= '9':
			numbers = true
		case c == ',' || c == '-' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == ' ' || c == '\n':
		default:
			return 0
		}
	}
	return 0
}
