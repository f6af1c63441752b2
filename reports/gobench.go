package reports

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/faultline-dev/faultline/bench/results"
)

// WriteGoBench writes r as Go benchmark lines that benchstat reads, one per
// implementation and operation kind:
//
//	BenchmarkFaultline/impl=redis-setnx/op=cycle-2  5000  123456 ns/op  8123 ops/s  98000 p50-ns  456789 p99-ns ...
//
// ns/op is the mean latency of ok operations and the iteration count is the
// number of completed operations. The "-N" suffix is config "gomaxprocs"
// when the run recorded it. Configuration lines (key: value) before the
// benchmarks label the run for benchstat. A calibrated run adds its machine
// reference first: BenchmarkCalibration/go-ping and
// BenchmarkCalibration/redis-benchmark-ping (sequential PINGs, one client).
func WriteGoBench(w io.Writer, r *results.Results) error {
	bw := bufio.NewWriter(w)
	label := func(k, v string) {
		v = strings.Join(strings.Fields(v), " ")
		if v != "" {
			fmt.Fprintf(bw, "%s: %s\n", k, v)
		}
	}
	label("faultline-run", r.RunID)
	label("workload", r.Workload)
	label("provider", r.Provider)
	label("path", r.Path)
	for _, k := range sortedKeys(r.Versions) {
		label(benchKey(k)+"-version", r.Versions[k])
	}
	suffix := ""
	if v, ok := r.Config["gomaxprocs"]; ok {
		suffix = fmt.Sprintf("-%v", v)
	}
	if c := r.Calibration; c != nil {
		// The machine reference of this run, so that benchstat comparisons
		// across machines or days carry it along.
		if c.GoPingP50us > 0 {
			fmt.Fprintf(bw, "BenchmarkCalibration/go-ping%s\t%d\t%.0f ns/op\t%.1f ops/s\t%.0f p50-ns\t%.0f p99-ns\n",
				suffix, c.Requests, c.GoPingMeanUs*1000, c.GoPingRPS, c.GoPingP50us*1000, c.GoPingP99us*1000)
		}
		if c.RedisBenchmarkP50us > 0 || c.RedisBenchmarkRPS > 0 {
			fmt.Fprintf(bw, "BenchmarkCalibration/redis-benchmark-ping%s\t%d\t%.0f ns/op\t%.1f ops/s\t%.0f p50-ns\t%.0f p99-ns\n",
				suffix, c.Requests, c.RedisBenchmarkMeanUs*1000, c.RedisBenchmarkRPS, c.RedisBenchmarkP50us*1000, c.RedisBenchmarkP99us*1000)
		}
	}
	for _, ir := range r.Impls {
		for _, op := range sortedKeys(ir.Ops) {
			st := ir.Ops[op]
			if st.Count == 0 {
				continue
			}
			fmt.Fprintf(bw, "BenchmarkFaultline/impl=%s/op=%s%s\t%d\t%.0f ns/op\t%.1f ops/s\t%.0f p50-ns\t%.0f p90-ns\t%.0f p99-ns\t%.0f p999-ns\t%.0f max-ns\t%d errors\n",
				benchKey(ir.Name), benchKey(op), suffix, st.Count,
				st.Mean*1000, st.Throughput, st.P50*1000, st.P90*1000, st.P99*1000, st.P999*1000, st.Max*1000, st.Count-st.OK)
		}
	}
	return bw.Flush()
}

// benchKey makes s safe inside a benchmark name or config key: no spaces,
// no slashes or '=' that benchstat would split on.
func benchKey(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '/', '=', ':':
			return '_'
		}
		return r
	}, s)
}
