//go:build unix

// Unix only: getrusage (processCPU, ratio_bench_test.go).

package lock_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// pairContender is one side of BenchmarkLockPairRatio: an implementation
// with lock options (Params).
type pairContender struct {
	label  string
	impl   string
	params map[string]string
}

// BenchmarkLockPairRatio measures an implementation against its reference
// in alternating phases of the same run (as BenchmarkRedlockRatio does for
// redlock): redis-setnx against redislock, pg-lease against pg-advisory, at
// 1 client on 1 key and at make perf's contended shape (32 clients, one
// Locker each, 4 keys). A cycle is the counter workload's (acquire, GET and
// SET a counter, release); the counter lives on redis-2, so the lock node's
// command counts are the lock's alone. Metrics per contender, totals over
// all its phases: cycles/s and x-ref (÷ the reference's), lock-cmds/cycle
// (commands redis-1 served, a script's inner GET and DEL included),
// set/cycle and evalsha/cycle (attempts), acq-p50-µs (the p50 of Acquire's
// wall time: the wait), allocs/cycle (this process, the loop included),
// cli-cpu and srv-cpu per cycle, wal-B/cycle (PostgreSQL WAL bytes written).
// The pg pair adds two non-locks as floors (pgFloor): floor-write, one
// durable single-row write per acquire and per release, and floor-read,
// one SELECT each; their cycles/s at 1 client split pg-lease's gap into
// PostgreSQL's (a write transaction) and the lease statement's own (at 32
// clients they exclude nobody: read them at 1 client only). setnx-full is
// redis-setnx with retry-jitter=full, its back-off before equal jitter.
//
//	go test -run '^$' -bench 'LockPairRatio/redis' -benchtime 6x -count 3 ./impl/lock/
func BenchmarkLockPairRatio(b *testing.B) {
	needEnv(b)
	for _, pair := range []struct {
		name       string
		contenders []pairContender // the first is the reference
	}{
		{"redis", []pairContender{{label: "redislock", impl: "redislock"}, {label: "setnx", impl: "redis-setnx"},
			{label: "setnx-full", impl: "redis-setnx", params: map[string]string{"retry-jitter": lock.JitterFull}}}},
		{"pg", []pairContender{{label: "advisory", impl: "pg-advisory"}, {label: "lease", impl: "pg-lease"},
			{label: "floor-write", impl: "pg-floor", params: map[string]string{"floor": "write"}},
			{label: "floor-read", impl: "pg-floor", params: map[string]string{"floor": "read"}}}},
	} {
		b.Run(pair.name, func(b *testing.B) {
			for _, shape := range []struct {
				name          string
				clients, keys int
				phase         time.Duration
			}{
				{"1-client", 1, 1, 300 * time.Millisecond},
				{"32-clients-4-keys", 32, 4, 500 * time.Millisecond},
			} {
				b.Run(shape.name, func(b *testing.B) {
					pairRatio(b, pair.contenders, shape.clients, shape.keys, shape.phase)
				})
			}
		})
	}
}

func pairRatio(b *testing.B, cs []pairContender, clients, keys int, phase time.Duration) {
	ep := testEnv.direct
	lockEp := lock.Endpoints{Redis: ep.Redis[:1], Postgres: ep.Postgres[:1]}
	lockers := make([][]lock.Locker, len(cs))
	for k, c := range cs {
		if c.impl == "pg-floor" {
			for range clients {
				lockers[k] = append(lockers[k], newPgFloor(b, lockEp.Postgres[0].DSN, c.params["floor"]))
			}
			continue
		}
		info, err := lock.Lookup(c.impl)
		if err != nil {
			b.Fatal(err)
		}
		p := map[string]string{}
		for n, v := range c.params {
			p[n] = v
		}
		if _, ok := info.Options.Lookup(lock.OptIO); ok && clients == 1 {
			p[lock.OptIO] = lock.IOBlocking // as a 1-client run does
		}
		for range clients {
			lockers[k] = append(lockers[k], newLockerOn(b, info, endpointsFor(info, lockEp), lock.Options{Params: p}))
		}
	}
	e := ep.Redis[1]
	counter := redis.NewClient(&redis.Options{Addr: e.Addr, Password: e.Password, MaxRetries: -1, Protocol: 2, DisableIdentity: true,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, PoolSize: clients})
	b.Cleanup(func() { _ = counter.Close() })
	base := uniqueKey(b)
	type tally struct {
		cycles, mallocs int64
		took, cliCPU    time.Duration
		srv             nodeStats
		waits           []time.Duration
	}
	ts := make([]tally, len(cs))
	n := 0
	for b.Loop() {
		for j := range cs {
			k := (j + n) % len(cs)
			before := nodeUse(b, lockEp)
			cli := processCPU(b)
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			c, d, waits := pairPhase(b, lockers[k], counter, fmt.Sprintf("%s-%s", base, cs[k].label), keys, phase)
			runtime.ReadMemStats(&ms1)
			t := &ts[k]
			t.cliCPU += processCPU(b) - cli
			after := nodeUse(b, lockEp)
			t.srv.add(after.sub(before))
			t.mallocs += int64(ms1.Mallocs - ms0.Mallocs)
			t.cycles += c
			t.took += d
			t.waits = append(t.waits, waits...)
		}
		n++
	}
	rate := func(k int) float64 { return float64(ts[k].cycles) / ts[k].took.Seconds() }
	for k, c := range cs {
		t := ts[k]
		per := func(v float64) float64 { return v / float64(t.cycles) }
		b.ReportMetric(rate(k), c.label+"-cycles/s")
		if k > 0 {
			b.ReportMetric(rate(k)/rate(0), c.label+"-x-"+cs[0].label)
		}
		slices.Sort(t.waits)
		if len(t.waits) > 0 {
			b.ReportMetric(float64(t.waits[len(t.waits)/2].Nanoseconds())/1e3, c.label+"-acq-p50-µs")
		}
		b.ReportMetric(per(float64(t.mallocs)), c.label+"-allocs/cycle")
		b.ReportMetric(per(float64(t.cliCPU.Microseconds())), c.label+"-cli-cpu-µs/cycle")
		if len(lockEp.Redis) > 0 && strings.HasPrefix(c.impl, "redis") {
			b.ReportMetric(per(float64(t.srv.calls)), c.label+"-lock-cmds/cycle")
			b.ReportMetric(per(float64(t.srv.byCmd["set"])), c.label+"-set/cycle")
			b.ReportMetric(per(float64(t.srv.byCmd["evalsha"]+t.srv.byCmd["eval"])), c.label+"-evalsha/cycle")
			b.ReportMetric(per(float64(t.srv.cpu.Microseconds())), c.label+"-srv-cpu-µs/cycle")
		}
		if strings.HasPrefix(c.impl, "pg") {
			b.ReportMetric(per(float64(t.srv.wal)), c.label+"-wal-B/cycle")
		}
	}
}

// pairPhase runs counter cycles on every Locker of ls at once for d and
// returns how many completed, how long the phase took and every Acquire's
// wall time.
func pairPhase(b *testing.B, ls []lock.Locker, counter *redis.Client, base string, keys int, d time.Duration) (int64, time.Duration, []time.Duration) {
	var done atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []time.Duration
	start := time.Now()
	stop := start.Add(d)
	for c, l := range ls {
		wg.Go(func() {
			waits := make([]time.Duration, 0, 4096)
			i := c
			for time.Now().Before(stop) {
				key := base + "-" + strconv.Itoa(i%keys)
				i += 7
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t0 := time.Now()
				lease, err := l.Acquire(ctx, key, time.Second)
				waits = append(waits, time.Since(t0))
				if err == nil {
					err = counterRW(ctx, counter, key)
					if rerr := l.Release(ctx, lease); err == nil && rerr != nil {
						err = fmt.Errorf("release: %w", rerr)
					}
				}
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
				done.Add(1)
			}
			mu.Lock()
			all = append(all, waits...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return done.Load(), time.Since(start), all
}

func counterRW(ctx context.Context, counter *redis.Client, key string) error {
	v, err := counter.Get(ctx, key+"-counter").Int64()
	if err != nil && err != redis.Nil {
		return fmt.Errorf("counter GET: %w", err)
	}
	if err := counter.Set(ctx, key+"-counter", v+1, time.Minute).Err(); err != nil {
		return fmt.Errorf("counter SET: %w", err)
	}
	return nil
}

// nodeStats is what the lock's servers report of themselves: Redis
// commands served in total and by name (INFO commandstats, the INFO call
// itself included), Redis CPU time (INFO cpu), PostgreSQL WAL bytes.
type nodeStats struct {
	calls int64
	byCmd map[string]int64
	cpu   time.Duration
	wal   int64
}

func (s *nodeStats) add(o nodeStats) {
	s.calls += o.calls
	s.cpu += o.cpu
	s.wal += o.wal
	if s.byCmd == nil {
		s.byCmd = map[string]int64{}
	}
	for k, v := range o.byCmd {
		s.byCmd[k] += v
	}
}

func (s nodeStats) sub(o nodeStats) nodeStats {
	d := nodeStats{calls: s.calls - o.calls - 1, cpu: s.cpu - o.cpu, wal: s.wal - o.wal, byCmd: map[string]int64{}}
	for k, v := range s.byCmd {
		d.byCmd[k] = v - o.byCmd[k]
	}
	d.byCmd["info"]--
	return d
}

func nodeUse(b *testing.B, ep lock.Endpoints) nodeStats {
	b.Helper()
	st := nodeStats{byCmd: map[string]int64{}}
	if len(ep.Redis) > 0 {
		c := benchRedis(b, ep.Redis[0])
		s, err := c.Info(context.Background(), "commandstats", "cpu").Result()
		if err != nil {
			b.Fatalf("INFO: %v", err)
		}
		for _, line := range strings.Split(s, "\n") {
			line = strings.TrimSpace(line)
			if name, rest, ok := strings.Cut(line, ":calls="); ok {
				v, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
				st.calls += v
				st.byCmd[strings.TrimPrefix(name, "cmdstat_")] += v
				continue
			}
			name, v, ok := strings.Cut(line, ":")
			if ok && (name == "used_cpu_sys" || name == "used_cpu_user") {
				f, _ := strconv.ParseFloat(v, 64)
				st.cpu += time.Duration(f * float64(time.Second))
			}
		}
	}
	if len(ep.Postgres) > 0 {
		st.wal = pgWAL(b, ep.Postgres[0].DSN)
	}
	return st
}

// pgWAL is the server's current WAL position in bytes.
func pgWAL(b *testing.B, dsn string) int64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatalf("pg connect: %v", err)
	}
	defer c.Close(ctx)
	var n int64
	if err := c.QueryRow(ctx, `SELECT pg_current_wal_lsn() - '0/0'::pg_lsn`).Scan(&n); err != nil {
		b.Fatalf("pg_current_wal_lsn: %v", err)
	}
	return n
}

// pgFloor is no lock at all, for the benchmarks: "write" makes one
// single-row UPDATE (a durable write: transaction id, WAL, commit record)
// per acquire and per release, "read" one SELECT each (what pg-advisory's
// two calls cost without the lock); each on one dedicated connection, as
// the PostgreSQL locks have. It promises nothing.
type pgFloor struct {
	c    *pgx.Conn
	mode string
}

func newPgFloor(b *testing.B, dsn, mode string) *pgFloor {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS faultline_bench_floor (key text PRIMARY KEY, n bigint NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	return &pgFloor{c: c, mode: mode}
}

func (f *pgFloor) step(ctx context.Context, key string) error {
	if f.mode == "read" {
		var n int
		return f.c.QueryRow(ctx, `SELECT length($1::text)`, key).Scan(&n)
	}
	_, err := f.c.Exec(ctx, `INSERT INTO faultline_bench_floor AS f (key, n) VALUES ($1, 1) ON CONFLICT (key) DO UPDATE SET n = f.n + 1`, key)
	return err
}

func (f *pgFloor) Acquire(ctx context.Context, key string, ttl time.Duration) (lock.Lease, error) {
	return f.TryAcquire(ctx, key, ttl)
}

func (f *pgFloor) TryAcquire(ctx context.Context, key string, ttl time.Duration) (lock.Lease, error) {
	return lock.Lease{Key: key}, f.step(ctx, key)
}

func (f *pgFloor) Release(ctx context.Context, l lock.Lease) error { return f.step(ctx, l.Key) }

func (f *pgFloor) Refresh(ctx context.Context, l lock.Lease, ttl time.Duration) (lock.Lease, error) {
	return l, nil
}

func (f *pgFloor) Close() error { return nil }
