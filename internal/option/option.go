// Package option declares the settings a workload or an implementation
// accepts (name, kind, range, default, one line of doc) and checks
// key=value pairs against them, so that a bad --opt, --txn-opt or
// --lock-opt is a usage error listing the valid options before any server
// starts. Every layer may import it.
package option

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind is the type of an option's value.
type Kind string

// Kinds of option values.
const (
	Bool     Kind = "bool"     // true or false
	Int      Kind = "int"      // a whole number in [Min, Max]
	Float    Kind = "float"    // a number in [Min, Max]
	Duration Kind = "duration" // a Go duration in [Min, Max] nanoseconds
	Choice   Kind = "choice"   // one of Choices
	Text     Kind = "text"     // any non-empty string
)

// Spec declares one option.
type Spec struct {
	Name string
	Kind Kind
	Doc  string
	// Default is the value when the option is not given ("" = none, or a
	// default that depends on the run, which Doc states).
	Default string
	// Min and Max bound Int, Float and Duration values (Max 0: no upper
	// bound).
	Min, Max float64
	// Choices are the valid values of a Choice.
	Choices []string
}

// Check parses v as the option's value; the error says what is wanted.
func (s Spec) Check(v string) error {
	v = strings.TrimSpace(v)
	var x float64
	switch s.Kind {
	case Bool:
		if _, err := strconv.ParseBool(v); err != nil {
			return errors.New("want true or false")
		}
		return nil
	case Int:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number %s", s.rangeText())
		}
		x = float64(n)
	case Float:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("want a number %s", s.rangeText())
		}
		x = f
	case Duration:
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("want a duration such as 500ms %s", s.rangeText())
		}
		x = float64(d)
	case Choice:
		for _, c := range s.Choices {
			if v == c {
				return nil
			}
		}
		return fmt.Errorf("want one of %s", strings.Join(s.Choices, ", "))
	default:
		if v == "" {
			return errors.New("want a value")
		}
		return nil
	}
	if x < s.Min || (s.Max != 0 && x > s.Max) {
		return fmt.Errorf("out of range: want %s", s.rangeText())
	}
	return nil
}

func (s Spec) rangeText() string {
	f := func(x float64) string {
		if s.Kind == Duration {
			return time.Duration(x).String()
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	if s.Max != 0 {
		return fmt.Sprintf("in [%s, %s]", f(s.Min), f(s.Max))
	}
	return "≥ " + f(s.Min)
}

// Usage is one line: name=<kind> (default …): doc.
func (s Spec) Usage() string {
	kind := string(s.Kind)
	switch s.Kind {
	case Choice:
		kind = strings.Join(s.Choices, "|")
	case Int, Float, Duration:
		kind += " " + s.rangeText()
	}
	u := fmt.Sprintf("%s=<%s>", s.Name, kind)
	if s.Default != "" {
		u += " (default " + s.Default + ")"
	}
	return u + ": " + s.Doc
}

// Set is the options one workload or implementation accepts.
type Set []Spec

// Lookup returns the option called name.
func (set Set) Lookup(name string) (Spec, bool) {
	for _, s := range set {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

// Names are the options' names, sorted.
func (set Set) Names() []string {
	out := make([]string, 0, len(set))
	for _, s := range set {
		out = append(out, s.Name)
	}
	sort.Strings(out)
	return out
}

// Check checks every key=value of kv against set (who names the owner in
// the errors, e.g. "workload bank" or "txn 2pc"): an unknown key or a bad
// value is an error that lists the valid options.
func (set Set) Check(who string, kv map[string]string) error {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		s, ok := set.Lookup(k)
		if !ok {
			valid := "none"
			if len(set) > 0 {
				valid = strings.Join(set.Names(), ", ")
			}
			errs = append(errs, fmt.Errorf("%s has no option %q (valid: %s)", who, k, valid))
			continue
		}
		if err := s.Check(kv[k]); err != nil {
			errs = append(errs, fmt.Errorf("%s option %s=%q: %w", who, k, kv[k], err))
		}
	}
	return errors.Join(errs...)
}
