package chaos

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/infra"
	"github.com/redis/go-redis/v9"
)

// TestLiveFaults applies real faults to real Redis servers started through
// infra (local processes behind Toxiproxy) and checks each from a client.
func TestLiveFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis servers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := infra.Up(ctx, infra.Spec{Nodes: infra.RedisNodes(3), Provider: "local"})
	if err != nil {
		t.Fatalf("infra.Up: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	client := func(name string, timeout time.Duration) *redis.Client {
		n, ok := env.Node(name)
		if !ok {
			t.Fatalf("no node %s", name)
		}
		c := redis.NewClient(&redis.Options{Addr: n.Addr(), Password: n.Password(), MaxRetries: -1,
			DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolSize: 1})
		t.Cleanup(func() { c.Close() })
		return c
	}
	// ping times one PING on a fresh connection.
	ping := func(name string, timeout time.Duration) (time.Duration, error) {
		c := client(name, timeout)
		defer c.Close()
		start := time.Now()
		err := c.Ping(ctx).Err()
		return time.Since(start), err
	}
	mustPing := func(name string) time.Duration {
		t.Helper()
		d, err := ping(name, 2*time.Second)
		if err != nil {
			t.Fatalf("%s does not answer: %v", name, err)
		}
		return d
	}
	nodes := func(target string) []infra.Node {
		n, err := ResolveNodes(env, target)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("latency", func(t *testing.T) {
		c := client("redis-1", 2*time.Second)
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		f := NewLatency("live", nodes("redis-1"), 150*time.Millisecond, 10*time.Millisecond, "")
		if err := f.Start(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err := c.Ping(ctx).Err() // on a connection opened before the fault
		during := time.Since(start)
		if herr := f.Heal(ctx); herr != nil {
			t.Fatal(herr)
		}
		if err != nil || during < 130*time.Millisecond || during > time.Second {
			t.Errorf("PING under 150ms±10ms latency took %v (%v)", during, err)
		}
		start = time.Now()
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if after := time.Since(start); after > 100*time.Millisecond {
			t.Errorf("PING after heal took %v", after)
		}
		t.Logf("PING with latency fault %v, after heal %v", during, time.Since(start))
	})

	t.Run("partition hangs, partition-refuse refuses", func(t *testing.T) {
		f := NewPartition("live", nodes("redis-2"))
		if err := f.Start(ctx); err != nil {
			t.Fatal(err)
		}
		d, err := ping("redis-2", 300*time.Millisecond)
		if herr := f.Heal(ctx); herr != nil {
			t.Fatal(herr)
		}
		if err == nil || d < 250*time.Millisecond {
			t.Errorf("PING across a blackhole: %v after %v, want a timeout", err, d)
		}
		mustPing("redis-2")

		r := NewPartitionRefuse(nodes("redis-2"))
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		d, err = ping("redis-2", 2*time.Second)
		if herr := r.Heal(ctx); herr != nil {
			t.Fatal(herr)
		}
		if err == nil || d > time.Second {
			t.Errorf("PING to a refusing node: %v after %v, want a quick refusal", err, d)
		}
		mustPing("redis-2")
	})

	t.Run("pause", func(t *testing.T) {
		f := NewPause(nodes("redis-3"))
		if err := f.Start(ctx); err != nil {
			t.Fatal(err)
		}
		_, err := ping("redis-3", 300*time.Millisecond)
		if herr := f.Heal(ctx); herr != nil {
			t.Fatal(herr)
		}
		var nerr interface{ Timeout() bool }
		if err == nil || !(errors.As(err, &nerr) && nerr.Timeout()) {
			t.Errorf("PING to a paused server: %v, want a timeout", err)
		}
		mustPing("redis-3")
	})

	t.Run("kill restarts empty, through Run", func(t *testing.T) {
		c := client("redis-2", 2*time.Second)
		if err := c.Set(ctx, "survivor", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		var ev events
		runDone := make(chan struct{})
		var windows []liveWindow
		var runErr error
		go func() {
			defer close(runDone)
			ws, err := Run(ctx, mustSchedule(t, "kill:redis-2@0s+500ms"), env, nil, ev.record, RunOptions{})
			runErr = err
			for _, w := range ws {
				windows = append(windows, liveWindow{w.Fault, w.Start, w.End})
			}
		}()
		// Poll until the node stops answering (the kill landed), with a deadline.
		deadline := time.Now().Add(2 * time.Second)
		down := false
		for time.Now().Before(deadline) && !down {
			_, err := ping("redis-2", 100*time.Millisecond)
			down = err != nil
		}
		<-runDone
		if runErr != nil {
			t.Fatal(runErr)
		}
		if !down {
			t.Error("redis-2 kept answering during the kill")
		}
		mustPing("redis-2")
		n, err := c.Exists(ctx, "survivor").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Error("a killed Redis without persistence came back with its data")
		}
		if len(windows) != 1 || windows[0].End-windows[0].Start < int64(500*time.Millisecond) {
			t.Errorf("windows %+v", windows)
		}
		ops := ev.list()
		if len(ops) != 2 || ops[0].Heal || !ops[1].Heal || strings.Join(ops[0].Nodes, ",") != "redis-2" {
			t.Errorf("events %+v", ops)
		}
	})

	t.Run("run end heals everything", func(t *testing.T) {
		rctx, rcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer rcancel()
		_, err := Run(rctx, mustSchedule(t, "pause:redis-1@0s", "partition:redis-2@0s", "kill:redis-3@0s", "latency:all=300ms@0s"), env, nil, nil, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"redis-1", "redis-2", "redis-3"} {
			if d := mustPing(n); d > 200*time.Millisecond {
				t.Errorf("%s answers in %v after the run: latency not healed", n, d)
			}
		}
	})
}

// liveWindow is a fault window as the live test sees it.
type liveWindow struct {
	Fault      string
	Start, End int64
}
