package chaos

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Grammar is the fault spec grammar, for error messages and help texts.
const Grammar = "kind[:target][=params]@start[+duration], e.g. kill:redis-2@5s+3s, latency:all=200ms±50ms@10s+5s, holder-pause:2xttl@3s"

// Dur is a duration given either absolutely ("200ms") or relative to the
// lock ttl ("2xttl", "ttl", "0.5xttl").
type Dur struct {
	D    time.Duration
	TTLs float64 // when non-zero, the duration is TTLs × ttl and D is unused
}

// IsZero says whether d is the zero duration.
func (d Dur) IsZero() bool { return d.D == 0 && d.TTLs == 0 }

// Relative says whether d depends on the ttl.
func (d Dur) Relative() bool { return d.TTLs != 0 }

// Of resolves d against ttl; a product past the largest duration is the
// largest duration (CheckSchedule rejects such specs).
func (d Dur) Of(ttl time.Duration) time.Duration {
	if d.TTLs != 0 {
		f := d.TTLs * float64(ttl)
		if f >= math.MaxInt64 || math.IsNaN(f) {
			return math.MaxInt64
		}
		return time.Duration(f)
	}
	return d.D
}

// String renders d as it parses.
func (d Dur) String() string {
	if d.TTLs != 0 {
		if d.TTLs == 1 {
			return "ttl"
		}
		return strconv.FormatFloat(d.TTLs, 'g', -1, 64) + "xttl"
	}
	return d.D.String()
}

// MaxDur bounds every duration of a spec (start, length, params): larger
// ones overflow or make no sense in a run.
const MaxDur = 24 * time.Hour

// maxTTLs bounds a ttl multiple (1000xttl is over 16 minutes at a 1s ttl).
const maxTTLs = 1e6

// ParseDur parses "250ms", "3s", "2xttl", "ttl" or "0.5xttl". It rejects
// negative, NaN, infinite and overflowing values.
func ParseDur(s string) (Dur, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "ttl" {
		return Dur{TTLs: 1}, nil
	}
	if m, ok := strings.CutSuffix(t, "xttl"); ok {
		f, err := strconv.ParseFloat(m, 64)
		if err != nil || math.IsNaN(f) || f <= 0 || f > maxTTLs {
			return Dur{}, fmt.Errorf("bad ttl multiple %q: want a number above 0 and at most %g before xttl, e.g. 2xttl", s, float64(maxTTLs))
		}
		return Dur{TTLs: f}, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return Dur{}, fmt.Errorf("bad duration %q: want e.g. 250ms, 3s or 2xttl", s)
	}
	if d < 0 {
		return Dur{}, fmt.Errorf("bad duration %q: must not be negative", s)
	}
	if d > MaxDur {
		return Dur{}, fmt.Errorf("bad duration %q: at most %v", s, MaxDur)
	}
	return Dur{D: d}, nil
}

// Spec is one parsed fault spec: what, where, when, for how long.
type Spec struct {
	Kind string
	// Target as written: node names (comma separated), a group (all,
	// resource, minority, majority, redis, pg) or, for client faults, a lock
	// key. "" means the kind's default (all nodes; any key).
	Target string
	// Param as written after '=' ("" = the kind's default).
	Param string
	Start Dur
	// Duration is how long the fault lasts; zero means until the run ends
	// (client faults with a length param last that long, holder-crash is
	// instantaneous).
	Duration Dur
}

// What renders the spec without its timing: kind[:target][=param]. It is
// the Fault of history events and fault windows.
func (s Spec) What() string {
	var b strings.Builder
	b.WriteString(s.Kind)
	if s.Target != "" {
		b.WriteString(":" + s.Target)
	}
	if s.Param != "" {
		b.WriteString("=" + s.Param)
	}
	return b.String()
}

// String renders the spec in canonical form; Parse(s.String()) == s.
func (s Spec) String() string {
	out := s.What() + "@" + s.Start.String()
	if !s.Duration.IsZero() {
		out += "+" + s.Duration.String()
	}
	return out
}

// Parse parses one fault spec (see Grammar). Errors name the bad part and
// list what is valid.
func Parse(text string) (Spec, error) {
	s, err := parse(text)
	if err != nil {
		return Spec{}, fmt.Errorf("fault %q: %w", text, err)
	}
	return s, nil
}

func parse(text string) (Spec, error) {
	text = strings.TrimSpace(text)
	at := strings.LastIndex(text, "@")
	if at < 0 {
		return Spec{}, fmt.Errorf("missing @start (grammar: %s)", Grammar)
	}
	what, when := text[:at], text[at+1:]
	var s Spec
	kindEnd := strings.IndexAny(what, ":=")
	if kindEnd < 0 {
		kindEnd = len(what)
	}
	s.Kind = strings.ToLower(what[:kindEnd])
	k, err := LookupKind(s.Kind)
	if err != nil {
		return Spec{}, err
	}
	s.Kind = k.Name
	rest := what[kindEnd:]
	if t, ok := strings.CutPrefix(rest, ":"); ok {
		s.Target, s.Param, _ = strings.Cut(t, "=")
		if s.Target == "" {
			return Spec{}, fmt.Errorf("empty target after ':' (valid: node names, %s, or a lock key for client faults)", strings.Join(groups, ", "))
		}
	} else if p, ok := strings.CutPrefix(rest, "="); ok {
		s.Param = p
	}
	// holder-pause:2xttl, clock-drift:1.5 — a client fault's "target" that
	// reads as its parameter is its parameter.
	if k.paramTarget && s.Param == "" && s.Target != "" {
		if _, err := k.parseParams(s.Target); err == nil {
			s.Target, s.Param = "", s.Target
		}
	}
	if s.Target != "" {
		for _, t := range strings.Split(s.Target, ",") {
			if strings.TrimSpace(t) == "" {
				return Spec{}, fmt.Errorf("empty name in target list %q", s.Target)
			}
		}
	}
	p, err := k.parseParams(s.Param)
	if err != nil {
		return Spec{}, err
	}

	startText, durText, hasDur := strings.Cut(when, "+")
	if s.Start, err = ParseDur(startText); err != nil {
		return Spec{}, fmt.Errorf("start: %w", err)
	}
	if hasDur {
		if s.Duration, err = ParseDur(durText); err != nil {
			return Spec{}, fmt.Errorf("duration: %w", err)
		}
		if s.Duration.IsZero() {
			return Spec{}, errors.New("duration: +0 makes no window; leave +duration out to last until the run ends")
		}
	}
	if k.check != nil {
		if err := k.check(s, p); err != nil {
			return Spec{}, err
		}
	}
	return s, nil
}

// Schedule is a list of fault specs, run together by Run.
type Schedule []Spec

// ParseSchedule parses every spec; the error names each bad one.
func ParseSchedule(texts []string) (Schedule, error) {
	var out Schedule
	var errs []error
	for _, t := range texts {
		s, err := Parse(t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

// Strings renders every spec in canonical form (for results.json config).
func (sc Schedule) Strings() []string {
	out := make([]string, len(sc))
	for i, s := range sc {
		out[i] = s.String()
	}
	return out
}

// CheckSchedule checks, before anything starts, that every spec of s fits
// a phase of length phase with lock ttl ttl: it starts before the phase
// ends (a later one would never fire) and, when it has a length, ends by
// the phase's end (it would be cut short). The error names every bad spec.
func CheckSchedule(s Schedule, phase, ttl time.Duration) error {
	var errs []error
	for _, spec := range s {
		if err := checkSpec(spec, phase, ttl); err != nil {
			errs = append(errs, fmt.Errorf("fault %q: %w", spec.String(), err))
		}
	}
	return errors.Join(errs...)
}

func checkSpec(s Spec, phase, ttl time.Duration) error {
	k, err := LookupKind(s.Kind)
	if err != nil {
		return err
	}
	p, err := k.parseParams(s.Param)
	if err != nil {
		return err
	}
	if (s.Start.Relative() || s.Duration.Relative() || p.d.Relative() || p.jitter.Relative()) && ttl <= 0 {
		return errNoTTL
	}
	// In float seconds: a ttl multiple may overflow a Duration.
	secs := func(d Dur) float64 {
		if d.Relative() {
			return d.TTLs * ttl.Seconds()
		}
		return d.D.Seconds()
	}
	start, length := secs(s.Start), k.lengthOf(s, p, ttl).Seconds()
	for _, d := range []Dur{s.Start, s.Duration, p.d, p.jitter} {
		if secs(d) > MaxDur.Seconds() {
			return fmt.Errorf("%v is longer than %v", d.Of(ttl), MaxDur)
		}
	}
	switch {
	case start >= phase.Seconds():
		return fmt.Errorf("starts at %v, when the %v phase is over: it would never fire (times count from each implementation's phase start)", s.Start.Of(ttl), phase)
	case start+length > phase.Seconds():
		return fmt.Errorf("lasts until %v, past the end of the %v phase: shorten it, or leave +duration out to last until the phase ends",
			time.Duration((start+length)*float64(time.Second)).Round(time.Millisecond), phase)
	}
	return nil
}
