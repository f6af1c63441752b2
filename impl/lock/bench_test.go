//go:build unix

// Unix only: getrusage (processCPU, ratio_bench_test.go).

package lock_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/redis/go-redis/v9"
)

// BenchmarkAcquireRelease measures one uncontended Acquire+Release cycle per
// implementation, on the same servers in the same run, both straight to the
// servers ("direct") and through each node's Toxiproxy proxy ("proxy"), next
// to baselines of the raw Redis round trips (PING; SET NX PX + DEL) with the
// same client settings, so results read as ratios. cli-cpu-µs/op is this
// process's CPU time per cycle (user and system: on loopback a write's
// system time includes delivering it to the server), redis-cpu-µs/op the
// Redis servers' and redis-cmds/op the commands they served (INFO cpu and
// commandstats; a script's inner commands count besides it); CPU time moves
// less with other load on the machine than wall time does:
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
			// The commands of a redis-setnx cycle without the lock code:
			// SET NX PX, then the compare-and-delete script by hash. Its
			// excess over set-del is the script's; redis-setnx's excess
			// over it is the lock code's.
			b.Run("baseline-redis-set-evalsha", func(b *testing.B) {
				c := benchRedis(b, path.ep.Redis[0])
				ctx := context.Background()
				key := uniqueKey(b)
				release := redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
				if err := release.Load(ctx, c).Err(); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := c.SetArgs(ctx, key, "v", redis.SetArgs{Mode: "NX", TTL: time.Second}).Err(); err != nil {
						b.Fatal(err)
					}
					if n, err := release.EvalSha(ctx, c, []string{key}, "v").Int64(); err != nil || n != 1 {
						b.Fatal(n, err)
					}
				}
			})
			var infos []lock.Info
			for _, info := range lock.All() {
				if info.Mutant || info.Topology != "" {
					continue
				}
				infos = append(infos, info)
				if info.Name == "redlock" {
					infos = append(infos, withIO(info, lock.IOBlocking)) // as a 1-client run picks
				}
			}
			for _, info := range infos {
				b.Run(info.Name, func(b *testing.B) {
					ep := endpointsFor(info, path.ep)
					l := newLockerOn(b, info, ep, lock.Options{})
					key := uniqueKey(b)
					b.ReportAllocs()
					var srv0 serverStats
					if len(ep.Redis) > 0 {
						srv0 = serverUse(b, ep)
					}
					cli0 := processCPU(b)
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
					b.ReportMetric(float64((processCPU(b)-cli0).Microseconds())/float64(b.N), "cli-cpu-µs/op")
					if len(ep.Redis) > 0 {
						srv := serverUse(b, ep)
						b.ReportMetric(float64((srv.cpu-srv0.cpu).Microseconds())/float64(b.N), "redis-cpu-µs/op")
						b.ReportMetric(float64(srv.calls-srv0.calls-int64(len(ep.Redis)))/float64(b.N), "redis-cmds/op")
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

// BenchmarkRedlockContended is the counter workload's contended shape for
// the two Redlocks: 32 clients (one Locker each, as separate processes
// would have), 4 keys, each cycle acquire a random key, read and write a
// counter on redis-1 (GET, SET), release. ns/op is wall time per cycle across
// all clients; commands/cycle counts every command the five nodes served
// (INFO commandstats before and after: the counter's GET and SET included,
// and the GET and DEL a release script runs count besides its EVALSHA).
//
//	go test -run '^$' -bench RedlockContended -benchtime 3000x ./impl/lock/
func BenchmarkRedlockContended(b *testing.B) {
	needEnv(b)
	const clients, keys = 32, 4
	for _, name := range []string{"redlock", "redsync"} {
		b.Run(name, func(b *testing.B) {
			info, err := lock.Lookup(name)
			if err != nil {
				b.Fatal(err)
			}
			ep := endpointsFor(info, testEnv.direct)
			ls := make([]lock.Locker, clients)
			for i := range ls {
				ls[i] = newLockerOn(b, info, ep, lock.Options{})
			}
			counter := benchRedis(b, ep.Redis[0])
			base := uniqueKey(b)
			before := commandCalls(b, ep)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(c), 1))
					for next.Add(1) <= int64(b.N) {
						key := fmt.Sprintf("%s-%d", base, rng.IntN(keys))
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						lease, err := ls[c].Acquire(ctx, key, time.Second)
						if err != nil {
							cancel()
							b.Errorf("Acquire: %v", err)
							return
						}
						v, err := counter.Get(ctx, key+"-counter").Int64()
						if err != nil && !errors.Is(err, redis.Nil) {
							b.Errorf("counter GET: %v", err)
						}
						if err := counter.Set(ctx, key+"-counter", v+1, time.Minute).Err(); err != nil {
							b.Errorf("counter SET: %v", err)
						}
						if err := ls[c].Release(ctx, lease); err != nil {
							b.Errorf("Release: %v", err)
						}
						cancel()
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(commandCalls(b, ep)-before)/float64(b.N), "commands/cycle")
		})
	}
}

// commandCalls is the number of commands the nodes of ep served so far
// (INFO commandstats, the INFO calls themselves included).
func commandCalls(b *testing.B, ep lock.Endpoints) int64 {
	var total int64
	for _, e := range ep.Redis {
		c := benchRedis(b, e)
		s, err := c.Info(context.Background(), "commandstats").Result()
		if err != nil {
			b.Fatalf("INFO commandstats on %s: %v", e.Name, err)
		}
		for _, line := range strings.Split(s, "\n") {
			if _, rest, ok := strings.Cut(line, ":calls="); ok {
				n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
				total += n
			}
		}
	}
	return total
}
