package bench

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Limit is the valid range of one numeric setting, named by its flag of
// `faultline run`. Values are float64 (durations in nanoseconds).
type Limit struct {
	Flag     string
	Duration bool    // the value is a time.Duration
	Min      float64 // lowest valid value
	// MinExclusive: the value must be greater than Min, not equal.
	MinExclusive bool
	// Max is the highest valid value (0 = no upper bound).
	Max float64
	// ZeroOff: 0 is valid too (it turns the setting off), below Min.
	ZeroOff bool
	get     func(Config) float64
}

// MaxKeys is the highest --keys. Each key is a lock name, a counter on the
// resource, and lines of the resource reset, the final dump and the
// leaked-lock probe: set-up, final checks, memory and history grow
// linearly with it. Measured with /usr/bin/time -v (redis-setnx, counter,
// 8 clients, --duration 2s, local servers, 2 cores at load average 12–14
// from other jobs): --keys 8 took 6.2 s wall and 187 MB max RSS; 1,000
// keys 10.9 s and 275 MB; 10,000 keys 16.1 s and 375 MB (history 18 MB
// against 9 MB). Ten times more keys would add ~100 s and ~1 GB outside
// the measured load for a contention level no one measures (8 clients on
// 10,000 keys almost never meet); --keys 100000000 used to reach 7 GB.
const MaxKeys = 10_000

// MaxClients is the highest --clients: one goroutine and at least one
// connection per client, on servers sharing the machine.
const MaxClients = 1024

// MinCheckpoint is the shortest --checkpoint interval: each checkpoint
// merges every worker's histograms and rewrites results.json (a few ms of
// CPU and a few hundred KB written); more often than once a second would
// cost the load for no gain (a crash already loses the history's last
// 200 ms).
const MinCheckpoint = time.Second

// DefaultCheckpoint is the --checkpoint interval when none is given: one
// minute for a phase longer than a minute (a soak), else 0 (off: a short
// run keeps only the checkpoint before each phase).
func DefaultCheckpoint(duration time.Duration) time.Duration {
	if duration > time.Minute {
		return time.Minute
	}
	return 0
}

// MinTTL is the shortest lock lease: below a millisecond a lease expires
// within one loopback round trip, and the run only measures expiry.
const MinTTL = time.Millisecond

// Limits lists every numeric setting of Config with its valid range: the
// one place CheckRanges, the CLI and the README read them from.
func Limits() []Limit {
	d := func(f func(Config) time.Duration) func(Config) float64 {
		return func(c Config) float64 { return float64(f(c)) }
	}
	return []Limit{
		{Flag: "clients", Min: 1, Max: MaxClients, get: func(c Config) float64 { return float64(c.Clients) }},
		{Flag: "share", Min: 1, Max: MaxShare, get: func(c Config) float64 { return float64(c.Share) }},
		{Flag: "keys", Min: 1, Max: MaxKeys, get: func(c Config) float64 { return float64(c.Keys) }},
		{Flag: "duration", Duration: true, MinExclusive: true, get: d(func(c Config) time.Duration { return c.Duration })},
		{Flag: "ops", Min: 0, get: func(c Config) float64 { return float64(c.Ops) }},
		{Flag: "warmup", Duration: true, get: d(func(c Config) time.Duration { return c.Warmup })},
		{Flag: "ttl", Duration: true, Min: float64(MinTTL), get: d(func(c Config) time.Duration { return c.TTL })},
		{Flag: "op-timeout", Duration: true, MinExclusive: true, get: d(func(c Config) time.Duration { return c.OpTimeout })},
		{Flag: "acquire-timeout", Duration: true, MinExclusive: true, get: d(func(c Config) time.Duration { return c.AcquireTimeout })},
		{Flag: "nemesis-interval", Duration: true, MinExclusive: true, get: d(func(c Config) time.Duration { return c.NemesisInterval })},
		{Flag: "quiet", Duration: true, get: d(func(c Config) time.Duration { return c.Quiet })},
		{Flag: "rate", get: func(c Config) float64 { return c.Rate }},
		{Flag: "checkpoint", Duration: true, Min: float64(MinCheckpoint), ZeroOff: true, get: d(func(c Config) time.Duration { return c.Checkpoint })},
	}
}

// Range is the valid range in words, e.g. "1–1024", "> 0", ">= 1ms".
func (l Limit) Range() string {
	f := l.format
	switch {
	case l.ZeroOff:
		return "0 (off) or >= " + f(l.Min)
	case l.Max > 0:
		return f(l.Min) + "–" + f(l.Max)
	case l.MinExclusive:
		return "> " + f(l.Min)
	default:
		return ">= " + f(l.Min)
	}
}

func (l Limit) format(v float64) string {
	if l.Duration && !math.IsNaN(v) && !math.IsInf(v, 0) {
		return time.Duration(v).String()
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// check says whether v is in range.
func (l Limit) check(v float64) bool {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return false
	case l.ZeroOff && v == 0:
		return true
	case l.MinExclusive && v <= l.Min, v < l.Min:
		return false
	case l.Max > 0 && v > l.Max:
		return false
	}
	return true
}

// CheckRanges checks every numeric setting against Limits, before
// WithDefaults fills the zeros. A zero value means "the default" and is
// skipped, unless given says its flag was set by the user (then zero is
// what the user asked for, and must be in range). given may be nil (no
// flag was given: library callers). The error is a *UsageError naming the
// flag and its valid range.
func (c Config) CheckRanges(given func(flag string) bool) error {
	for _, l := range Limits() {
		v := l.get(c)
		if v == 0 && (given == nil || !given(l.Flag)) {
			continue
		}
		if !l.check(v) {
			return usagef("--%s %s: out of range (valid: %s)", l.Flag, l.format(v), l.Range())
		}
	}
	return nil
}

// RaiseQuiet raises a quiet period shorter than the ttl to the ttl, with a
// note in Notes: a holder's lease may still run for a ttl after the load
// stops, and a shorter quiet period makes the leaked-lock probe report
// leases that are about to expire as leaks. Call it after WithDefaults.
func (c Config) RaiseQuiet() Config {
	if c.Quiet < c.TTL {
		c.Notes = append(c.Notes, fmt.Sprintf("--quiet %v is shorter than the ttl %v: raised to %v (a lease may outlive the load by one ttl)", c.Quiet, c.TTL, c.TTL))
		c.Quiet = c.TTL
	}
	return c
}
