package infra

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

func TestResolveDockerEndpoint(t *testing.T) {
	for _, c := range []struct {
		daemon, override string
		dial, bind       string
		remote           bool
		err              string
	}{
		{"unix:///var/run/docker.sock", "", "127.0.0.1", "127.0.0.1", false, ""},
		{"npipe:////./pipe/docker_engine", "", "127.0.0.1", "127.0.0.1", false, ""},
		{"tcp://127.0.0.2:23750", "", "127.0.0.2", "127.0.0.2", false, ""},
		{"tcp://localhost:2375", "", "127.0.0.1", "127.0.0.1", false, ""},
		{"tcp://[::1]:2375", "", "::1", "::1", false, ""},
		{"tcp://10.0.0.5:2376", "", "10.0.0.5", "0.0.0.0", true, ""},
		{"https://docker.example.com:2376", "", "docker.example.com", "0.0.0.0", true, ""},
		// testcontainers' own override of where published ports are reached.
		{"unix:///var/run/docker.sock", "172.17.0.1", "172.17.0.1", "0.0.0.0", true, ""},
		{"tcp://10.0.0.5:2376", "127.0.0.3", "127.0.0.3", "127.0.0.3", false, ""},
		{"ssh://me@host", "", "", "", false, "scheme ssh"},
		{"tcp://:2375", "", "", "", false, "names no host"},
	} {
		ep, err := resolveDockerEndpoint(c.daemon, c.override)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s (override %q): error %v, want %q", c.daemon, c.override, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s (override %q): %v", c.daemon, c.override, err)
			continue
		}
		if ep.dialHost != c.dial || ep.bindIP != netip.MustParseAddr(c.bind) || ep.remote() != c.remote {
			t.Errorf("%s (override %q): dial %s bind %s remote %v, want %s %s %v",
				c.daemon, c.override, ep.dialHost, ep.bindIP, ep.remote(), c.dial, c.bind, c.remote)
		}
	}
	if got := (dockerEndpoint{dialHost: "::1"}).publishAddr("32768"); got != "[::1]:32768" {
		t.Errorf("publishAddr = %s", got)
	}
}

func TestRemoteDockerHost(t *testing.T) {
	for _, c := range []struct {
		host, override string
		remote         bool
	}{
		{"", "", false},
		{"unix:///run/docker.sock", "", false},
		{"tcp://127.0.0.2:23750", "", false}, // loopback: maybe a tunnel, probed later
		{"tcp://192.0.2.10:2376", "", true},
		{"", "192.0.2.10", true},
	} {
		t.Setenv(EnvDockerHost, c.host)
		t.Setenv(EnvDockerHostOverride, c.override)
		remote, where := RemoteDockerHost()
		if remote != c.remote || (remote && !strings.Contains(where, "192.0.2.10")) {
			t.Errorf("DOCKER_HOST=%q override=%q: remote %v (%q), want %v", c.host, c.override, remote, where, c.remote)
		}
	}
}

// dockerHostChildEnv marks the child process of TestDockerHostTCP.
const dockerHostChildEnv = "FAULTLINE_TEST_DOCKER_HOST_CHILD"

// TestDockerHostTCP runs the docker provider against DOCKER_HOST=tcp://…
// the way it runs against an engine on another machine: the test forwards
// 127.0.0.2:<port> to the local engine (as `socat TCP-LISTEN:…
// UNIX-CONNECT:/var/run/docker.sock` would), and a child process (the
// engine address is read once per process) starts a redis-sentinel
// topology through it. Every published port must be on the engine's
// address (127.0.0.2, not 127.0.0.1) and reached there, through the
// proxies too, also after a node's restart; per-pair cuts stay possible
// (the engine is on this host after all). It skips only when no engine
// answers.
func TestDockerHostTCP(t *testing.T) {
	if os.Getenv(dockerHostChildEnv) != "" {
		dockerHostChild(t)
		return
	}
	if testing.Short() {
		t.Skip("starts 7 containers")
	}
	requireDocker(t)
	requireToxiproxyImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := dockerClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	daemon := cli.DaemonHost()
	cli.Close()
	u, err := url.Parse(daemon)
	if err != nil {
		t.Fatal(err)
	}
	network, address := u.Scheme, u.Path
	if network == "tcp" {
		address = u.Host
	} else if network != "unix" {
		t.Skipf("the engine is at %s: this test forwards to a unix or tcp engine only", daemon)
	}
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.2 (the loopback net): %v", err)
	}
	var conns atomic.Int64
	var wg sync.WaitGroup
	defer func() { l.Close(); wg.Wait() }()
	wg.Add(1)
	go func() { // a socat: every connection to the engine
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				e, err := net.Dial(network, address)
				if err != nil {
					return
				}
				defer e.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(e, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, e); done <- struct{}{} }()
				<-done
			}()
		}
	}()

	cmd := exec.Command(os.Args[0], "-test.run=^TestDockerHostTCP$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), dockerHostChildEnv+"=1", EnvDockerHost+"=tcp://"+l.Addr().String())
	cmd.Env = append(cmd.Env, EnvDockerHostOverride+"=") // unset: the engine's address decides
	out, err := cmd.CombinedOutput()
	t.Logf("child (DOCKER_HOST=tcp://%s):\n%s", l.Addr(), out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestDockerHostTCP") {
		t.Fatal("the child did not pass TestDockerHostTCP")
	}
	if conns.Load() == 0 {
		t.Fatal("no connection reached the engine through DOCKER_HOST")
	}
	t.Logf("%d connections to the engine through tcp://%s", conns.Load(), l.Addr())
}

// dockerHostChild is TestDockerHostTCP in the child, DOCKER_HOST set.
func dockerHostChild(t *testing.T) {
	dh := os.Getenv(EnvDockerHost)
	want := strings.TrimPrefix(dh, "tcp://")
	want, _, _ = net.SplitHostPort(want)
	if want == "" {
		t.Fatalf("child without a tcp DOCKER_HOST (%q)", dh)
	}
	env := upTopology(t, "docker", TopologyRedisSentinel)
	if env.Provider() != "docker" {
		t.Fatalf("provider %s", env.Provider())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := env.prov.(*dockerProvider)
	if got := p.cli.DaemonHost(); got != dh {
		t.Fatalf("the client talks to %s, want DOCKER_HOST %s", got, dh)
	}
	// Every container's ports are published on the engine's address only.
	list, err := p.cli.ContainerList(ctx, client.ContainerListOptions{
		Filters: make(client.Filters).Add("label", labelProvider+"="+p.instance)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 7 {
		t.Errorf("%d containers, want 7 (6 nodes and the peer proxy)", len(list.Items))
	}
	for _, c := range list.Items {
		published := 0
		for _, pt := range c.Ports {
			if pt.PublicPort == 0 {
				continue // exposed by the image, not published
			}
			published++
			if pt.IP.String() != want {
				t.Errorf("container %v publishes %d on %s, want %s", c.Names, pt.PrivatePort, pt.IP, want)
			}
		}
		if published == 0 {
			t.Errorf("container %v publishes no port", c.Names)
		}
	}
	pn := env.peers.(*dockerPeerNet)
	if h, _, _ := net.SplitHostPort(pn.proxy.addr()); h != want {
		t.Errorf("peer proxy API reached at %s, want host %s", pn.proxy.addr(), want)
	}
	ping := func(n Node) {
		t.Helper()
		for _, a := range []string{n.DirectAddr(), n.Addr()} {
			if err := redisPing(ctx, a, n.Password()); err != nil {
				t.Errorf("%s at %s: %v", n.Name(), a, err)
			}
		}
		if h, _, _ := net.SplitHostPort(n.DirectAddr()); h != want {
			t.Errorf("%s reached at %s, want host %s", n.Name(), n.DirectAddr(), want)
		}
	}
	for _, n := range env.Nodes() {
		ping(n)
	}
	// A restart publishes a new port: still on the engine's address.
	r3 := mustNode(t, env, "redis-3")
	before := r3.DirectAddr()
	if err := r3.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r3.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("redis-3: %s -> %s after a restart", before, r3.DirectAddr())
	ping(r3)
	if ok, why := env.CanCutPairs(); !ok {
		t.Errorf("CanCutPairs = false through a loopback DOCKER_HOST to this host's engine: %s", why)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("timed out")
	}
}

// TestDockerHostNoFallback: testcontainers-go falls back to the local
// socket when DOCKER_HOST does not answer; faultline refuses instead (auto
// then picks local processes and says why).
func TestDockerHostNoFallback(t *testing.T) {
	requireDocker(t)
	for _, dh := range []string{"tcp://127.0.0.1:1", "ssh://root@127.0.0.1"} {
		t.Setenv(EnvDockerHost, dh)
		ok, why := dockerAvailable(context.Background(), Spec{})
		if ok || !strings.Contains(why, "no docker engine") || !strings.Contains(why, "DOCKER_HOST="+dh) {
			t.Errorf("DOCKER_HOST=%s: available %v (%s), want no engine, naming DOCKER_HOST", dh, ok, why)
		}
	}
}
