package lock_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/infra"
)

// sentinelEndpoints are the Sentinel endpoints of a redis-sentinel
// environment, the peer addresses Sentinel names dialled through each
// node's client proxy.
func sentinelEndpoints(env *infra.Env) lock.Endpoints {
	master, sentinels := env.SentinelEndpoints()
	n, _ := env.Node("redis-1")
	d := &net.Dialer{Timeout: 2 * time.Second}
	return lock.Endpoints{Sentinel: &lock.SentinelEndpoint{
		Master: master, Addrs: sentinels, Password: n.Password(), SentinelPassword: n.Password(),
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if c, ok := env.ClientAddr(addr); ok {
				addr = c
			}
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// The Sentinel locks on a real redis-sentinel set: both hold and release
// like redis-setnx; with the primary's peer link cut (no replica gets the
// stream), redis-sentinel-setnx still grants the key (acknowledged by the
// primary alone: the L6 window) while redis-sentinel-wait refuses it
// (WAIT 1 sees 0 replicas) and leaves the key free. Without the endpoint
// both refuse to start.
func TestSentinelLocks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a redis-sentinel set (3 Redis, 3 Sentinels)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := infra.Up(ctx, infra.Spec{Topology: infra.TopologyRedisSentinel, Provider: "local"})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close(context.Background())
	ep := sentinelEndpoints(env)
	open := func(name string) lock.Locker {
		t.Helper()
		info, err := lock.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := info.New(ctx, lock.Endpoints{}, lock.Options{}); err == nil {
			t.Fatalf("%s started without a Sentinel endpoint", name)
		}
		l, err := info.New(ctx, ep, lock.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	for _, name := range []string{"redis-sentinel-setnx", "redis-sentinel-wait"} {
		a, b := open(name), open(name)
		la, err := a.Acquire(ctxFor(t, 2*time.Second), "k-"+name, 2*time.Second)
		if err != nil {
			t.Fatalf("%s: acquire: %v", name, err)
		}
		if _, err := b.TryAcquire(ctxFor(t, time.Second), "k-"+name, time.Second); !errors.Is(err, lock.ErrNotAcquired) {
			t.Fatalf("%s: a second client got a held key: %v", name, err)
		}
		if err := a.Release(ctxFor(t, time.Second), la); err != nil {
			t.Fatalf("%s: release: %v", name, err)
		}
	}

	link, ok := env.Link("redis-1")
	if !ok {
		t.Fatal("no peer link to redis-1")
	}
	cut := []infra.Toxic{
		{Name: "cut-up", Type: "timeout", Stream: "upstream", Toxicity: 1, Attributes: map[string]any{"timeout": 0}},
		{Name: "cut-down", Type: "timeout", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"timeout": 0}},
	}
	for _, tx := range cut {
		if err := link.Proxy().AddToxic(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	defer link.Proxy().Reset(context.Background())
	setnx, wait := open("redis-sentinel-setnx"), open("redis-sentinel-wait")
	if _, err := wait.TryAcquire(ctxFor(t, time.Second), "k-cut", 5*time.Second); !errors.Is(err, lock.ErrNotAcquired) || !errors.Is(err, lock.ErrUnreplicated) {
		t.Fatalf("redis-sentinel-wait with no replica reachable: %v, want not acquired (unreplicated)", err)
	}
	l, err := setnx.TryAcquire(ctxFor(t, time.Second), "k-cut", 5*time.Second)
	if err != nil {
		t.Fatalf("redis-sentinel-setnx with the replicas cut off: %v, want the key (from the primary alone) — and wait left it free", err)
	}
	_ = setnx.Release(ctxFor(t, time.Second), l)
}
