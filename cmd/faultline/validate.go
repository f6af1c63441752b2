package main

import (
	"flag"

	"github.com/faultline-dev/faultline/bench"
)

// givenFlags reports which flags of fs the user set on the command line
// (flag.FlagSet.Visit), so that an explicit zero (--duration 0) is checked
// instead of being taken for "use the default".
func givenFlags(fs *flag.FlagSet) func(name string) bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return func(name string) bool { return set[name] }
}

// checkFlags validates every numeric flag of `faultline run` right after
// parsing, before any default is filled and before anything starts: a
// value out of bench.Limits is a *bench.UsageError naming the flag and its
// valid range.
func checkFlags(cfg bench.Config, given func(string) bool) error {
	return cfg.CheckRanges(given)
}

// withDefaults fills the defaults of what the user left unset: an explicit
// --quiet (even 0) is kept, then raised to the ttl with a note when it is
// shorter (bench.Config.RaiseQuiet); an unset --checkpoint is
// bench.DefaultCheckpoint of the duration.
func withDefaults(cfg bench.Config, given func(string) bool) bench.Config {
	quiet := cfg.Quiet
	cfg = cfg.WithDefaults()
	if given("quiet") {
		cfg.Quiet = quiet
	}
	if !given("checkpoint") {
		cfg.Checkpoint = bench.DefaultCheckpoint(cfg.Duration)
	}
	return cfg.RaiseQuiet().RouteOptions()
}
