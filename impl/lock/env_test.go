package lock_test

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/infra"
	"github.com/redis/go-redis/v9"
)

// testEnv is the one environment every test and benchmark of this package
// shares: 5 Redis masters and 1 PostgreSQL, started once in TestMain.
var testEnv struct {
	env     *infra.Env
	err     error
	direct  lock.Endpoints // straight to the servers
	proxied lock.Endpoints // through each node's Toxiproxy proxy
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("impl/lock: -short: skipping the suites that need real servers")
	}
	var env *infra.Env
	if !testing.Short() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		env, testEnv.err = infra.Up(ctx, infra.Spec{Nodes: infra.Nodes(5, 1), Provider: "local"})
		cancel()
		if testEnv.err == nil {
			testEnv.env = env
			for _, n := range env.ByKind(infra.Redis) {
				testEnv.direct.Redis = append(testEnv.direct.Redis, lock.RedisEndpoint{Name: n.Name(), Addr: n.DirectAddr(), Password: n.Password()})
				testEnv.proxied.Redis = append(testEnv.proxied.Redis, lock.RedisEndpoint{Name: n.Name(), Addr: n.Addr(), Password: n.Password()})
			}
			for _, n := range env.ByKind(infra.Postgres) {
				testEnv.direct.Postgres = append(testEnv.direct.Postgres, lock.PostgresEndpoint{Name: n.Name(), DSN: n.DirectDSN()})
				testEnv.proxied.Postgres = append(testEnv.proxied.Postgres, lock.PostgresEndpoint{Name: n.Name(), DSN: n.DSN()})
			}
		}
	}
	code := m.Run()
	if env != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := env.Close(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "impl/lock: closing the test environment:", err)
		}
		cancel()
	}
	os.Exit(code)
}

// needEnv skips in -short mode and fails when the servers did not start.
func needEnv(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs real Redis and PostgreSQL servers (not in -short mode)")
	}
	if testEnv.err != nil {
		tb.Fatalf("test environment did not start: %v", testEnv.err)
	}
}

// endpointsFor trims the shared endpoints to what info needs.
func endpointsFor(info lock.Info, ep lock.Endpoints) lock.Endpoints {
	var out lock.Endpoints
	out.Redis = ep.Redis[:info.RedisNodes]
	out.Postgres = ep.Postgres[:info.PostgresNodes]
	return out
}

// newLocker makes a Locker of info on the direct endpoints, closed at the
// end of the test.
//
// Making one is setup, not what a test checks, and is bounded by
// newLockerTimeout: an exec: Locker starts its interpreter and answers init
// within it (/usr/bin/python3 importing redis took 1.5-3.3 s at load 14-20
// on 2 cores, and the former 5 s failed TestExecConformance/my_lock.py's
// init in CI), so it is execFactory's own default for a caller without a
// deadline. A Locker that never gets ready still fails the test. For the
// same reason a PostgreSQL Locker's connect gets setupDialTimeout unless the
// test sets dial-timeout: PostgreSQL's SASL handshake outlasted the default
// 1 s at load ~30 (3 of 60 runs of TestConformance/pg-advisory/watchdog
// failed in newLocker, "failed SASL auth: timeout").
func newLocker(tb testing.TB, info lock.Info, opt lock.Options) lock.Locker {
	tb.Helper()
	if _, ok := info.Options.Lookup("dial-timeout"); ok && info.PostgresNodes > 0 && opt.Params["dial-timeout"] == "" {
		opt.Params = maps.Clone(opt.Params)
		if opt.Params == nil {
			opt.Params = map[string]string{}
		}
		opt.Params["dial-timeout"] = setupDialTimeout
	}
	return newLockerOn(tb, info, endpointsFor(info, testEnv.direct), opt)
}

const setupDialTimeout = "10s"

const newLockerTimeout = 30 * time.Second

func newLockerOn(tb testing.TB, info lock.Info, ep lock.Endpoints, opt lock.Options) lock.Locker {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), newLockerTimeout)
	defer cancel()
	l, err := info.New(ctx, ep, opt)
	if err != nil {
		tb.Fatalf("%s: new locker: %v", info.Name, err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	return l
}

// rawRedis is a plain client on redis-1 (direct), for checking keys.
func rawRedis(tb testing.TB, i int) *redis.Client {
	tb.Helper()
	ep := testEnv.direct.Redis[i]
	c := redis.NewClient(&redis.Options{Addr: ep.Addr, Password: ep.Password, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, Protocol: 2, DisableIdentity: true})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// uniqueKey is a key no other test uses.
func uniqueKey(tb testing.TB) string {
	return fmt.Sprintf("%s-%d", tb.Name(), time.Now().UnixNano())
}

// elapse lets d of wall time pass (the point of the wait is the time itself:
// a ttl running out), bounded by the test's own timeout.
func elapse(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	<-t.C
}

// ctxFor is a context with timeout d, cancelled at the end of the test.
func ctxFor(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}
