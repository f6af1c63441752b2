package infra

import (
	"context"
	"testing"
	"time"
)

// BenchmarkEnvUp measures the time to a ready 1-Redis + 1-PostgreSQL
// environment (Close excluded), per provider. Run with
//
//	go test -run '^$' -bench EnvUp -benchtime 3x ./infra/
func BenchmarkEnvUp(b *testing.B) {
	for _, provider := range []string{"local", "docker"} {
		b.Run(provider, func(b *testing.B) {
			ctx := context.Background()
			spec := Spec{Nodes: Nodes(1, 1), Provider: provider}
			if provider == "docker" {
				if ok, why := dockerAvailable(ctx, spec); !ok {
					b.Skipf("docker provider unusable: %s", why)
				}
			}
			var total time.Duration
			for b.Loop() {
				start := time.Now()
				env, err := Up(ctx, spec)
				if err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				b.StopTimer()
				if err := env.Close(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/up")
			b.Logf("%s: %d runs, mean time to a ready 1-Redis + 1-PostgreSQL environment %v", provider, b.N, total/time.Duration(b.N))
		})
	}
}
