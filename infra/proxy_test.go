package infra

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/rs/zerolog"
)

// startToxiproxyServer serves a Toxiproxy HTTP API on a free port, as a
// stand-in for an external toxiproxy-server.
func startToxiproxyServer(t *testing.T) string {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Routes(), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(l)
	t.Cleanup(func() {
		hs.Close()
		srv.Collection.Clear()
	})
	return l.Addr().String()
}

// TestExternalToxiproxy drives proxies on a toxiproxy-server over HTTP.
func TestExternalToxiproxy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	api := startToxiproxyServer(t)
	env := upLocal(t, Spec{Nodes: Nodes(1, 0), ExternalToxiproxy: api})
	ctx := context.Background()
	rn := mustNode(t, env, "redis-1")
	addr := rn.Addr()

	c := redisClient(t, addr, rn.Password(), 2*time.Second)
	before := medianPing(t, c, 9)
	if err := rn.Proxy().AddToxic(ctx, Toxic{Name: "lat", Type: "latency", Attributes: map[string]any{"latency": 100}}); err != nil {
		t.Fatal(err)
	}
	with := medianPing(t, c, 3)
	t.Logf("external proxy PING median: before %v, with 100ms toxic %v", before, with)
	if with-before < 100*time.Millisecond {
		t.Errorf("toxic raised PING by %v, want >= 100ms", with-before)
	}
	if err := rn.Proxy().Disable(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("disabled external proxy still accepts connections")
	}
	if err := rn.Proxy().Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if d := medianPing(t, redisClient(t, addr, rn.Password(), 2*time.Second), 3); d > 50*time.Millisecond {
		t.Errorf("PING after Reset %v: toxic still there?", d)
	}

	// A restart on another port: the external proxy's upstream follows.
	old := rn.DirectAddr()
	if err := rn.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", old)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := rn.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if rn.DirectAddr() == old || rn.Addr() != addr {
		t.Errorf("direct %s -> %s, proxied %s -> %s", old, rn.DirectAddr(), addr, rn.Addr())
	}
	if err := redisClient(t, addr, rn.Password(), time.Second).Ping(ctx).Err(); err != nil {
		t.Errorf("PING after restart on a new port: %v", err)
	}

	if err := env.Close(ctx); err != nil {
		t.Fatal(err)
	}
	proxies, err := toxiclient.NewClient(api).Proxies()
	if err != nil || len(proxies) != 0 {
		t.Errorf("after Close the server still has proxies %v (%v)", proxies, err)
	}
}

// TestToxicity0MeansAlways: a Toxic with Toxicity 0 is sent as 1.
func TestToxicity0MeansAlways(t *testing.T) {
	cases := []struct {
		in   float32
		want float32
	}{{0, 1}, {-1, 1}, {0.5, 0.5}, {1, 1}}
	for _, tc := range cases {
		if got := toxicity(Toxic{Toxicity: tc.in}); got != tc.want {
			t.Errorf("toxicity(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if _, err := toxicJSON(Toxic{Name: "x"}); err == nil {
		t.Error("a toxic without a type was accepted")
	}
}

// TestEmbeddedProxyListensBelowEphemeralRange: an embedded proxy's port
// lies below the kernel's ephemeral range, so no outgoing connection can
// take it while a cut has the proxy stopped; it still forwards after a
// disable and enable. (A proxy on port 0 gets an ephemeral port: caught.)
func TestEmbeddedProxyListensBelowEphemeralRange(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}()
	h := newProxyHost("test", "")
	defer h.close(ctx)
	low := ephemeralLow()
	for i := range 5 {
		p, err := h.create(ctx, fmt.Sprintf("p%d", i), up.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, ps, _ := net.SplitHostPort(p.Listen())
		port, _ := strconv.Atoi(ps)
		if low > stablePortMin+createTries && (port < stablePortMin || port >= low) {
			t.Fatalf("proxy %s listens on %d, want %d..%d (below the ephemeral range)", p.Name(), port, stablePortMin, low-1)
		}
		if err := p.Disable(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p.Enable(ctx); err != nil {
			t.Fatal(err)
		}
		c, err := net.DialTimeout("tcp", p.Listen(), 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s after re-enable: %v", p.Listen(), err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 2)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
			t.Fatalf("read through %s: %q %v", p.Listen(), b, err)
		}
		c.Close()
	}
}

// TestStablePorts: every port is in stablePortMin..low-1.
func TestStablePorts(t *testing.T) {
	low := ephemeralLow()
	if low <= stablePortMin+createTries {
		t.Skipf("ephemeral range starts at %d: nothing below it to pick", low)
	}
	for _, p := range stablePorts(1000) {
		if p < stablePortMin || p >= low {
			t.Fatalf("port %d outside %d..%d", p, stablePortMin, low-1)
		}
	}
}
