package chaos

import (
	"errors"
	"fmt"
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

// Of resolves d against ttl.
func (d Dur) Of(ttl time.Duration) time.Duration {
	if d.TTLs != 0 {
		return time.Duration(d.TTLs * float64(ttl))
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

// ParseDur parses "250ms", "3s", "2xttl", "ttl" or "0.5xttl".
func ParseDur(s string) (Dur, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "ttl" {
		return Dur{TTLs: 1}, nil
	}
	if m, ok := strings.CutSuffix(t, "xttl"); ok {
		f, err := strconv.ParseFloat(m, 64)
		if err != nil || f <= 0 {
			return Dur{}, fmt.Errorf("bad ttl multiple %q: want a positive number before xttl, e.g. 2xttl", s)
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

// params are a spec's parsed parameters.
type params struct {
	d, jitter Dur     // latency, pause/delay length, reset delay, slow-close delay
	rate      float64 // bandwidth KB/s, clock-drift rate
	stream    string  // one-way: upstream or downstream
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
	info, ok := kindInfo(s.Kind)
	if !ok {
		return Spec{}, fmt.Errorf("unknown fault kind %q (valid kinds: %s)", s.Kind, kindNames())
	}
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
	if info.Class == Client && s.Param == "" && s.Target != "" && info.Params != "" {
		if _, err := parseParams(s.Kind, s.Target); err == nil {
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
	if _, err := parseParams(s.Kind, s.Param); err != nil {
		return Spec{}, err
	}

	startText, durText, hasDur := strings.Cut(when, "+")
	var err error
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
	if s.Kind == "holder-pause" && s.Param == "" && s.Duration.IsZero() {
		return Spec{}, errors.New("holder-pause needs a pause length: holder-pause:2xttl@3s or holder-pause@3s+1s")
	}
	return s, nil
}

// parseParams parses the params of kind (p == "" gives the kind's defaults).
func parseParams(kind, p string) (params, error) {
	p = strings.TrimSpace(p)
	var out params
	bad := func(err error) (params, error) {
		info, _ := kindInfo(kind)
		return params{}, fmt.Errorf("params %q of %s: %w (valid: %s)", p, kind, err, info.Params)
	}
	switch kind {
	case "latency":
		out.d = Dur{D: 100 * time.Millisecond}
		if p == "" {
			return out, nil
		}
		base, jit, hasJit := strings.Cut(p, "±")
		if !hasJit {
			base, jit, hasJit = strings.Cut(p, "+-")
		}
		var err error
		if out.d, err = ParseDur(base); err != nil {
			return bad(err)
		}
		if hasJit {
			if out.jitter, err = ParseDur(jit); err != nil {
				return bad(err)
			}
		}
	case "one-way":
		switch strings.ToLower(p) {
		case "", "down", "downstream":
			out.stream = "downstream"
		case "up", "upstream":
			out.stream = "upstream"
		default:
			return bad(errors.New("unknown direction"))
		}
	case "bandwidth":
		out.rate = 16
		if p == "" {
			return out, nil
		}
		num := strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(p), "/s"), "kb")
		r, err := strconv.ParseInt(num, 10, 64)
		if err != nil || r <= 0 {
			return bad(errors.New("want a positive whole number of KB/s"))
		}
		out.rate = float64(r)
	case "reset-peer", "slow-close", "holder-pause", "delayed-write":
		switch kind {
		case "slow-close":
			out.d = Dur{D: time.Second}
		case "delayed-write":
			out.d = Dur{TTLs: 2}
		}
		if p == "" {
			return out, nil
		}
		var err error
		if out.d, err = ParseDur(p); err != nil {
			return bad(err)
		}
		if kind == "holder-pause" && out.d.IsZero() {
			return bad(errors.New("a pause of 0 is no pause"))
		}
	case "clock-drift":
		out.rate = 2
		if p == "" {
			return out, nil
		}
		r, err := strconv.ParseFloat(strings.TrimSuffix(strings.ToLower(p), "x"), 64)
		if err != nil || r <= 0 {
			return bad(errors.New("want a positive rate, e.g. 1.5 (clock 50% fast) or 0.5"))
		}
		out.rate = r
	default: // partition, partition-refuse, kill, pause, holder-crash
		if p != "" {
			return params{}, fmt.Errorf("%s takes no params, got %q", kind, p)
		}
	}
	return out, nil
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
