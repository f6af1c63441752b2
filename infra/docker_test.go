package infra

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/jackc/pgx/v5"
	"github.com/moby/moby/client"
	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
)

var (
	dockerImagesOnce sync.Once
	dockerImagesErr  error
)

// requireDocker skips the test only when no docker engine answers. When the
// engine answers but the images are missing, it builds them with
// scripts/build-images.sh (once per test binary) and fails if that fails.
func requireDocker(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	ok, why := dockerAvailable(ctx, Spec{})
	if ok {
		return
	}
	if strings.HasPrefix(why, "no docker engine") {
		t.Skipf("docker provider tests skipped: %s", why)
	}
	dockerImagesOnce.Do(func() {
		bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		script, _ := filepath.Abs(filepath.Join("..", "scripts", "build-images.sh"))
		out, err := exec.CommandContext(bctx, "bash", script).CombinedOutput()
		if err != nil {
			dockerImagesErr = errors.New("scripts/build-images.sh failed: " + err.Error() + "\n" + string(out))
		}
		t.Logf("built images (%s):\n%s", why, out)
	})
	if dockerImagesErr != nil {
		t.Fatal(dockerImagesErr)
	}
	if ok, why := dockerAvailable(ctx, Spec{}); !ok {
		t.Fatalf("docker provider unusable after building the images: %s", why)
	}
}

func testRedisClient(addr, password string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, Password: password, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond,
		PoolSize: 1,
	})
}

// eventually polls f until it returns nil or d passes.
func eventually(t testing.TB, d time.Duration, what string, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = f(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatalf("%s: test ended: %v", what, err)
		}
	}
	t.Fatalf("%s: still failing after %s: %v", what, d, err)
}

// startDockerPair starts one Redis and one PostgreSQL container with p, in
// parallel, and returns them once both are ready.
func startDockerPair(t testing.TB, ctx context.Context, p provider, appendOnly bool) (r, pg *dockerServer, took time.Duration) {
	t.Helper()
	t0 := time.Now()
	var wg sync.WaitGroup
	var rs, ps server
	var rerr, perr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		rs, rerr = p.startRedis(ctx, serverConfig{Name: "redis-1", Password: "pw-" + randomHex(8), AppendOnly: appendOnly, ReadyTimeout: 30 * time.Second})
	}()
	go func() {
		defer wg.Done()
		ps, perr = p.startPostgres(ctx, serverConfig{Name: "pg-1", Password: "pw-" + randomHex(8), ReadyTimeout: 30 * time.Second})
	}()
	wg.Wait()
	took = time.Since(t0)
	for _, s := range []server{rs, ps} {
		if s != nil {
			t.Cleanup(func() {
				if err := s.destroy(context.Background()); err != nil {
					t.Errorf("destroy: %v", err)
				}
			})
		}
	}
	if err := errors.Join(rerr, perr); err != nil {
		t.Fatalf("start: %v", err)
	}
	return rs.(*dockerServer), ps.(*dockerServer), took
}

func newTestDockerProvider(t testing.TB) *dockerProvider {
	t.Helper()
	requireDocker(t)
	p, err := newDockerProvider(context.Background(), Spec{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.close(context.Background()); err != nil {
			t.Errorf("provider close: %v", err)
		}
		assertNoContainers(t, LabelRun+"="+p.(*dockerProvider).runID)
	})
	return p.(*dockerProvider)
}

// assertNoContainers fails if any container matches the label filter.
func assertNoContainers(t testing.TB, label string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := dockerClient(ctx)
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	defer cli.Close()
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", label)})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	for _, c := range list.Items {
		t.Errorf("container %v (%s) labelled %s remains", c.Names, c.ID[:12], label)
	}
}

func hostPort(t testing.TB, addr string) string {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil || h != "127.0.0.1" {
		t.Fatalf("address %q: want 127.0.0.1:<port> (err %v)", addr, err)
	}
	return p
}

// TestDockerServers drives the provider's servers directly: versions,
// kill+start (PostgreSQL keeps its data and its prepared transactions, Redis
// without persistence loses its data), pause (a client times out) and resume,
// stop+start, destroy (also of a paused container, twice).
func TestDockerServers(t *testing.T) {
	if testing.Short() {
		t.Skip("docker provider tests are slow; skipped in -short")
	}
	for _, tc := range []struct {
		name           string
		appendOnly     bool
		redisKeepsData bool
	}{
		{"redis-no-persistence", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			p := newTestDockerProvider(t)
			r, pg, took := startDockerPair(t, ctx, p, tc.appendOnly)
			t.Logf("1 redis + 1 postgres containers ready in %s (redis %s, postgres %s)", took.Round(time.Millisecond), r.version(), pg.version())
			if !strings.HasPrefix(r.version(), "7.") || !strings.HasPrefix(pg.version(), "15.") {
				t.Errorf("versions: redis %q, postgres %q; want 7.x and 15.x", r.version(), pg.version())
			}

			// Redis: write, kill, start.
			rc := testRedisClient(r.addr(), r.cfg.Password)
			defer rc.Close()
			if err := rc.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatalf("redis SET: %v", err)
			}
			// PostgreSQL: a committed row and a prepared transaction.
			pgc, err := pgx.Connect(ctx, pg.dsn())
			if err != nil {
				t.Fatalf("pg connect: %v", err)
			}
			for _, q := range []string{
				"CREATE TABLE t (x int)", "INSERT INTO t VALUES (42)",
				"BEGIN", "INSERT INTO t VALUES (7)", "PREPARE TRANSACTION 'g1'",
			} {
				if _, err := pgc.Exec(ctx, q); err != nil {
					t.Fatalf("pg %q: %v", q, err)
				}
			}
			pgc.Close(ctx)

			oldR, oldPG := hostPort(t, r.addr()), hostPort(t, pg.addr())
			for _, s := range []*dockerServer{r, pg} {
				if err := s.kill(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := rc.Ping(ctx).Err(); err == nil {
				t.Fatal("redis answered PING after kill")
			}
			for _, s := range []*dockerServer{r, pg} {
				t0 := time.Now()
				if err := s.start(ctx); err != nil {
					t.Fatal(err)
				}
				t.Logf("%s restarted in %s", s.cfg.Name, time.Since(t0).Round(time.Millisecond))
			}
			if hostPort(t, r.addr()) == oldR || hostPort(t, pg.addr()) == oldPG {
				t.Errorf("host ports did not change across restart: redis %s→%s, pg %s→%s (docker maps a new ephemeral port)",
					oldR, r.addr(), oldPG, pg.addr())
			}
			rc2 := testRedisClient(r.addr(), r.cfg.Password)
			defer rc2.Close()
			got, err := rc2.Get(ctx, "k").Result()
			switch {
			case tc.redisKeepsData && (err != nil || got != "v"):
				t.Errorf("redis with AOF after kill+start: GET k = %q, %v; want \"v\"", got, err)
			case !tc.redisKeepsData && !errors.Is(err, redis.Nil):
				t.Errorf("redis without persistence after kill+start: GET k = %q, %v; want redis.Nil (data lost)", got, err)
			}
			pgc, err = pgx.Connect(ctx, pg.dsn())
			if err != nil {
				t.Fatalf("pg connect after restart: %v", err)
			}
			defer pgc.Close(context.Background())
			var sum, prepared int
			if err := pgc.QueryRow(ctx, "SELECT coalesce(sum(x),0) FROM t").Scan(&sum); err != nil || sum != 42 {
				t.Errorf("pg after kill+start: sum = %d, %v; want 42 (committed row kept, prepared one not visible)", sum, err)
			}
			if err := pgc.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_xacts WHERE gid='g1'").Scan(&prepared); err != nil || prepared != 1 {
				t.Errorf("pg after kill+start: prepared g1 count = %d, %v; want 1", prepared, err)
			}
			if _, err := pgc.Exec(ctx, "COMMIT PREPARED 'g1'"); err != nil {
				t.Errorf("COMMIT PREPARED after restart: %v", err)
			}

			// Pause: clients time out; resume heals.
			for _, s := range []*dockerServer{r, pg} {
				if err := s.pause(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := rc2.Ping(ctx).Err(); !isTimeout(err) {
				t.Errorf("redis PING while paused: %v; want a timeout", err)
			}
			qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			_, err = pgc.Exec(qctx, "SELECT 1")
			cancel()
			if err == nil || !(errors.Is(err, context.DeadlineExceeded) || isTimeout(err)) {
				t.Errorf("pg SELECT 1 while paused: %v; want a timeout", err)
			}
			for _, s := range []*dockerServer{r, pg} {
				if err := s.resume(ctx); err != nil {
					t.Fatal(err)
				}
			}
			rc3 := testRedisClient(r.addr(), r.cfg.Password)
			defer rc3.Close()
			eventually(t, 5*time.Second, "redis PING after resume", func(ctx context.Context) error { return rc3.Ping(ctx).Err() })
			eventually(t, 5*time.Second, "pg SELECT 1 after resume", func(ctx context.Context) error {
				c, err := pgx.Connect(ctx, pg.dsn())
				if err != nil {
					return err
				}
				defer c.Close(context.Background())
				var sum int
				if err := c.QueryRow(ctx, "SELECT sum(x) FROM t").Scan(&sum); err != nil {
					return err
				}
				if sum != 49 {
					t.Errorf("pg sum after COMMIT PREPARED = %d, want 49", sum)
				}
				return nil
			})

			// Graceful stop + start keeps PostgreSQL's data.
			if err := pg.stop(ctx); err != nil {
				t.Fatal(err)
			}
			if err := pg.start(ctx); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "pg data after stop+start", func(ctx context.Context) error {
				c, err := pgx.Connect(ctx, pg.dsn())
				if err != nil {
					return err
				}
				defer c.Close(context.Background())
				var n int
				return c.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n)
			})

			// destroy works on a paused container and is idempotent.
			if err := r.pause(ctx); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				if err := r.destroy(ctx); err != nil {
					t.Fatalf("destroy #%d: %v", i+1, err)
				}
			}
			if _, err := p.cli.ContainerInspect(ctx, r.id, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
				t.Errorf("container %s still there after destroy: %v", r.cname, err)
			}
		})
	}
}

// TestDockerRedisAOF: with Spec.RedisAppendOnly a killed Redis container
// comes back with its data (the AOF lives in the container's /data).
func TestDockerRedisAOF(t *testing.T) {
	if testing.Short() {
		t.Skip("docker provider tests are slow; skipped in -short")
	}
	ctx := t.Context()
	p := newTestDockerProvider(t)
	s, err := p.startRedis(ctx, serverConfig{Name: "redis-aof", Password: "pw-" + randomHex(8), AppendOnly: true, ReadyTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.destroy(context.Background())
	r := s.(*dockerServer)
	rc := testRedisClient(r.addr(), r.cfg.Password)
	defer rc.Close()
	if err := rc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.start(ctx); err != nil {
		t.Fatal(err)
	}
	rc2 := testRedisClient(r.addr(), r.cfg.Password)
	defer rc2.Close()
	if got, err := rc2.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("redis with AOF after kill+start: GET k = %q, %v; want \"v\"", got, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestDockerPortsLoopbackOnly: the host side of every mapping is 127.0.0.1;
// the labels are set; the version can also be read by exec.
func TestDockerPortsLoopbackOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("docker provider tests are slow; skipped in -short")
	}
	ctx := t.Context()
	p := newTestDockerProvider(t)
	s, err := p.startRedis(ctx, serverConfig{Name: "redis-lo", Password: "pw", ReadyTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.destroy(context.Background())
	in, err := p.cli.ContainerInspect(ctx, s.(*dockerServer).id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for port, bs := range in.Container.NetworkSettings.Ports {
		for _, b := range bs {
			if b.HostIP.String() != "127.0.0.1" {
				t.Errorf("port %s published on %s, want 127.0.0.1 only", port, b.HostIP)
			}
		}
	}
	// Images without the version label (e.g. the official ones): exec.
	if v := s.(*dockerServer).execVersion(ctx); !strings.HasPrefix(v, "7.") {
		t.Errorf("execVersion = %q, want 7.x", v)
	}
	labels := in.Container.Config.Labels
	if labels[LabelFaultline] != "1" || labels[LabelRun] != p.runID || labels[LabelPID] == "" {
		t.Errorf("labels %v: want %s=1, %s=%s, %s set", labels, LabelFaultline, LabelRun, p.runID, LabelPID)
	}
}

// TestDockerStartErrors: a missing image and a server that never becomes
// ready are clear errors, not hangs.
func TestDockerStartErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("docker provider tests are slow; skipped in -short")
	}
	ctx := t.Context()
	p := newTestDockerProvider(t)
	_, err := p.startRedis(ctx, serverConfig{Name: "redis-x", Password: "pw", Image: "faultline/does-not-exist:0"})
	if err == nil || !strings.Contains(err.Error(), "make images") || !strings.Contains(err.Error(), "redis-x") {
		t.Errorf("missing image: err = %v; want a message naming the node and make images", err)
	}
	// A server that exits at once (bad option): error with the log tail, fast.
	t0 := time.Now()
	_, err = p.start(ctx, serverConfig{Name: "redis-bad", Password: "pw", ReadyTimeout: 20 * time.Second}, Redis, p.redisImage,
		testContainerRequest(p.redisImage, []string{"redis-server", "--no-such-option", "1"}), redisContainerPort)
	if err == nil || !strings.Contains(err.Error(), "redis-bad") || !strings.Contains(err.Error(), "no-such-option") {
		t.Errorf("bad option: err = %v; want the node name and the log tail quoting the option", err)
	}
	t.Logf("the error a user sees:\n%v", err)
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("bad option took %s to fail; want fast (container exit noticed)", d)
	}
}

// TestDockerAvailable: the reasons auto-selection prints.
func TestDockerAvailable(t *testing.T) {
	requireDocker(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name   string
		spec   Spec
		ok     bool
		reason string
	}{
		{"default images", Spec{}, true, "docker engine answered and images faultline/redis:7, faultline/postgres:15 exist"},
		{"missing image", Spec{PostgresImage: "faultline/does-not-exist:0"}, false, "images missing: faultline/does-not-exist:0 (run make images)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason := dockerAvailable(ctx, tc.spec)
			if ok != tc.ok || !strings.Contains(reason, tc.reason) {
				t.Errorf("dockerAvailable = %v, %q; want %v, containing %q", ok, reason, tc.ok, tc.reason)
			}
		})
	}
	t.Run("env override", func(t *testing.T) {
		t.Setenv(EnvRedisImage, "faultline/nope:1")
		if ok, reason := dockerAvailable(ctx, Spec{}); ok || !strings.Contains(reason, "faultline/nope:1") {
			t.Errorf("with %s set: %v, %q; want not ok naming the image", EnvRedisImage, ok, reason)
		}
	})
	// A topology's peer links run on the in-network Toxiproxy: auto must
	// fall back to local processes when its image is missing, and only then.
	t.Run("topology needs the toxiproxy image", func(t *testing.T) {
		t.Setenv(EnvToxiproxyImage, "faultline/no-toxiproxy:0")
		if ok, reason := dockerAvailable(ctx, Spec{Topology: TopologyRedisSentinel}); ok || !strings.Contains(reason, "faultline/no-toxiproxy:0") {
			t.Errorf("redis-sentinel without the proxy image: %v, %q; want not ok naming it", ok, reason)
		}
		if ok, reason := dockerAvailable(ctx, Spec{}); !ok {
			t.Errorf("independent nodes need no proxy image: %v, %q", ok, reason)
		}
	})
}

// TestGC: containers matching the label go, others stay; temp dirs whose
// owner is gone go, ours stay.
func TestGC(t *testing.T) {
	if testing.Short() {
		t.Skip("docker provider tests are slow; skipped in -short")
	}
	ctx := t.Context()
	p := newTestDockerProvider(t)
	s, err := p.startRedis(ctx, serverConfig{Name: "redis-gc", Password: "pw", ReadyTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.kill(ctx); err != nil { // an exited container must go too
		t.Fatal(err)
	}

	root := t.TempDir()
	mk := func(name string) string {
		d := filepath.Join(root, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	ours := mk("faultline-ours")
	if err := markTempDirOwner(ours); err != nil {
		t.Fatal(err)
	}
	dead := mk("faultline-dead")
	if err := os.WriteFile(filepath.Join(dead, ownerFile), []byte("999999999 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	oldUnowned := mk("faultline-old")
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(oldUnowned, past, past); err != nil {
		t.Fatal(err)
	}
	freshUnowned := mk("faultline-fresh")
	other := mk("other-dir")

	removed, err := gc(ctx, LabelRun+"="+p.runID, root, time.Hour)
	if err != nil {
		t.Fatalf("gc: %v", err)
	}
	want := []string{"container " + s.(*dockerServer).cname, "dir " + dead, "dir " + oldUnowned}
	for _, w := range want {
		found := false
		for _, r := range removed {
			found = found || r == w
		}
		if !found {
			t.Errorf("gc removed %v; missing %q", removed, w)
		}
	}
	for _, d := range []string{ours, freshUnowned, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("gc removed %s, which it must keep: %v", d, err)
		}
	}
	for _, d := range []string{dead, oldUnowned} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s still exists after gc", d)
		}
	}
	assertNoContainers(t, LabelRun+"="+p.runID)
	if err := s.destroy(ctx); err != nil { // already gone: still fine
		t.Errorf("destroy after gc: %v", err)
	}
}

func testContainerRequest(img string, cmd []string) testcontainers.ContainerRequest {
	return testcontainers.ContainerRequest{Image: img, ExposedPorts: []string{redisContainerPort}, Cmd: cmd}
}

// The docker row of the SIGINT cleanup test (cleanup_test.go): the child runs
// with a run id chosen here, and after its exit no container it reported and
// no container labelled with that run id may remain.
func init() {
	var runID string
	cleanupCases = append(cleanupCases, cleanupCase{
		provider: "docker",
		skip: func(t *testing.T) {
			requireDocker(t)
			runID = "cleanup-" + randomHex(4)
			t.Setenv(EnvRunID, runID) // inherited by the child
		},
		check: func(t *testing.T, r childReport) {
			if len(r.Containers) != 2 {
				t.Errorf("child reported containers %v, want 2 (1 redis + 1 postgres)", r.Containers)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cli, err := dockerClient(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			for _, id := range r.Containers {
				if _, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
					t.Errorf("container %.12s of the child still exists (inspect: %v)", id, err)
				}
			}
			assertNoContainers(t, LabelRun+"="+runID)
		},
	})
}

// TestDockerEnv runs the docker provider through infra.Up: the proxied
// address stays put across kill+start while the container's host port
// changes; PostgreSQL keeps its data, Redis loses it; a paused node makes a
// client time out through the proxy and heals on resume.
func TestDockerEnv(t *testing.T) {
	if testing.Short() {
		t.Skip("docker provider tests are slow; skipped in -short")
	}
	requireDocker(t)
	ctx := t.Context()
	uctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	t0 := time.Now()
	env, err := Up(uctx, Spec{Nodes: Nodes(1, 1), Provider: "docker"})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Logf("docker environment (1 redis + 1 postgres) ready in %s; %s", time.Since(t0).Round(time.Millisecond), env.ProviderReason())
	instance := env.prov.(*dockerProvider).instance
	t.Cleanup(func() {
		if err := env.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertNoContainers(t, labelProvider+"="+instance)
	})
	if env.Provider() != "docker" || !strings.Contains(env.ProviderReason(), "docker engine answered") {
		t.Errorf("provider %q (%s), want docker", env.Provider(), env.ProviderReason())
	}
	if v := env.Versions(); !strings.HasPrefix(v["redis"], "7.") || !strings.HasPrefix(v["postgres"], "15.") {
		t.Errorf("versions %v, want redis 7.x and postgres 15.x", v)
	}
	rn, pn := mustNode(t, env, "redis-1"), mustNode(t, env, "pg-1")

	rc := testRedisClient(rn.Addr(), rn.Password())
	defer rc.Close()
	if err := rc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the proxy: %v", err)
	}
	if err := pgExec(ctx, pn.DSN(), "CREATE TABLE t (x int); INSERT INTO t VALUES (42)"); err != nil {
		t.Fatalf("pg through the proxy: %v", err)
	}

	type addrs struct{ proxied, direct string }
	before := map[string]addrs{}
	for _, n := range []Node{rn, pn} {
		before[n.Name()] = addrs{n.Addr(), n.DirectAddr()}
		if err := n.Kill(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []Node{rn, pn} {
		if err := n.Start(ctx); err != nil {
			t.Fatal(err)
		}
		b := before[n.Name()]
		if n.Addr() != b.proxied {
			t.Errorf("%s: proxied address changed across restart: %s → %s", n.Name(), b.proxied, n.Addr())
		}
		if n.DirectAddr() == b.direct {
			t.Errorf("%s: container host port unchanged across restart (%s); docker maps a new one, the proxy must follow", n.Name(), b.direct)
		}
		t.Logf("%s: proxied %s stays; direct %s → %s", n.Name(), n.Addr(), b.direct, n.DirectAddr())
	}
	rc2 := testRedisClient(rn.Addr(), rn.Password())
	defer rc2.Close()
	if got, err := rc2.Get(ctx, "k").Result(); !errors.Is(err, redis.Nil) {
		t.Errorf("redis after kill+start through the proxy: GET k = %q, %v; want redis.Nil (no persistence)", got, err)
	}
	var sum int
	if err := pgQueryInt(ctx, pn.DSN(), "SELECT sum(x) FROM t", &sum); err != nil || sum != 42 {
		t.Errorf("pg after kill+start through the proxy: sum = %d, %v; want 42", sum, err)
	}

	if err := rn.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rc2.Ping(ctx).Err(); !isTimeout(err) {
		t.Errorf("PING through the proxy while paused: %v; want a timeout", err)
	}
	if err := rn.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	rc3 := testRedisClient(rn.Addr(), rn.Password())
	defer rc3.Close()
	eventually(t, 5*time.Second, "PING after resume", func(ctx context.Context) error { return rc3.Ping(ctx).Err() })
}

// TestDockerAutoChoice: with an engine and the images, auto picks docker and
// says why.
func TestDockerAutoChoice(t *testing.T) {
	requireDocker(t)
	p, reason, err := chooseProvider(t.Context(), Spec{Nodes: Nodes(1, 0)}, upOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.close(context.Background())
	if p.name() != "docker" || !strings.Contains(reason, "docker engine answered and images") {
		t.Errorf("auto chose %s (%q); want docker with the reason", p.name(), reason)
	}
}

// TestDockerInitLeavesEnvAlone: dockerInit turns Ryuk off for
// testcontainers without leaving TESTCONTAINERS_RYUK_DISABLED set in the
// process (or its children); a value the user set stays as it was. No
// docker engine needed.
func TestDockerInitLeavesEnvAlone(t *testing.T) {
	before, wasSet := os.LookupEnv(envRyukDisabled)
	dockerInit()
	after, isSet := os.LookupEnv(envRyukDisabled)
	if isSet != wasSet || after != before {
		t.Errorf("%s after dockerInit = %q (set %v), want %q (set %v)", envRyukDisabled, after, isSet, before, wasSet)
	}
	if !wasSet && !testcontainers.ReadConfig().RyukDisabled {
		t.Errorf("testcontainers config has Ryuk on; dockerInit must turn it off")
	}
	out, err := exec.Command("sh", "-c", "echo ${"+envRyukDisabled+"-unset}").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); !wasSet && got != "unset" {
		t.Errorf("a child process sees %s=%s", envRyukDisabled, got)
	}
}
