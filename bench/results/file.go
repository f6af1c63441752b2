package results

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// FileName is the name of the results file in a run directory.
const FileName = "results.json"

// SchemaError is returned by Load for a file written with another schema.
type SchemaError struct {
	Path     string
	Found    int
	Expected int
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("%s: results schema %d, this faultline reads schema %d (re-run the scenario, or use the faultline version that wrote it)",
		e.Path, e.Found, e.Expected)
}

// Load reads a results.json file (or the results.json inside a run
// directory) and checks its schema version.
func Load(path string) (*Results, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, FileName)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	var probe struct {
		Schema *int `json:"schema"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("results: %s is not a results file: %w", path, err)
	}
	if probe.Schema == nil {
		return nil, fmt.Errorf("results: %s has no \"schema\" field: not a faultline results file", path)
	}
	if *probe.Schema != Schema {
		return nil, &SchemaError{Path: path, Found: *probe.Schema, Expected: Schema}
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("results: %s: %w", path, err)
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
