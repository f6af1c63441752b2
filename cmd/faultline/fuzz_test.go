package main

import (
	"io"
	"strings"
	"testing"
)

// FuzzParseRun: whatever the arguments, the flag parser of `faultline run`
// never panics, stops with 0 (--help) or 2 (usage error) when it refuses,
// and what it accepts is a configuration Validate accepts, every number in
// range, the quiet period at least the ttl. It starts nothing.
// The seed corpus (testdata/fuzz/FuzzParseRun and the f.Add lines) runs
// in every `go test`; explore with go test -fuzz FuzzParseRun ./cmd/faultline.
func FuzzParseRun(f *testing.F) {
	for _, s := range []string{
		"--impl redis-setnx",
		"--impl redis-setnx,redis-fenced --workload counter --clients 8 --duration 5s",
		"--impl redis-setnx --duration -1s",
		"--impl redis-setnx --duration 0",
		"--impl redis-setnx --ttl 1ns",
		"--impl redis-setnx --keys 100000000",
		"--impl redis-setnx --quiet 100ms --ttl 1s",
		"--impl redis-setnx --nemesis kill,partition --nemesis-interval 1s",
		"--impl redis-setnx --lock-opt foo",
		"--impl redis-setnx --lock-opt reentrant=true --rate NaN",
		"--impl redis-setnx --fault holder-pause:k0=2xttl@0.4s --warmup 1h",
		"--help",
		"--impl 2pc --workload bank --seed -9223372036854775808",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, " ")
		rf, code, ok := parseRun(args, io.Discard)
		if !ok {
			if code != exitOK && code != exitUsage {
				t.Fatalf("refused %q with exit %d (want 0 or 2)", args, code)
			}
			return
		}
		cfg := rf.cfg
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted %q, but Validate says: %v", args, err)
		}
		if err := cfg.CheckRanges(nil); err != nil {
			t.Fatalf("accepted %q out of range: %v", args, err)
		}
		if cfg.Quiet < cfg.TTL || cfg.Duration <= 0 || cfg.Clients < 1 || cfg.Keys < 1 {
			t.Fatalf("accepted %q as %+v", args, cfg)
		}
	})
}
