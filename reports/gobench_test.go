package reports

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// benchLine is the Go benchmark line format benchstat reads: name with an
// optional -procs suffix, iterations, then value-unit pairs.
var benchLine = regexp.MustCompile(`^Benchmark[^\s]+\t+\d+(\t+[-+0-9.eE]+ [^\s]+)+$`)

func TestWriteGoBench(t *testing.T) {
	res, _ := buildFixture(lockFixture())
	r := *res
	r.Config = map[string]any{"gomaxprocs": 2}
	var buf bytes.Buffer
	if err := WriteGoBench(&buf, &r); err != nil {
		t.Fatal(err)
	}
	var benches int
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if strings.HasPrefix(line, "Benchmark") {
			benches++
			if !benchLine.MatchString(line) {
				t.Errorf("not a Go benchmark line: %q", line)
			}
			for _, unit := range []string{" ns/op", " ops/s", " p99-ns"} {
				if !strings.Contains(line, unit) {
					t.Errorf("line lacks %q: %q", unit, line)
				}
			}
			continue
		}
		if k, v, ok := strings.Cut(line, ": "); !ok || strings.ContainsAny(k, " \t") || v == "" {
			t.Errorf("not a benchstat config line: %q", line)
		}
	}
	if benches != 15 {
		t.Errorf("%d benchmark lines, want 15 (3 impls × 5 op kinds)", benches)
	}
	if !strings.Contains(buf.String(), "BenchmarkFaultline/impl=redis-setnx/op=cycle-2\t") {
		t.Errorf("missing the redis-setnx cycle line with -2 suffix:\n%s", buf.String())
	}
}
