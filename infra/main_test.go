package infra

import (
	"context"
	"os"
	"testing"
	"time"

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
