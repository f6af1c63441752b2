package infra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// childEnvVar switches the test binary into the SIGINT-cleanup child (see
// cleanup_test.go): its value is the provider name.
const childEnvVar = "FAULTLINE_INFRA_CLEANUP_CHILD"

// childTopologyEnvVar is the topology the cleanup child starts ("" = independent nodes).
const childTopologyEnvVar = "FAULTLINE_INFRA_CLEANUP_TOPOLOGY"

func TestMain(m *testing.M) {
	if p := os.Getenv(childEnvVar); p != "" {
		os.Exit(cleanupChild(p))
	}
	os.Exit(m.Run())
}

// upLocal starts a local environment for a test and closes it at the end.
func upLocal(t testing.TB, spec Spec) *Env {
	t.Helper()
	spec.Provider = "local"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	env, err := Up(ctx, spec)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return env
}

// redisClient is a go-redis client as the harness uses it: no retries,
// explicit timeouts, one connection.
func redisClient(t testing.TB, addr, password string, readTimeout time.Duration) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:         addr,
		Password:     password,
		MaxRetries:   -1,
		DialTimeout:  2 * time.Second,
		ReadTimeout:  readTimeout,
		WriteTimeout: readTimeout,
		PoolSize:     1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func mustNode(t testing.TB, env *Env, name string) Node {
	t.Helper()
	n, ok := env.Node(name)
	if !ok {
		t.Fatalf("no node %q", name)
	}
	return n
}

// assertGone checks that none of the processes and none of the dirs exist.
func assertGone(t *testing.T, pids []int, dirs []string) {
	t.Helper()
	for _, p := range pids {
		if procAlive(p) {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
			t.Errorf("process %d still alive: %s", p, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
		}
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temp dir %s still there (%v)", d, err)
		}
	}
}

func medianPing(t *testing.T, c *redis.Client, n int) time.Duration {
	t.Helper()
	ds := make([]time.Duration, n)
	for i := range ds {
		start := time.Now()
		if err := c.Ping(context.Background()).Err(); err != nil {
			t.Fatalf("PING: %v", err)
		}
		ds[i] = time.Since(start)
	}
	slices.Sort(ds)
	return ds[n/2]
}

func pgQueryInt(ctx context.Context, dsn, sql string, v *int) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, sql).Scan(v)
}

// openTempDir is t.TempDir made reachable for the unprivileged user the
// local provider runs servers as when the tests run as root.
func openTempDir(t *testing.T) string {
	tmp := t.TempDir()
	for _, d := range []string{tmp, filepath.Dir(tmp)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return tmp
}
