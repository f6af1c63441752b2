package bench

import (
	"context"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/infra"
)

func TestParseRedisBenchmarkCSV(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    rbFigures
		wantErr string
	}{
		{"redis 7 with latencies", `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"PING_MBULK","19379.85","0.042","0.024","0.031","0.087","0.199","3.671"
`, rbFigures{rps: 19379.85, p50: 31, p99: 199, mean: 42}, ""},
		{"old redis: rps only", `"test","rps"
"PING_BULK","20000.00"
`, rbFigures{rps: 20000, mean: 50}, ""},
		{"no data row", `"test","rps"` + "\n", rbFigures{}, "unexpected --csv output"},
		{"garbage", "WRONGPASS invalid username-password pair", rbFigures{}, "unexpected --csv output"},
		{"zero rps", `"test","rps"` + "\n" + `"PING_MBULK","0"` + "\n", rbFigures{}, "no rps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRedisBenchmarkCSV(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
			if !near(got.rps, tt.want.rps) || !near(got.p50, tt.want.p50) || !near(got.p99, tt.want.p99) || !near(got.mean, tt.want.mean) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestCalibrationLine(t *testing.T) {
	tests := []struct {
		c    *results.Calibration
		want []string
	}{
		{nil, nil},
		{&results.Calibration{Node: "redis-1", Path: "direct", GoPingP50us: 45, RedisBenchmarkP50us: 30, Samples: 4, GoPingP50Min: 38, GoPingP50Max: 51},
			[]string{"harness overhead: Go client PING p50 45µs vs redis-benchmark 30µs (×1.50)", "redis-1, direct path, 4 samples (Go p50 38µs–51µs)"}},
		{&results.Calibration{Node: "redis-1", Path: "proxied", GoPingP50us: 100, Note: "redis-benchmark not run: not found on PATH"},
			[]string{"PING p50 100µs (no redis-benchmark figure)", "not found on PATH"}},
	}
	for _, tt := range tests {
		got := CalibrationLine(tt.c)
		if tt.want == nil && got != "" {
			t.Errorf("CalibrationLine(nil) = %q", got)
		}
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("CalibrationLine = %q, lacks %q", got, w)
			}
		}
	}
}

// Calibrate on a real Redis node, both paths, with and without
// redis-benchmark: figures plausible, bounded in time, absence noted.
func TestCalibrateRealRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real server (-short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	env, err := infra.Up(ctx, infra.Spec{Nodes: infra.RedisNodes(1), Provider: "local"})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close(context.WithoutCancel(ctx))
	node := calibrationNode(env)
	if node == nil || node.Name() != "redis-1" {
		t.Fatalf("calibration node = %v, want redis-1", node)
	}
	_, rbErr := exec.LookPath("redis-benchmark")
	for _, path := range []string{PathDirect, PathProxied} {
		t.Run(path, func(t *testing.T) {
			start := time.Now()
			c := Calibrate(ctx, node, 3, CalibrateOptions{Path: path, Requests: 1000})
			took := time.Since(start)
			t.Logf("%s (took %v): %+v", CalibrationLine(c), took.Round(time.Millisecond), *c)
			if took > 3*CalibrationBudget+500*time.Millisecond {
				t.Errorf("3 samples took %v, budget %v each", took, CalibrationBudget)
			}
			if c.Path != path || c.Node != "redis-1" || c.Requests != 1000 || c.Samples != 3 {
				t.Errorf("calibration labels %+v", *c)
			}
			if c.GoPingP50us <= 0 || c.GoPingP99us < c.GoPingP50us || c.GoPingRPS <= 0 ||
				c.GoPingP50Min > c.GoPingP50us+1 || c.GoPingP50Max < c.GoPingP50us-1 {
				t.Errorf("go ping figures implausible: %+v", *c)
			}
			if rbErr == nil && (c.RedisBenchmarkP50us <= 0 || c.RedisBenchmarkRPS <= 0) {
				t.Errorf("redis-benchmark is on PATH but gave no figure: %+v", *c)
			}
		})
	}
	t.Run("redis-benchmark absent", func(t *testing.T) {
		c := Calibrate(ctx, node, 2, CalibrateOptions{Path: PathDirect, Requests: 500, RedisBenchmark: "/nonexistent/redis-benchmark"})
		if c.RedisBenchmarkRPS != 0 || !strings.Contains(c.Note, "redis-benchmark failed") || strings.Count(c.Note, "redis-benchmark failed") != 1 || c.GoPingP50us <= 0 {
			t.Errorf("want a note and Go figures only: %+v", *c)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		if rbErr != nil {
			t.Skip("redis-benchmark not on PATH")
		}
		rb, err := redisBenchmarkPing(ctx, "", node.DirectAddr(), "wrong", 100)
		if err == nil {
			t.Fatalf("redis-benchmark with a wrong password gave %+v, want an error", rb)
		}
		t.Logf("wrong password: %v", err)
	})
}
