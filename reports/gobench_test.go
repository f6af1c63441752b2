package reports

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/bench/results"
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

func TestWriteGoBenchCalibration(t *testing.T) {
	res, _ := buildFixture(lockFixture())
	r := *res
	r.Config = map[string]any{"gomaxprocs": 2}
	r.Calibration = &results.Calibration{Node: "redis-1", Path: "direct", Requests: 3000,
		RedisBenchmarkRPS: 21000, RedisBenchmarkP50us: 31, RedisBenchmarkP99us: 150, RedisBenchmarkMeanUs: 40,
		GoPingRPS: 15000, GoPingP50us: 55, GoPingP99us: 230, GoPingMeanUs: 66.5}
	var buf bytes.Buffer
	if err := WriteGoBench(&buf, &r); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"BenchmarkCalibration/go-ping-2\t3000\t66500 ns/op\t15000.0 ops/s\t55000 p50-ns\t230000 p99-ns\n",
		"BenchmarkCalibration/redis-benchmark-ping-2\t3000\t40000 ns/op\t21000.0 ops/s\t31000 p50-ns\t150000 p99-ns\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("gobench output lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "Benchmark") && !benchLine.MatchString(line) {
			t.Errorf("not a Go benchmark line: %q", line)
		}
	}
	// Without redis-benchmark: only the Go line.
	r.Calibration = &results.Calibration{Requests: 3000, GoPingRPS: 15000, GoPingP50us: 55, GoPingP99us: 230, GoPingMeanUs: 66.5, Note: "redis-benchmark not run"}
	buf.Reset()
	_ = WriteGoBench(&buf, &r)
	if !strings.Contains(buf.String(), "BenchmarkCalibration/go-ping-2") || strings.Contains(buf.String(), "redis-benchmark-ping") {
		t.Errorf("want only the go-ping calibration line:\n%s", buf.String())
	}
}
