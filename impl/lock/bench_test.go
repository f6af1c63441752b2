package lock_test

import (
	"context"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/redis/go-redis/v9"
)

// BenchmarkAcquireRelease measures one uncontended Acquire+Release cycle per
// implementation, on the same servers in the same run, both straight to the
// servers ("direct") and through each node's Toxiproxy proxy ("proxy"), next
// to baselines of the raw Redis round trips (PING; SET NX PX + DEL) with the
// same client settings, so results read as ratios:
//
//	go test -bench . -run '^$' ./impl/lock/
func BenchmarkAcquireRelease(b *testing.B) {
	needEnv(b)
	for _, path := range []struct {
		name string
		ep   lock.Endpoints
	}{{"direct", testEnv.direct}, {"proxy", testEnv.proxied}} {
		b.Run(path.name, func(b *testing.B) {
			b.Run("baseline-redis-ping", func(b *testing.B) {
				c := benchRedis(b, path.ep.Redis[0])
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if err := c.Ping(ctx).Err(); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("baseline-redis-set-del", func(b *testing.B) {
				c := benchRedis(b, path.ep.Redis[0])
				ctx := context.Background()
				key := uniqueKey(b)
				b.ReportAllocs()
				for b.Loop() {
					if err := c.SetArgs(ctx, key, "v", redis.SetArgs{Mode: "NX", TTL: time.Second}).Err(); err != nil {
						b.Fatal(err)
					}
					if err := c.Del(ctx, key).Err(); err != nil {
						b.Fatal(err)
					}
				}
			})
			for _, info := range lock.All() {
				if info.Mutant || info.Topology != "" {
					continue
				}
				b.Run(info.Name, func(b *testing.B) {
					l := newLockerOn(b, info, endpointsFor(info, path.ep), lock.Options{})
					key := uniqueKey(b)
					b.ReportAllocs()
					for b.Loop() {
						ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
						lease, err := l.Acquire(ctx, key, 2*time.Second)
						if err != nil {
							cancel()
							b.Fatalf("Acquire: %v", err)
						}
						if err := l.Release(ctx, lease); err != nil {
							cancel()
							b.Fatalf("Release: %v", err)
						}
						cancel()
					}
				})
			}
		})
	}
}

func benchRedis(b *testing.B, ep lock.RedisEndpoint) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: ep.Addr, Password: ep.Password, MaxRetries: -1, Protocol: 2, DisableIdentity: true,
		DialTimeout: time.Second, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, PoolSize: 4})
	b.Cleanup(func() { _ = c.Close() })
	return c
}
