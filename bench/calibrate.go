package bench

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/infra"
)

// Calibration bounds. A run calibrates at several points (before each
// implementation's phase and after the last) and pools them: one sample of
// a few thousand PINGs lasts ~0.1 s and its p50 swings ±20% on a busy
// 2-core machine (measured 31–46 µs between back-to-back samples), more
// than the workload's own run-to-run spread; the pooled p50 of 3–4 samples
// spread over the run stays within a few per cent.
const (
	CalibrationRequests = 1500            // PINGs per tool per sample
	CalibrationBudget   = 1 * time.Second // per sample, both tools
	// CalibrationTotal bounds all the samples of a run together: once it is
	// spent, further samples are skipped (and said so in Note).
	CalibrationTotal  = 2 * time.Second
	calibrationWarmup = 100 // Go PINGs before each sample's measured ones
)

// CalibrateOptions says what a calibration sample measures.
type CalibrateOptions struct {
	Path     string // PathDirect or PathProxied: the implementations' path
	Requests int    // per tool per sample; default CalibrationRequests
	// RedisBenchmark is the redis-benchmark binary ("" = look it up on PATH).
	RedisBenchmark string
	// Budget bounds one sample, both tools (default CalibrationBudget).
	Budget time.Duration
	// SecretPassword: the node's password is the user's (external
	// servers), so redis-benchmark, which takes it on its command line
	// (visible in the process list), is not run when there is one.
	SecretPassword bool
}

// Calibrator measures the machine reference of a run on one Redis node, over
// the path the implementations use: redis-benchmark (PING, one client) and
// faultline's own go-redis client doing the same number of sequential
// PINGs, timed through the recorder like every operation of a phase. Call
// Sample at quiet points of the run (no phase running), then Result once.
// It never fails the run: what could not be measured is said in Note.
type Calibrator struct {
	node  infra.Node
	opt   CalibrateOptions
	h     *recorder.History
	stats *recorder.Stats
	w     *recorder.Worker
	span  time.Duration // time spent in measured Go PINGs
	spent time.Duration // time spent sampling, both tools
	p50s  []float64     // per-sample Go PING p50
	rb    []rbFigures
	notes []string
}

// NewCalibrator prepares the calibration of a run on node.
func NewCalibrator(node infra.Node, opt CalibrateOptions) *Calibrator {
	if opt.Requests <= 0 {
		opt.Requests = CalibrationRequests
	}
	if opt.Budget <= 0 {
		opt.Budget = CalibrationBudget
	}
	if opt.Path != PathProxied {
		opt.Path = PathDirect
	}
	h := recorder.NewHistory(io.Discard, time.Now())
	stats := recorder.NewStats(h, []string{"ping"}, time.Time{})
	return &Calibrator{node: node, opt: opt, h: h, stats: stats, w: stats.Worker(0, "calibration")}
}

// Sample takes one calibration sample, bounded by the options' Budget.
func (c *Calibrator) Sample(ctx context.Context) {
	addr := c.node.DirectAddr() // looked up each time: a restart may move it
	if c.opt.Path == PathProxied {
		addr = c.node.Addr()
	}
	budget := min(c.opt.Budget, CalibrationTotal-c.spent)
	if budget < c.opt.Budget/2 {
		c.note(fmt.Sprintf("calibration samples after the first %d skipped: the %v calibration budget is spent", max(len(c.p50s), len(c.rb)), CalibrationTotal))
		return
	}
	began := time.Now()
	defer func() { c.spent += time.Since(began) }()
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	// redis-benchmark (a process to start, on a possibly busy machine) gets
	// at most 70% of the budget; the Go client the rest.
	rctx, rcancel := context.WithTimeout(ctx, budget*7/10)
	var (
		rb  rbFigures
		err error
	)
	if c.opt.SecretPassword && c.node.Password() != "" {
		err = errors.New("redis-benchmark not run: it takes the password on its command line, where the process list shows it, and this server's password is yours")
	} else {
		rb, err = redisBenchmarkPing(rctx, c.opt.RedisBenchmark, addr, c.node.Password(), c.opt.Requests)
	}
	rcancel()
	if err != nil {
		c.note(err.Error())
	} else {
		c.rb = append(c.rb, rb)
	}
	p50, span, err := c.goPing(ctx, addr)
	if err != nil {
		c.note(err.Error())
	}
	if p50 > 0 {
		c.p50s = append(c.p50s, p50)
		c.span += span
	}
}

func (c *Calibrator) note(s string) {
	if !slices.Contains(c.notes, s) {
		c.notes = append(c.notes, s)
	}
}

// Result pools the samples: the Go figures from one histogram of every
// measured PING, redis-benchmark's as the median over the samples. It ends
// the calibrator. Nil when no sample was taken.
func (c *Calibrator) Result() *results.Calibration {
	_ = c.h.Close()
	samples := max(len(c.p50s), len(c.rb))
	if samples == 0 && len(c.notes) == 0 {
		return nil
	}
	cal := &results.Calibration{Node: c.node.Name(), Path: c.opt.Path, Requests: c.opt.Requests, Samples: samples}
	if len(c.p50s) > 0 {
		st := recorder.OpStats(c.stats.Merge()["ping"], c.span)
		cal.GoPingRPS, cal.GoPingP50us, cal.GoPingP99us, cal.GoPingMeanUs = st.Throughput, st.P50, st.P99, st.Mean
		cal.GoPingP50Min, cal.GoPingP50Max = slices.Min(c.p50s), slices.Max(c.p50s)
	}
	if len(c.rb) > 0 {
		med := func(f func(rbFigures) float64) float64 {
			v := make([]float64, len(c.rb))
			for i, x := range c.rb {
				v[i] = f(x)
			}
			return median(v)
		}
		cal.RedisBenchmarkRPS = med(func(x rbFigures) float64 { return x.rps })
		cal.RedisBenchmarkP50us = med(func(x rbFigures) float64 { return x.p50 })
		cal.RedisBenchmarkP99us = med(func(x rbFigures) float64 { return x.p99 })
		cal.RedisBenchmarkMeanUs = med(func(x rbFigures) float64 { return x.mean })
	}
	cal.Note = strings.Join(c.notes, "; ")
	return cal
}

// Calibrate takes samples calibration samples on node and pools them.
func Calibrate(ctx context.Context, node infra.Node, samples int, opt CalibrateOptions) *results.Calibration {
	c := NewCalibrator(node, opt)
	for range max(samples, 1) {
		c.Sample(ctx)
	}
	return c.Result()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// rbFigures are redis-benchmark's figures for one test, latencies in µs.
type rbFigures struct{ rps, p50, p99, mean float64 }

// redisBenchmarkPing runs `redis-benchmark -t ping_mbulk -c 1 -n N --csv`
// against addr and parses its CSV (redis-benchmark 7 prints rps and the
// average, p50, p95, p99 and max latencies in ms).
func redisBenchmarkPing(ctx context.Context, bin, addr, password string, n int) (rbFigures, error) {
	if bin == "" {
		p, err := exec.LookPath("redis-benchmark")
		if err != nil {
			return rbFigures{}, fmt.Errorf("redis-benchmark not run: not found on PATH (install redis-tools to measure the harness overhead against it)")
		}
		bin = p
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return rbFigures{}, fmt.Errorf("redis-benchmark not run: address %q: %w", addr, err)
	}
	cmd := exec.CommandContext(ctx, bin, "-h", host, "-p", port, "-a", password,
		"-t", "ping_mbulk", "-n", strconv.Itoa(n), "-c", "1", "--csv", "--precision", "3")
	cmd.WaitDelay = 200 * time.Millisecond
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		return rbFigures{}, fmt.Errorf("redis-benchmark: no result within its time budget (%d PINGs): %w", n, ctx.Err())
	}
	if err != nil {
		if msg := firstLine(stderr.String() + " " + string(out)); msg != "" {
			return rbFigures{}, fmt.Errorf("redis-benchmark failed: %w: %s", err, msg)
		}
		return rbFigures{}, fmt.Errorf("redis-benchmark failed: %w", err)
	}
	return parseRedisBenchmarkCSV(string(out))
}

// parseRedisBenchmarkCSV reads redis-benchmark --csv output: a header row
// ("test","rps","avg_latency_ms",…,"p50_latency_ms",…,"p99_latency_ms",…)
// and one row per test. Older versions print only "test","rps": then the
// latencies stay zero except the mean, derived from the rate of a single
// client.
func parseRedisBenchmarkCSV(out string) (rbFigures, error) {
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) < 2 {
		return rbFigures{}, fmt.Errorf("redis-benchmark: unexpected --csv output %q", firstLine(out))
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[strings.TrimSpace(h)] = i
	}
	data := rows[len(rows)-1]
	get := func(name string) (float64, bool) {
		i, ok := col[name]
		if !ok || i >= len(data) {
			return 0, false
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(data[i]), 64)
		return f, err == nil
	}
	var f rbFigures
	var ok bool
	if f.rps, ok = get("rps"); !ok || f.rps <= 0 {
		return rbFigures{}, fmt.Errorf("redis-benchmark: no rps in --csv output %q", strings.Join(data, ","))
	}
	ms := func(name string) float64 { v, _ := get(name); return v * 1000 }
	f.p50, f.p99, f.mean = ms("p50_latency_ms"), ms("p99_latency_ms"), ms("avg_latency_ms")
	if f.mean == 0 {
		f.mean = 1e6 / f.rps // one client: sequential requests
	}
	return f, nil
}

// goPing sends warm-up then Requests sequential PINGs on one go-redis
// connection (MaxRetries -1, explicit timeouts) and times each through the
// recorder's histogram path, pooled with the earlier samples. It stops
// early at ctx's deadline. It returns this sample's p50 (µs) and the time
// its measured PINGs took.
func (c *Calibrator) goPing(ctx context.Context, addr string) (float64, time.Duration, error) {
	// One client: its connection waits for replies as a 1-client phase's
	// lock connections do (RedisIO).
	dialer, err := lock.RedisDialer(RedisIO(1), 500*time.Millisecond)
	if err != nil {
		return 0, 0, err
	}
	rc := redis.NewClient(&redis.Options{
		Addr: addr, Password: c.node.Password(), Dialer: dialer,
		MaxRetries:  -1,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
		ContextTimeoutEnabled: true,
		PoolSize:              1,
		PoolTimeout:           500 * time.Millisecond,
	})
	defer rc.Close()
	for range calibrationWarmup {
		if err := rc.Ping(ctx).Err(); err != nil {
			return 0, 0, fmt.Errorf("go client PING to %s: %w", addr, err)
		}
	}
	h := recorder.NewHistogram()
	n := c.opt.Requests
	var failed int
	var lastErr error
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		m := c.w.Mark()
		err := rc.Ping(ctx).Err()
		typ := history.OK
		if err != nil {
			typ, lastErr = history.Info, err
			failed++
		}
		if d := c.w.Done(0, m, typ, recorder.ErrorKind(err)); err == nil {
			_ = h.RecordValue(max(d.Microseconds(), 1))
		}
	}
	span := time.Since(start)
	ok := h.TotalCount()
	switch {
	case ok == 0 && lastErr != nil:
		return 0, 0, fmt.Errorf("go client PING to %s: %w", addr, lastErr)
	case ok == 0:
		return 0, 0, fmt.Errorf("go client PING to %s: no PING within the calibration budget", addr)
	case failed > 0:
		return float64(h.ValueAtQuantile(50)), span, fmt.Errorf("go client PING: %d of %d failed (last: %v)", failed, int(ok)+failed, lastErr)
	case ok < int64(n):
		return float64(h.ValueAtQuantile(50)), span, fmt.Errorf("go client PING: %d of %d PINGs within the calibration budget", ok, n)
	}
	return float64(h.ValueAtQuantile(50)), span, nil
}

// calibrationNode is the node a run calibrates on: the first Redis node
// (the one every Redis lock implementation talks to), or nil.
func calibrationNode(env *infra.Env) infra.Node {
	if nodes := env.ByKind(infra.Redis); len(nodes) > 0 {
		return nodes[0]
	}
	return nil
}

// CalibrationLine is the summary line about the harness's own overhead.
func CalibrationLine(c *results.Calibration) string {
	if c == nil {
		return ""
	}
	var b strings.Builder
	switch {
	case c.GoPingP50us > 0 && c.RedisBenchmarkP50us > 0:
		fmt.Fprintf(&b, "harness overhead: Go client PING p50 %s vs redis-benchmark %s (×%.2f)",
			FormatMicros(c.GoPingP50us), FormatMicros(c.RedisBenchmarkP50us), c.Overhead())
	case c.GoPingP50us > 0:
		fmt.Fprintf(&b, "harness overhead: Go client PING p50 %s (no redis-benchmark figure)", FormatMicros(c.GoPingP50us))
	default:
		b.WriteString("harness overhead: not measured")
	}
	fmt.Fprintf(&b, " — %s, %s path", c.Node, c.Path)
	if c.Samples > 1 && c.GoPingP50Max > 0 {
		fmt.Fprintf(&b, ", %d samples (Go p50 %s–%s)", c.Samples, FormatMicros(c.GoPingP50Min), FormatMicros(c.GoPingP50Max))
	}
	if c.Note != "" {
		fmt.Fprintf(&b, " (%s)", c.Note)
	}
	return b.String()
}

// firstLine flattens a tool's output to one line of at most 200 bytes.
func firstLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
