package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// dockerCLI runs the docker CLI as a user would, bounded by a deadline.
func dockerCLI(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// userRedis starts a Redis container the way a team's would run (no
// persistence, a password, its port published on 127.0.0.1 on an
// ephemeral host port), removed when the test ends, and returns its name
// and a function giving its published address now.
func userRedis(t *testing.T, name, password string) (addr func() string) {
	t.Helper()
	dockerCLI(t, "run", "-d", "--name", name, "-p", "127.0.0.1::6379", "faultline/redis:7",
		"redis-server", "--bind", "0.0.0.0", "--port", "6379", "--requirepass", password, "--save", "", "--appendonly", "no")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = exec.CommandContext(ctx, "docker", "rm", "-f", name).Run()
	})
	addr = func() string { return strings.SplitN(dockerCLI(t, "port", name, "6379/tcp"), "\n", 2)[0] }
	c := redis.NewClient(&redis.Options{Addr: addr(), Password: password, MaxRetries: -1, DialTimeout: 2 * time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for c.Ping(ctx).Err() != nil {
		select {
		case <-ctx.Done():
			t.Fatalf("container %s: Redis never answered PING: %v", name, c.Ping(context.Background()).Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return addr
}

// The acceptance test of container=NAME on real containers: a run kills
// (pauses) redis-1's container through the Docker API; the node comes
// back on the port docker publishes anew and the proxy follows it; the
// verdicts are chaos/expected.md's for redis-setnx × kill on the counter
// (the only lock node down: acquires fail, no safety violation: the
// counter lives on redis-2, a server of its own); the container is left
// running, and nothing of faultline's is left on either server.
// It skips only when no docker engine answers.
func TestExternalContainer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containers (-short)")
	}
	requireDockerImage(t, "faultline/redis:7")
	const password = "s3cret-of-the-team"
	t.Setenv("FL_TEST_TEAM_REDIS_PW", password)
	c1, c2 := fmt.Sprintf("fl-ext-cache-%d", os.Getpid()), fmt.Sprintf("fl-ext-counter-%d", os.Getpid())
	addr1, addr2 := userRedis(t, c1, password), userRedis(t, c2, password)
	rc := func(addr string) *redis.Client {
		return redis.NewClient(&redis.Options{Addr: addr, Password: password, MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second})
	}
	other := rc(addr2())
	defer other.Close()
	if err := other.Set(context.Background(), "app:keep", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ kind, fault string }{
		{"kill", "kill:redis-1@1s+800ms"},
		{"pause", "pause:redis-1@1s+800ms"},
	} {
		t.Run(c.kind, func(t *testing.T) {
			before := addr1()
			dir := t.TempDir()
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"run", "--provider", "external",
				"--redis", before + "#container=" + c1 + "," + addr2(), "--redis-password-env", "FL_TEST_TEAM_REDIS_PW",
				"--impl", "redis-setnx", "--workload", "counter", "--clients", "4", "--keys", "2", "--duration", "4s",
				"--seed", "1", "--fault", c.fault, "--out", dir}, &stdout, &stderr)
			if code != exitOK {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
			}
			res, err := results.Load(filepath.Join(dir, results.FileName))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]results.Verdict{}
			for _, v := range res.Verdicts {
				got[v.Checker] = v
			}
			for _, ch := range []string{"mutual-exclusion", "lost-update"} {
				if got[ch].Valid != results.Valid {
					t.Errorf("%s %s (%s), want valid: the counter's server was not hit", ch, got[ch].Valid, got[ch].Summary)
				}
			}
			if v := got["availability"]; v.Valid != results.Invalid || !strings.Contains(v.Summary, c.kind+":redis-1") {
				t.Errorf("availability %s (%s), want the %s window's failed acquires", v.Valid, v.Summary, c.kind)
			}
			var window *results.FaultWindow
			for i, w := range res.Faults {
				if w.Kind == c.kind {
					window = &res.Faults[i]
				}
			}
			if window == nil {
				t.Fatalf("fault windows %+v: no %s", res.Faults, c.kind)
			}
			// The node came back through its proxy: acquires succeed after
			// the window (after a kill, on the port docker published anew).
			hp, err := history.Find(dir)
			if err != nil {
				t.Fatal(err)
			}
			ops, err := history.LoadImpl(hp, "redis-setnx")
			if err != nil {
				t.Fatal(err)
			}
			after := 0
			for _, op := range ops {
				if op.F == "acquire" && op.Type == history.OK && op.Time > window.End {
					after++
				}
			}
			if after == 0 {
				t.Errorf("no acquire succeeded after the %s window (ended %v): the node did not come back through its proxy", c.kind, time.Duration(window.End))
			}
			if now := addr1(); c.kind == "kill" {
				t.Logf("%s: published %s before, %s after the restart; %d acquires ok after the window", c.kind, before, now, after)
				if now == before {
					t.Log("docker kept the port: the port change was not exercised this time")
				}
			}
			if st := dockerCLI(t, "inspect", "-f", "{{.State.Running}} {{.State.Paused}}", c1); st != "true false" {
				t.Errorf("container %s running/paused %q after the run, want it running as found", c1, st)
			}
			noSecret(t, dir, stdout.String()+stderr.String(), password)
			for _, a := range []string{addr1(), addr2()} {
				cl := rc(a)
				keys, err := cl.Keys(context.Background(), "faultline:*").Result()
				cl.Close()
				if err != nil || len(keys) > 0 {
					t.Errorf("%s after the run: faultline keys %v (%v), want none", a, keys, err)
				}
			}
			if v, err := other.Get(context.Background(), "app:keep").Result(); err != nil || v != "1" {
				t.Errorf("the other application's key on redis-2: %q, %v", v, err)
			}
		})
	}
}

// userPostgres starts a PostgreSQL container as a team's would run (a
// password, its port published on an ephemeral 127.0.0.1 port), removed
// when the test ends, and returns a function giving its address now.
func userPostgres(t *testing.T, name, password string) (addr func() string) {
	t.Helper()
	dockerCLI(t, "run", "-d", "--name", name, "-p", "127.0.0.1::5432",
		"-e", "POSTGRES_PASSWORD="+password, "-e", "POSTGRES_USER=app", "-e", "POSTGRES_DB=app",
		"faultline/postgres:15", "postgres", "-c", "listen_addresses=*")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = exec.CommandContext(ctx, "docker", "rm", "-f", name).Run()
	})
	addr = func() string { return strings.SplitN(dockerCLI(t, "port", name, "5432/tcp"), "\n", 2)[0] }
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		// The image's entrypoint runs initdb on a socket-only server first:
		// ready is a query answered over TCP.
		c, err := pgx.Connect(ctx, "postgres://app:"+password+"@"+addr()+"/app?sslmode=disable&connect_timeout=2")
		if err == nil {
			err = c.QueryRow(ctx, "SELECT 1").Scan(new(int))
			c.Close(context.Background())
		}
		if err == nil {
			return addr
		}
		select {
		case <-ctx.Done():
			t.Fatalf("container %s: PostgreSQL never answered: %v", name, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// The PostgreSQL side of TestExternalContainer: pg-lease on the fenced
// counter, pg-1's container killed through the Docker API and followed to
// its new port; chaos/expected.md's pg-lease × kill (server down: acquires
// fail, no safety violation; the resource on pg-2, a server of its own);
// the container left running, no faultline schema left on either server.
func TestExternalContainerPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containers (-short)")
	}
	requireDockerImage(t, "faultline/postgres:15")
	const password = "s3cret-of-the-team"
	t.Setenv("FL_TEST_TEAM_PG_PW", password)
	c1, c2 := fmt.Sprintf("fl-ext-db-%d", os.Getpid()), fmt.Sprintf("fl-ext-resource-%d", os.Getpid())
	addr1, addr2 := userPostgres(t, c1, password), userPostgres(t, c2, password)
	before := addr1()
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"run", "--provider", "external",
		"--postgres", "postgres://app@" + before + "/app?sslmode=disable#container=" + c1 + ",postgres://app@" + addr2() + "/app?sslmode=disable",
		"--postgres-password-env", "FL_TEST_TEAM_PG_PW",
		"--impl", "pg-lease", "--workload", "fenced-counter", "--duration", "4s", "--clients", "4", "--keys", "2",
		"--seed", "1", "--fault", "kill:pg-1@1s+800ms", "--out", dir}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	res, err := results.Load(filepath.Join(dir, results.FileName))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]results.Verdict{}
	for _, v := range res.Verdicts {
		got[v.Checker] = v
	}
	for _, ch := range []string{"mutual-exclusion", "lost-update", "fencing", "fence-order"} {
		if got[ch].Valid != results.Valid {
			t.Errorf("%s %s (%s), want valid", ch, got[ch].Valid, got[ch].Summary)
		}
	}
	if v := got["availability"]; v.Valid != results.Invalid || !strings.Contains(v.Summary, "kill:pg-1") {
		t.Errorf("availability %s (%s), want the kill window's failed acquires", v.Valid, v.Summary)
	}
	t.Logf("published %s before, %s after the restart", before, addr1())
	noSecret(t, dir, stdout.String()+stderr.String(), password)
	// The targets are shown, as user@host:port/db (no password, no parameters).
	if c := res.Capabilities; c == nil || len(c.Targets) != 2 || !strings.HasPrefix(c.Targets[0], "pg-1=postgres://app@") ||
		strings.Contains(strings.Join(c.Targets, " "), "sslmode") {
		t.Errorf("results.json capabilities %+v: want the two targets as postgres://app@host:port/app", c)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "report.html")); err != nil || !strings.Contains(string(b), "postgres://app@") {
		t.Errorf("report.html does not show the targets (%v)", err)
	}
	if st := dockerCLI(t, "inspect", "-f", "{{.State.Running}} {{.State.Paused}}", c1); st != "true false" {
		t.Errorf("container %s running/paused %q after the run, want it running as found", c1, st)
	}
	for _, a := range []string{addr1(), addr2()} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := pgx.Connect(ctx, "postgres://app:"+password+"@"+a+"/app?sslmode=disable")
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		var n int
		err = c.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'faultline\_%'`).Scan(&n)
		c.Close(context.Background())
		cancel()
		if err != nil || n != 0 {
			t.Errorf("%s after the run: %d faultline schemas (%v), want none", a, n, err)
		}
	}
}

// noSecret fails when the run's output or a file of its directory
// (results.json, report.html) holds the password.
func noSecret(t *testing.T, dir, output, password string) {
	t.Helper()
	if strings.Contains(output, password) {
		t.Errorf("the run's output shows the password")
	}
	found := 0
	for _, name := range []string{results.FileName, "report.html"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		found++
		if strings.Contains(string(b), password) {
			t.Errorf("%s contains the password", name)
		}
	}
	if found != 2 {
		t.Errorf("%d of results.json and report.html written", found)
	}
}

// requireDockerImage skips the test when no docker engine answers and
// fails it when the engine lacks image (run scripts/build-images.sh).
func requireDockerImage(t *testing.T, image string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	cancel()
	if err != nil {
		t.Skipf("no docker engine answers: %v %s", err, out)
	}
	dockerCLI(t, "image", "inspect", "--format", "{{.Id}}", image) // missing: run scripts/build-images.sh
}
