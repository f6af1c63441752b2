//go:build unix

// Unix only: getrusage.

package lock_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/redis/go-redis/v9"
)

// BenchmarkRedlockRatio measures redlock's cycles/s against redsync's in
// the same run, alternating between them in short phases so that both see
// the same machine load: a cycle is the counter workload's (acquire, GET
// and SET a counter on redis-1, release). "1-client" is one client on one
// key; it runs redlock as a 1-client run of faultline does (io=blocking:
// the caller collects its replies itself) and "redlock-netpoll" (reader
// goroutines, the path of every other shape), and "floor": the same
// commands as an uncontended redlock cycle with no lock logic, on the
// reader-goroutine connections (lock.NewBareFanout); "32-clients-4-keys" is the contended shape of
// make perf (one Locker per client, as separate processes would have).
// Each iteration is one phase of each contender, the order rotating; the
// metrics are totals over all phases: x-redsync is a contender's cycles/s
// ÷ redsync's, cmds/cycle the commands the five nodes served per cycle
// (INFO commandstats: the counter's GET and SET and a script's inner GET
// and DEL included), srv-cpu the Redis servers' CPU time per cycle (INFO
// cpu) and cli-cpu this process's (getrusage), which move less with other
// load on the machine than cycles/s do; cli-sleeps the times one of this
// process's threads blocked in the kernel per cycle (voluntary context
// switches, getrusage: each is a wake-up later).
//
//	go test -run '^$' -bench RedlockRatio -benchtime 10x -count 3 ./impl/lock/
func BenchmarkRedlockRatio(b *testing.B) {
	needEnv(b)
	for _, shape := range []struct {
		name          string
		clients, keys int
		phase         time.Duration
		contenders    []string
	}{
		{"1-client", 1, 1, 300 * time.Millisecond, []string{"redlock", "redsync", "redlock-netpoll", "floor", "floor-inline"}},
		{"32-clients-4-keys", 32, 4, 500 * time.Millisecond, []string{"redlock", "redsync", "redlock-ungated"}},
	} {
		b.Run(shape.name, func(b *testing.B) {
			names := shape.contenders
			lockers := make([][]lock.Locker, len(names))
			info, err := lock.Lookup("redlock")
			if err != nil {
				b.Fatal(err)
			}
			ep := endpointsFor(info, testEnv.direct)
			for k, name := range names {
				for range shape.clients {
					if name == "floor" || name == "floor-inline" || name == "redlock-ungated" {
						var l lock.Locker
						var err error
						switch name {
						case "floor":
							l, err = lock.NewBareFanout(context.Background(), ep)
						case "floor-inline":
							l, err = lock.NewInlineFanout(context.Background(), ep)
						default:
							l, err = lock.NewRedlockUngated(context.Background(), ep, lock.Options{})
						}
						if err != nil {
							b.Fatal(err)
						}
						b.Cleanup(func() { _ = l.Close() })
						lockers[k] = append(lockers[k], l)
						continue
					}
					opt := lock.Options{}
					switch {
					case name == "redlock-netpoll":
						name = "redlock"
					case name == "redlock" && shape.clients == 1:
						// As a 1-client run of faultline does (bench.RedisIO).
						opt.Params = map[string]string{lock.OptIO: lock.IOBlocking}
					}
					info, err := lock.Lookup(name)
					if err != nil {
						b.Fatal(err)
					}
					lockers[k] = append(lockers[k], newLockerOn(b, info, ep, opt))
				}
			}
			e := ep.Redis[0]
			counter := redis.NewClient(&redis.Options{Addr: e.Addr, Password: e.Password, MaxRetries: -1, Protocol: 2, DisableIdentity: true,
				DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, PoolSize: shape.clients})
			b.Cleanup(func() { _ = counter.Close() })
			base := uniqueKey(b)
			cycles, cmds, switches := make([]int64, len(names)), make([]int64, len(names)), make([]int64, len(names))
			took, srvCPU, cliCPU := make([]time.Duration, len(names)), make([]time.Duration, len(names)), make([]time.Duration, len(names))
			n := 0
			for b.Loop() {
				for j := range names {
					k := (j + n) % len(names)
					before := serverUse(b, ep)
					cli, csw := processCPU(b), voluntarySwitches(b)
					c, d := ratioPhase(b, lockers[k], counter, fmt.Sprintf("%s-%s", base, names[k]), shape.keys, shape.phase)
					cliCPU[k] += processCPU(b) - cli
					switches[k] += voluntarySwitches(b) - csw
					after := serverUse(b, ep)
					cmds[k] += after.calls - before.calls - int64(len(ep.Redis)) // less the INFO calls of before
					srvCPU[k] += after.cpu - before.cpu
					cycles[k] += c
					took[k] += d
				}
				n++
			}
			rate := func(k int) float64 { return float64(cycles[k]) / took[k].Seconds() }
			for k, name := range names {
				b.ReportMetric(rate(k), name+"-cycles/s")
				if name != "redsync" {
					b.ReportMetric(rate(k)/rate(slices.Index(names, "redsync")), name+"-x-redsync")
				}
				b.ReportMetric(float64(cmds[k])/float64(cycles[k]), name+"-cmds/cycle")
				b.ReportMetric(float64(srvCPU[k].Microseconds())/float64(cycles[k]), name+"-srv-cpu-µs/cycle")
				b.ReportMetric(float64(cliCPU[k].Microseconds())/float64(cycles[k]), name+"-cli-cpu-µs/cycle")
				b.ReportMetric(float64(switches[k])/float64(cycles[k]), name+"-cli-sleeps/cycle")
			}
		})
	}
}

// ratioPhase runs counter-workload cycles on every Locker of ls at once
// (keys keys under base) for d and returns how many completed and how long
// the phase took until the last cycle ended.
func ratioPhase(b *testing.B, ls []lock.Locker, counter *redis.Client, base string, keys int, d time.Duration) (int64, time.Duration) {
	var done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(d)
	for c, l := range ls {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), uint64(start.UnixNano())))
			for time.Now().Before(stop) {
				key := fmt.Sprintf("%s-%d", base, rng.IntN(keys))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := counterCycle(ctx, l, counter, key)
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return done.Load(), time.Since(start)
}

// counterCycle is one cycle of the counter workload: acquire key, read and
// write its counter, release.
func counterCycle(ctx context.Context, l lock.Locker, counter *redis.Client, key string) error {
	lease, err := l.Acquire(ctx, key, time.Second)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	v, err := counter.Get(ctx, key+"-counter").Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("counter GET: %w", err)
	}
	if err := counter.Set(ctx, key+"-counter", v+1, time.Minute).Err(); err != nil {
		return fmt.Errorf("counter SET: %w", err)
	}
	if err := l.Release(ctx, lease); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// serverStats is what the five nodes report of themselves: commands served
// (INFO commandstats, the INFO calls themselves included) and CPU time used
// (INFO cpu, user and system, main thread and children).
type serverStats struct {
	calls int64
	cpu   time.Duration
}

func serverUse(b *testing.B, ep lock.Endpoints) serverStats {
	b.Helper()
	var st serverStats
	for _, e := range ep.Redis {
		c := benchRedis(b, e)
		s, err := c.Info(context.Background(), "commandstats", "cpu").Result()
		if err != nil {
			b.Fatalf("INFO on %s: %v", e.Name, err)
		}
		for _, line := range strings.Split(s, "\n") {
			line = strings.TrimSpace(line)
			if _, rest, ok := strings.Cut(line, ":calls="); ok {
				n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
				st.calls += n
				continue
			}
			name, v, ok := strings.Cut(line, ":")
			if ok && (name == "used_cpu_sys" || name == "used_cpu_user") {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatalf("INFO cpu on %s: %q: %v", e.Name, line, err)
				}
				st.cpu += time.Duration(f * float64(time.Second))
			}
		}
	}
	return st
}

// processCPU is the CPU time (user and system) this process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// voluntarySwitches is how many times this process's threads blocked in
// the kernel so far (getrusage ru_nvcsw).
func voluntarySwitches(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return ru.Nvcsw
}
