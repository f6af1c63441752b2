package gate

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/faultline-dev/faultline/bench/results"
)

// Stat is a gated statistic of one operation kind.
type Stat string

// Stats the gate knows. Latency stats are worse when higher, throughput is
// worse when lower.
const (
	P50        Stat = "p50"
	P90        Stat = "p90"
	P99        Stat = "p99"
	P999       Stat = "p999"
	Max        Stat = "max"
	Mean       Stat = "mean"
	Throughput Stat = "throughput"
)

var statAliases = map[string]Stat{
	"p50": P50, "median": P50, "p90": P90, "p99": P99, "p999": P999, "p99.9": P999,
	"max": Max, "mean": Mean, "throughput": Throughput, "tput": Throughput, "ops": Throughput,
}

// IsLatency reports whether s is a latency (higher is worse).
func (s Stat) IsLatency() bool { return s != Throughput }

// Of returns the stat's value in st: microseconds for latencies, ok
// operations per second for throughput.
func (s Stat) Of(st results.OpStats) float64 {
	switch s {
	case P50:
		return st.P50
	case P90:
		return st.P90
	case P99:
		return st.P99
	case P999:
		return st.P999
	case Max:
		return st.Max
	case Mean:
		return st.Mean
	case Throughput:
		return st.Throughput
	}
	return math.NaN()
}

// Format prints a value of s with its unit.
func (s Stat) Format(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	if s == Throughput {
		return fmt.Sprintf("%.0f ops/s", v)
	}
	return FormatMicros(v)
}

// Normalise makes a raw value of s machine-independent with unit, the
// run's Go PING p50 in µs: a latency becomes a multiple of the PING time,
// a throughput the operations done per PING-time (ops/s × unit µs / 1e6).
// Both scale away a machine that is uniformly faster or slower.
func (s Stat) Normalise(v, unit float64) float64 {
	if unit <= 0 || math.IsNaN(v) {
		return math.NaN()
	}
	if s == Throughput {
		return v * unit / 1e6
	}
	return v / unit
}

// FormatNorm prints a normalised value of s: "12.3×ping" for a latency,
// "0.0521/ping" for a throughput.
func (s Stat) FormatNorm(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	if s == Throughput {
		return strconv.FormatFloat(v, 'g', 3, 64) + "/ping"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + "×ping"
}

// Direction says how a change of s reads in words.
func (s Stat) Direction(change float64) string {
	switch {
	case s == Throughput && change < 0:
		return "dropped"
	case change > 0:
		return "rose"
	}
	return "fell"
}

// FormatMicros prints a latency given in microseconds with a readable unit.
func FormatMicros(us float64) string {
	switch a := math.Abs(us); {
	case math.IsNaN(us):
		return "-"
	case a >= 1e6:
		return strconv.FormatFloat(us/1e6, 'f', 2, 64) + "s"
	case a >= 1e4:
		return strconv.FormatFloat(us/1e3, 'f', 1, 64) + "ms"
	case a >= 1e3:
		return strconv.FormatFloat(us/1e3, 'f', 2, 64) + "ms"
	case a >= 100:
		return strconv.FormatFloat(us, 'f', 0, 64) + "µs"
	}
	return strconv.FormatFloat(us, 'f', 1, 64) + "µs"
}

// Limit bounds the relative change of one stat. Change is a signed fraction
// in the stat's worse direction: +0.25 lets a latency grow by 25%, -0.15
// lets throughput drop by 15%.
type Limit struct {
	Stat   Stat
	Change float64
}

// Allows reports whether a relative change (now-base)/base is within l.
func (l Limit) Allows(change float64) bool {
	if l.Stat.IsLatency() {
		return change <= l.Change+1e-12
	}
	return change >= l.Change-1e-12
}

func (l Limit) String() string {
	if l.Stat.IsLatency() {
		return "≤ " + fmtPct(l.Change)
	}
	return "≥ " + fmtPct(l.Change)
}

// Tolerance is the set of gated stats and their limits, in flag order.
type Tolerance []Limit

// DefaultTolerance is "p99=+25%,throughput=-15%".
func DefaultTolerance() Tolerance {
	return Tolerance{{Stat: P99, Change: 0.25}, {Stat: Throughput, Change: -0.15}}
}

// String prints t in the syntax ParseTolerance reads.
func (t Tolerance) String() string {
	parts := make([]string, len(t))
	for i, l := range t {
		parts[i] = fmt.Sprintf("%s=%s", l.Stat, fmtPct(l.Change))
	}
	return strings.Join(parts, ",")
}

// ParseTolerance reads "p99=+25%,throughput=-15%". A latency limit must be
// positive (how much it may grow) and a throughput limit negative (how much
// it may drop); an unsigned number takes the stat's worse direction. The
// percent sign is required. An empty string gives DefaultTolerance.
func ParseTolerance(s string) (Tolerance, error) {
	if strings.TrimSpace(s) == "" {
		return DefaultTolerance(), nil
	}
	var t Tolerance
	seen := map[Stat]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		name, val, ok := strings.Cut(part, "=")
		if !ok || part == "" {
			return nil, fmt.Errorf("tolerance %q: entry %q is not stat=±N%% (e.g. p99=+25%%)", s, part)
		}
		st, ok := statAliases[strings.ToLower(strings.TrimSpace(name))]
		if !ok {
			return nil, fmt.Errorf("tolerance %q: unknown stat %q (known: p50, p90, p99, p999, max, mean, throughput)", s, name)
		}
		if seen[st] {
			return nil, fmt.Errorf("tolerance %q: stat %s given twice", s, st)
		}
		seen[st] = true
		val = strings.TrimSpace(val)
		num, ok := strings.CutSuffix(val, "%")
		if !ok {
			return nil, fmt.Errorf("tolerance %q: %s limit %q needs a percent sign (e.g. %s=%s)", s, st, val, st, map[bool]string{true: "+25%", false: "-15%"}[st.IsLatency()])
		}
		signed := strings.HasPrefix(num, "+") || strings.HasPrefix(num, "-")
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("tolerance %q: %s limit %q is not a number", s, st, val)
		}
		f /= 100
		switch {
		case !signed && st.IsLatency():
		case !signed:
			f = -f
		case st.IsLatency() && f < 0:
			return nil, fmt.Errorf("tolerance %q: %s is a latency, its limit is how much it may grow: use +%s, not %s", s, st, strings.TrimPrefix(val, "-"), val)
		case !st.IsLatency() && f > 0:
			return nil, fmt.Errorf("tolerance %q: throughput limit is how much it may drop: use -%s, not %s", s, strings.TrimPrefix(val, "+"), val)
		}
		t = append(t, Limit{Stat: st, Change: f})
	}
	return t, nil
}
