package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/faultline-dev/faultline/infra"
)

// The ceiling on a real Redis node: every point measured by both tools, the
// ratio their quotient, history written; the SET really wrote (the keys
// exist); redis-benchmark missing is an error that says how to get it.
func TestMeasureCeilingRealRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real server (-short)")
	}
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		t.Skip("redis-benchmark not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	env, err := infra.Up(ctx, infra.Spec{Nodes: infra.RedisNodes(1), Provider: "local"})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close(context.WithoutCancel(ctx))
	node, _ := env.Node("redis-1")
	ps, err := MeasureCeiling(ctx, node, CeilingOptions{Ops: []string{"ping", "set"}, Clients: []int{1, 4}, Requests: 600, Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 4 {
		t.Fatalf("%d points, want 4: %+v", len(ps), ps)
	}
	for _, p := range ps {
		if p.FaultlineRPS <= 0 || p.RedisBenchmarkRPS <= 0 || p.Ratio != p.FaultlineRPS/p.RedisBenchmarkRPS ||
			p.HistoryBytesPerOp <= 0 || p.HistoryBytesPerOp > 200 || p.Requests != 600 || p.GoRedisRPS <= 0 ||
			p.IO != RedisIO(p.Clients) {
			t.Errorf("implausible point %+v", p)
		}
	}
	rc := redis.NewClient(&redis.Options{Addr: node.DirectAddr(), Password: node.Password()})
	defer rc.Close()
	if v, err := rc.Get(ctx, "key:0").Result(); err != nil || v != "xxx" {
		t.Errorf("faultline's SETs did not reach the server: key:0 = %q, %v", v, err)
	}
	var b strings.Builder
	WriteCeiling(&b, ps)
	if strings.Count(b.String(), "\n") != 5 || !strings.Contains(b.String(), "redis-benchmark/s") {
		t.Errorf("table:\n%s", b.String())
	}
	_, err = MeasureCeiling(ctx, node, CeilingOptions{Ops: []string{"ping"}, Clients: []int{1}, Requests: 100, Rounds: 1, RedisBenchmark: "/nonexistent/redis-benchmark"})
	if err == nil || !strings.Contains(err.Error(), "redis-benchmark") {
		t.Errorf("missing redis-benchmark: err = %v", err)
	}
	var ue *UsageError
	if _, err := MeasureCeiling(ctx, node, CeilingOptions{Ops: []string{"get"}}); !errors.As(err, &ue) {
		t.Errorf("op get: err = %v, want a usage error", err)
	}
}

// BenchmarkCeilingRaw is faultline ceiling's own loop on a real Redis, each
// (command, clients) recorded (as faultline ceiling's faultline figure) and
// bare (its go-redis alone figure); b.N requests in all. req/s is the
// loop's throughput. With FAULTLINE_BENCH_REDIS=host:port (and
// FAULTLINE_BENCH_REDIS_PASSWORD) it uses that server instead of starting
// one, so that `perf stat -e instructions` of the test binary counts the
// client alone: (instructions at 2N − at N) ÷ N is the client's
// instructions per request, recorded minus bare what recording costs.
func BenchmarkCeilingRaw(b *testing.B) {
	ctx := context.Background()
	addr, password := os.Getenv("FAULTLINE_BENCH_REDIS"), os.Getenv("FAULTLINE_BENCH_REDIS_PASSWORD")
	if addr == "" {
		env, err := infra.Up(ctx, infra.Spec{Nodes: infra.RedisNodes(1), Provider: "local"})
		if err != nil {
			b.Skipf("no Redis (set FAULTLINE_BENCH_REDIS): %v", err)
		}
		defer env.Close(context.WithoutCancel(ctx))
		node, _ := env.Node("redis-1")
		addr, password = node.DirectAddr(), node.Password()
	}
	for _, op := range []string{"ping", "set"} {
		for _, clients := range []int{1, 50} {
			for _, record := range []bool{true, false} {
				name := fmt.Sprintf("%s/%d/bare", op, clients)
				if record {
					name = fmt.Sprintf("%s/%d/record", op, clients)
				}
				b.Run(name, func(b *testing.B) {
					rps, _, err := faultlineRaw(ctx, addr, password, RedisIO(clients), op, clients, b.N, record)
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(rps, "req/s")
				})
			}
		}
	}
}
