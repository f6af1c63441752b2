//go:build unix

// Unix only: tests the local provider (local.go).

package infra

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// TestLocalEnv runs one local 1-Redis + 1-PostgreSQL environment through
// every node operation, in order (one start-up for all subtests).
func TestLocalEnv(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	env := upLocal(t, Spec{Nodes: Nodes(1, 1)})
	rn, pn := mustNode(t, env, "redis-1"), mustNode(t, env, "pg-1")
	ctx := context.Background()

	t.Run("metadata", func(t *testing.T) {
		if env.Provider() != "local" || !strings.Contains(env.ProviderReason(), "local") {
			t.Errorf("provider %q reason %q", env.Provider(), env.ProviderReason())
		}
		v := env.Versions()
		if v["redis"] == "" || v["redis"] == "unknown" || v["postgres"] == "" || v["postgres"] == "unknown" {
			t.Errorf("versions %v", v)
		}
		if len(env.Nodes()) != 2 || len(env.ByKind(Redis)) != 1 || len(env.ByKind(Postgres)) != 1 {
			t.Errorf("nodes %v", env.Nodes())
		}
		for _, n := range env.Nodes() {
			if !strings.HasPrefix(n.Addr(), "127.0.0.1:") || !strings.HasPrefix(n.DirectAddr(), "127.0.0.1:") || n.Addr() == n.DirectAddr() {
				t.Errorf("%s: addr %s direct %s", n.Name(), n.Addr(), n.DirectAddr())
			}
			if n.Proxy().Listen() != n.Addr() || len(n.Password()) < 16 {
				t.Errorf("%s: proxy listen %s, password %q", n.Name(), n.Proxy().Listen(), n.Password())
			}
		}
		if rn.DSN() != "" || !strings.Contains(pn.DSN(), pn.Addr()) || !strings.Contains(pn.DirectDSN(), pn.DirectAddr()) {
			t.Errorf("DSNs: redis %q pg %q / %q", rn.DSN(), pn.DSN(), pn.DirectDSN())
		}
		t.Logf("versions %v; %s", v, env.ProviderReason())
	})

	t.Run("ping through proxy and direct", func(t *testing.T) {
		for _, addr := range []string{rn.Addr(), rn.DirectAddr()} {
			if err := redisClient(t, addr, rn.Password(), time.Second).Ping(ctx).Err(); err != nil {
				t.Errorf("redis PING via %s: %v", addr, err)
			}
		}
		if err := redisClient(t, rn.Addr(), "wrong", time.Second).Ping(ctx).Err(); err == nil {
			t.Error("redis accepted a wrong password")
		}
		for _, dsn := range []string{pn.DSN(), pn.DirectDSN()} {
			if err := pgSelect1(ctx, dsn); err != nil {
				t.Errorf("postgres SELECT 1 via %s: %v", dsn, err)
			}
		}
		var mpt int
		if err := pgQueryInt(ctx, pn.DSN(), "SELECT current_setting('max_prepared_transactions')::int", &mpt); err != nil || mpt < 64 {
			t.Errorf("max_prepared_transactions = %d, %v", mpt, err)
		}
	})

	t.Run("latency toxic adds 100ms to PING", func(t *testing.T) {
		c := redisClient(t, rn.Addr(), rn.Password(), 2*time.Second)
		before := medianPing(t, c, 15)
		if err := rn.Proxy().AddToxic(ctx, Toxic{Name: "lat", Type: "latency", Attributes: map[string]any{"latency": 100}}); err != nil {
			t.Fatal(err)
		}
		with := medianPing(t, c, 5)
		if err := rn.Proxy().RemoveToxic(ctx, "lat"); err != nil {
			t.Fatal(err)
		}
		after := medianPing(t, c, 5)
		t.Logf("PING median: before %v, with 100ms latency toxic %v, after removal %v", before, with, after)
		if with-before < 100*time.Millisecond {
			t.Errorf("toxic raised PING by %v, want >= 100ms", with-before)
		}
		if after >= 50*time.Millisecond {
			t.Errorf("PING still slow after RemoveToxic: %v", after)
		}
	})

	t.Run("disabled proxy fails connects fast", func(t *testing.T) {
		if err := rn.Proxy().Disable(ctx); err != nil {
			t.Fatal(err)
		}
		c := redisClient(t, rn.Addr(), rn.Password(), time.Second)
		start := time.Now()
		err := c.Ping(ctx).Err()
		took := time.Since(start)
		t.Logf("PING with proxy disabled: %v after %v", err, took)
		if err == nil || took >= time.Second {
			t.Errorf("PING through a disabled proxy: err %v after %v, want an error in < 1s", err, took)
		}
		if err := rn.Proxy().Reset(ctx); err != nil { // Reset enables
			t.Fatal(err)
		}
		// A new client: go-redis's pool remembers the failed dials for a while.
		if err := redisClient(t, rn.Addr(), rn.Password(), time.Second).Ping(ctx).Err(); err != nil {
			t.Errorf("PING after Reset: %v", err)
		}
	})

	t.Run("pause makes clients time out, resume heals", func(t *testing.T) {
		// Each probe runs on a connection opened before the pause (a
		// paused server must freeze existing sessions too, not only refuse
		// new ones) and then on a new connection.
		type probe func(ctx context.Context) error
		cases := []struct {
			node Node
			open func(t *testing.T) (existing probe, fresh probe)
		}{
			{rn, func(t *testing.T) (probe, probe) {
				c := redisClient(t, rn.Addr(), rn.Password(), 300*time.Millisecond)
				return func(ctx context.Context) error { return c.Ping(ctx).Err() },
					func(ctx context.Context) error {
						return redisClient(t, rn.Addr(), rn.Password(), 300*time.Millisecond).Ping(ctx).Err()
					}
			}},
			{pn, func(t *testing.T) (probe, probe) {
				conn, err := pgx.Connect(ctx, pn.DSN())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close(context.Background()) })
				with300ms := func(ctx context.Context, f func(ctx context.Context) error) error {
					ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
					defer cancel()
					return f(ctx)
				}
				return func(ctx context.Context) error {
						return with300ms(ctx, func(ctx context.Context) error {
							var one int
							return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
						})
					}, func(ctx context.Context) error {
						return with300ms(ctx, func(ctx context.Context) error { return pgSelect1(ctx, pn.DSN()) })
					}
			}},
		}
		for _, tc := range cases {
			existing, fresh := tc.open(t)
			if err := existing(ctx); err != nil {
				t.Fatalf("%s before pause: %v", tc.node.Name(), err)
			}
			if err := tc.node.Pause(ctx); err != nil {
				t.Fatal(err)
			}
			for what, p := range map[string]probe{"existing connection": existing, "new connection": fresh} {
				start := time.Now()
				err := p(ctx)
				took := time.Since(start)
				var ne net.Error
				if err == nil || took < 250*time.Millisecond || took > 3*time.Second ||
					!(errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)) {
					t.Errorf("%s paused, %s: err %v after %v, want a timeout after ~300ms", tc.node.Name(), what, err, took)
				}
			}
			if err := tc.node.Resume(ctx); err != nil {
				t.Fatal(err)
			}
			if err := fresh(ctx); err != nil {
				t.Errorf("%s after resume: %v", tc.node.Name(), err)
			}
		}
	})

	t.Run("kill and start: postgres keeps committed data", func(t *testing.T) {
		addr := pn.Addr()
		if err := pgExec(ctx, pn.DSN(), "CREATE TABLE kept(v text); INSERT INTO kept VALUES ('committed')"); err != nil {
			t.Fatal(err)
		}
		if err := pn.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		if err := pgSelect1(ctx, pn.DSN()); err == nil {
			t.Error("SELECT 1 worked on a killed server")
		}
		if err := pn.Start(ctx); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := pgQueryInt(ctx, pn.DSN(), "SELECT count(*) FROM kept WHERE v = 'committed'", &n); err != nil || n != 1 {
			t.Errorf("after restart: %d rows, %v; want the committed row", n, err)
		}
		if pn.Addr() != addr {
			t.Errorf("proxied address changed: %s -> %s", addr, pn.Addr())
		}
	})

	t.Run("kill and start: redis without persistence loses data", func(t *testing.T) {
		c := redisClient(t, rn.Addr(), rn.Password(), time.Second)
		if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rn.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		if err := rn.Start(ctx); err != nil {
			t.Fatal(err)
		}
		c = redisClient(t, rn.Addr(), rn.Password(), time.Second)
		if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
			t.Errorf("GET k after restart: %v, want redis.Nil (data lost)", err)
		}
	})

	t.Run("restart on a taken port: the proxy follows", func(t *testing.T) {
		old, addr := rn.DirectAddr(), rn.Addr()
		if err := rn.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", old) // squat the server's old port
		if err != nil {
			t.Skipf("cannot take %s: %v", old, err)
		}
		defer l.Close()
		if err := rn.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if rn.DirectAddr() == old || rn.Addr() != addr {
			t.Errorf("direct %s -> %s, proxied %s -> %s", old, rn.DirectAddr(), addr, rn.Addr())
		}
		if err := redisClient(t, rn.Addr(), rn.Password(), time.Second).Ping(ctx).Err(); err != nil {
			t.Errorf("PING through the proxy after the move: %v", err)
		}
	})

	t.Run("stop and start", func(t *testing.T) {
		for _, n := range []Node{rn, pn} {
			if err := n.Stop(ctx); err != nil {
				t.Fatalf("%s stop: %v", n.Name(), err)
			}
			if err := n.Start(ctx); err != nil {
				t.Fatalf("%s start: %v", n.Name(), err)
			}
		}
		if err := pgSelect1(ctx, pn.DSN()); err != nil {
			t.Error(err)
		}
	})

	t.Run("close with paused nodes removes everything", func(t *testing.T) {
		var pids []int
		var dirs []string
		for _, n := range env.Nodes() {
			s := n.(*node).srv.(*localServer)
			pids, dirs = append(pids, s.pids()...), append(dirs, s.tempDirs()...)
			if err := n.Pause(ctx); err != nil {
				t.Fatal(err)
			}
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel() // Close must work with a cancelled context
		start := time.Now()
		if err := env.Close(cctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("Close with paused nodes took %v", time.Since(start))
		if err := env.Close(ctx); err != nil {
			t.Errorf("second Close: %v", err)
		}
		assertGone(t, pids, dirs)
		if _, err := net.DialTimeout("tcp", rn.Addr(), time.Second); err == nil {
			t.Error("proxy still listening after Close")
		}
	})
}

func pgSelect1(ctx context.Context, dsn string) error {
	var one int
	return pgQueryInt(ctx, dsn, "SELECT 1", &one)
}

// TestUpErrors: a missing binary or a server that is not ready in time is
// a quick error naming the node and the binary, and a failed Up leaves
// nothing behind.
func TestUpErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	cases := []struct {
		name  string
		spec  Spec
		opts  upOptions
		wants []string
	}{
		{"missing redis-server", Spec{Nodes: Nodes(1, 0)},
			upOptions{localBins: localBinaries{RedisServer: "/nonexistent/redis-server"}},
			[]string{"redis-1", "/nonexistent/redis-server", "make deps"}},
		{"missing postgres next to a good redis", Spec{Nodes: Nodes(1, 1)},
			upOptions{localBins: localBinaries{PostgresDir: "/nonexistent/pgbin"}},
			[]string{"pg-1", "/nonexistent/pgbin/postgres", "make deps"}},
		{"redis not ready in time", Spec{Nodes: Nodes(1, 0), ReadyTimeout: time.Nanosecond},
			upOptions{}, []string{"redis-1", "not ready within", "command:", "redis-server", "log tail"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmp := openTempDir(t)
			t.Setenv("TMPDIR", tmp)
			tc.spec.Provider = "local"
			before := LiveEnvs()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			env, err := up(ctx, tc.spec, tc.opts)
			took := time.Since(start)
			if err == nil {
				env.Close(ctx)
				t.Fatal("Up succeeded")
			}
			t.Logf("after %v: %v", took, err)
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q", w)
				}
			}
			if took > 10*time.Second {
				t.Errorf("took %v", took)
			}
			if left, _ := os.ReadDir(tmp); len(left) > 0 {
				t.Errorf("failed Up left %v in TMPDIR", left)
			}
			if LiveEnvs() != before {
				t.Errorf("live environments %d -> %d", before, LiveEnvs())
			}
		})
	}
}

func TestSpecValidation(t *testing.T) {
	cases := []struct {
		spec Spec
		want string
	}{
		{Spec{}, "no nodes"},
		{Spec{Nodes: []NodeSpec{{Name: "a", Kind: Redis}, {Name: "a", Kind: Postgres}}}, "used twice"},
		{Spec{Nodes: []NodeSpec{{Name: "a", Kind: "mysql"}}}, "unknown kind"},
		{Spec{Nodes: []NodeSpec{{Kind: Redis}}}, "no name"},
		{Spec{Nodes: Nodes(1, 0), Provider: "k8s"}, "unknown provider"},
	}
	for _, tc := range cases {
		_, err := Up(context.Background(), tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.spec, err, tc.want)
		}
	}
	got := Nodes(2, 1)
	want := []NodeSpec{{"redis-1", Redis}, {"redis-2", Redis}, {"pg-1", Postgres}}
	if !slices.Equal(got, want) {
		t.Errorf("Nodes(2,1) = %v", got)
	}
}

// TestPostgresDataPaths: a node's cluster comes from initdb (no cache) or
// from the template cache; with a TMPDIR too long for a unix
// socket path the socket gets a short dir of its own. Each way, the node
// takes its password over TCP and serves database faultline.
func TestPostgresDataPaths(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	cases := []struct {
		name, cache string
		longTmp     bool
	}{
		{"initdb per node", "off", false},
		{"template (built on first use), long TMPDIR", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cache != "" {
				t.Setenv("FAULTLINE_CACHE_DIR", tc.cache)
			}
			tmp := openTempDir(t)
			if tc.longTmp {
				tmp = filepath.Join(tmp, strings.Repeat("x", 100))
				if err := os.Mkdir(tmp, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("TMPDIR", tmp)
			start := time.Now()
			env := upLocal(t, Spec{Nodes: Nodes(0, 1)})
			t.Logf("up in %v", time.Since(start))
			pn := mustNode(t, env, "pg-1")
			var one int
			if err := pgQueryInt(context.Background(), pn.DSN(), "SELECT 1 WHERE current_database() = 'faultline'", &one); err != nil {
				t.Fatal(err)
			}
			wrong := strings.Replace(pn.DSN(), pn.Password(), "wrong", 1)
			if err := pgSelect1(context.Background(), wrong); err == nil {
				t.Error("a wrong password was accepted")
			}
			s := pn.(*node).srv.(*localServer)
			if got := s.sockDir != ""; got != tc.longTmp {
				t.Errorf("separate socket dir %q, want one: %v", s.sockDir, tc.longTmp)
			}
			dirs := s.tempDirs()
			if err := env.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			assertGone(t, nil, dirs)
		})
	}
}

// TestCloseAllOnPanic: a panic with CloseAllOnPanic deferred closes the
// live environments before it goes on.
func TestCloseAllOnPanic(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	env := upLocal(t, Spec{Nodes: Nodes(1, 0)})
	s := env.Nodes()[0].(*node).srv.(*localServer)
	pids, dirs := s.pids(), s.tempDirs()
	var got any
	func() {
		defer func() { got = recover() }()
		defer CloseAllOnPanic()
		panic("boom")
	}()
	if got != "boom" {
		t.Errorf("re-panicked with %v, want boom", got)
	}
	assertGone(t, pids, dirs)
	if LiveEnvs() != 0 {
		t.Errorf("%d environments still live", LiveEnvs())
	}
}

// TestAutoProvider: auto picks docker exactly when dockerAvailable says so,
// and the reason carries the explanation.
func TestAutoProvider(t *testing.T) {
	ctx := context.Background()
	spec := Spec{Nodes: Nodes(1, 0), Provider: "auto"}
	ok, why := dockerAvailable(ctx, spec)
	p, reason, err := chooseProvider(ctx, spec, upOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.close(ctx)
	want := map[bool]string{true: "docker", false: "local"}[ok]
	if p.name() != want || !strings.Contains(reason, why) || !strings.HasPrefix(reason, want+": auto") {
		t.Errorf("auto chose %s (%q); dockerAvailable = %v, %q", p.name(), reason, ok, why)
	}
	t.Logf("auto: %s", reason)
}

// TestCloseAllDuringUp: a CloseAll (what a signal triggers) while Up is
// still starting servers makes Up fail and leaves nothing behind.
func TestCloseAllDuringUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	tmp := openTempDir(t)
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type result struct {
		env *Env
		err error
	}
	res := make(chan result, 1)
	go func() {
		env, err := Up(ctx, Spec{Nodes: Nodes(2, 2), Provider: "local"})
		res <- result{env, err}
	}()
	// Close as soon as the first server's temp dir exists.
	err := pollEvery(ctx, time.Millisecond, nil, func(context.Context) error {
		if left, _ := os.ReadDir(tmp); len(left) == 0 {
			return errors.New("no server yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := CloseAll(ctx); err != nil {
		t.Errorf("CloseAll: %v", err)
	}
	r := <-res
	if r.err == nil {
		r.env.Close(ctx)
		t.Fatal("Up succeeded although the environment was closed while starting")
	}
	t.Logf("Up: %v", r.err)
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("left behind in TMPDIR: %v", left)
	}
	if LiveEnvs() != 0 {
		t.Errorf("%d environments still live", LiveEnvs())
	}
}

// TestBindFailureDetected: the log lines of a server that cannot bind its
// port are recognised (the start is retried on another port, or the error
// says "cannot bind").
func TestBindFailureDetected(t *testing.T) {
	cases := []struct {
		log  string
		want bool
	}{
		{"# Warning: Could not create server TCP listening socket 127.0.0.1:6379: bind: Address already in use", true},
		{`LOG:  could not bind IPv4 address "127.0.0.1": Address already in use`, true},
		{"FATAL:  could not create any TCP/IP sockets", true},
		{"* Ready to accept connections tcp", false},
		{"LOG:  database system is ready to accept connections", false},
	}
	for _, tc := range cases {
		if got := bindFailure.MatchString(tc.log); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.log, got, tc.want)
		}
	}
}
