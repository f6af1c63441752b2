package infra

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/redis/go-redis/v9"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
)

// upTopology starts a topology with one provider for a test and closes it at the end.
func upTopology(t *testing.T, provider string, topo Topology) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	env, err := Up(ctx, Spec{Topology: topo, Provider: provider})
	if err != nil {
		t.Fatalf("Up(%s, %s): %v", topo, provider, err)
	}
	t.Cleanup(func() {
		if err := env.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return env
}

func TestRedisSentinelLocal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 real servers")
	}
	testRedisSentinel(t, "local")
}

func TestRedisSentinelDocker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 7 containers")
	}
	requireDocker(t)
	requireToxiproxyImage(t)
	testRedisSentinel(t, "docker")
}

var (
	toxiproxyImageOnce sync.Once
	toxiproxyImageErr  error
)

// requireToxiproxyImage builds faultline/toxiproxy:2 (once per test binary)
// when the engine lacks it, and fails if that fails.
func requireToxiproxyImage(t *testing.T) {
	t.Helper()
	toxiproxyImageOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cli, err := dockerClient(ctx)
		if err != nil {
			toxiproxyImageErr = err
			return
		}
		defer cli.Close()
		if _, err := cli.ImageInspect(ctx, DefaultToxiproxyImage); err == nil {
			return
		}
		script, _ := filepath.Abs(filepath.Join("..", "scripts", "build-images.sh"))
		if out, err := exec.CommandContext(ctx, "bash", script, "toxiproxy").CombinedOutput(); err != nil {
			toxiproxyImageErr = fmt.Errorf("scripts/build-images.sh toxiproxy: %w\n%s", err, out)
		}
	})
	if toxiproxyImageErr != nil {
		t.Fatal(toxiproxyImageErr)
	}
}

// testRedisSentinel is the acceptance test of redis-sentinel for one
// provider: replication, client and Sentinel paths, a kill failover, the old
// primary rejoining as a replica, and a cut peer link.
func testRedisSentinel(t *testing.T, provider string) {
	t0 := time.Now()
	env := upTopology(t, provider, TopologyRedisSentinel)
	t.Logf("%s: up in %v", provider, time.Since(t0))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if got := env.Topology(); got != TopologyRedisSentinel {
		t.Fatalf("Topology() = %q", got)
	}
	var links []string
	for _, l := range env.Links() {
		links = append(links, l.Name())
	}
	wantLinks := []string{"peer:redis-1", "peer:redis-2", "peer:redis-3", "peer:sentinel-1", "peer:sentinel-2", "peer:sentinel-3"}
	if !slices.Equal(links, wantLinks) {
		t.Fatalf("Links() = %v, want %v", links, wantLinks)
	}
	roles, err := env.Roles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Role{"redis-1": RolePrimary, "redis-2": RoleReplica, "redis-3": RoleReplica,
		"sentinel-1": RoleSentinel, "sentinel-2": RoleSentinel, "sentinel-3": RoleSentinel}
	if fmt.Sprint(roles) != fmt.Sprint(want) {
		t.Fatalf("Roles() = %v, want %v", roles, want)
	}
	if p, err := env.Primary(ctx); err != nil || p.Name() != "redis-1" {
		t.Fatalf("Primary() = %v, %v; want redis-1", p, err)
	}

	client := func(name string) *redis.Client {
		n := mustNode(t, env, name)
		return redisClient(t, n.Addr(), n.Password(), 2*time.Second)
	}
	// A write on the primary reaches a replica (through the client proxies).
	if err := client("redis-1").Set(ctx, "k1", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	replicated := func(name, key, val string) func(ctx context.Context) error {
		c := client(name)
		return func(ctx context.Context) error {
			got, err := c.Get(ctx, key).Result()
			if err != nil || got != val {
				return fmt.Errorf("GET %s on %s = %q, %v", key, name, got, err)
			}
			return nil
		}
	}
	eventually(t, 5*time.Second, "k1 replicated to redis-2", replicated("redis-2", "k1", "v1"))
	if err := client("redis-2").Set(ctx, "k2", "x", 0).Err(); err == nil {
		t.Fatal("a write on replica redis-2 was accepted")
	}

	// A client following the Sentinels (peer addresses translated to client proxies).
	master, sentinels := env.SentinelEndpoints()
	fc := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: master, SentinelAddrs: sentinels,
		Password: mustNode(t, env, "redis-1").Password(), SentinelPassword: mustNode(t, env, "sentinel-1").Password(),
		MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if c, ok := env.ClientAddr(addr); ok {
				addr = c
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	})
	t.Cleanup(func() { fc.Close() })
	if err := fc.Set(ctx, "k3", "via-sentinel", 0).Err(); err != nil {
		t.Fatalf("write through the failover client: %v", err)
	}

	res, err := env.Failover(ctx, FailoverKill)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s failover (kill): %s -> %s in %v", provider, res.Old, res.New, res.Took)
	if res.Old != "redis-1" || (res.New != "redis-2" && res.New != "redis-3") {
		t.Fatalf("Failover = %+v, want redis-1 -> redis-2|3", res)
	}
	roles, err = env.Roles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if roles["redis-1"] != RoleDown || roles[res.New] != RolePrimary {
		t.Fatalf("after failover Roles() = %v, want redis-1 down, %s primary", roles, res.New)
	}
	if err := client(res.New).Set(ctx, "k4", "after", 0).Err(); err != nil {
		t.Fatalf("write on the new primary %s: %v", res.New, err)
	}
	eventually(t, 5*time.Second, "the failover client writes to the new primary", func(ctx context.Context) error {
		return fc.Set(ctx, "k5", "via-sentinel-2", 0).Err()
	})
	eventually(t, 5*time.Second, "k5 on the new primary", replicated(res.New, "k5", "via-sentinel-2"))

	// The old primary comes back empty and the Sentinels make it a replica.
	t1 := time.Now()
	if err := mustNode(t, env, "redis-1").Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "redis-1 rejoins as a replica", replicated("redis-1", "k4", "after"))
	t.Logf("%s: redis-1 restarted and rejoined as a replica in %v", provider, time.Since(t1))
	if r := nodeRole(ctx, mustNode(t, env, "redis-1").(*node)); r != RoleReplica {
		t.Fatalf("redis-1 is %s after rejoining, want replica", r)
	}

	// Cutting the primary's peer link stops replication; clients still write.
	// The cut also hides the primary from the Sentinels, which would promote
	// another replica after down-after (1 s) and re-point the replicas, racing
	// the link-down check below. This part tests the replication cut, not a
	// second failover, so every Sentinel first waits ten minutes before
	// calling the primary down.
	for _, s := range []string{"sentinel-1", "sentinel-2", "sentinel-3"} {
		if err := client(s).Do(ctx, "SENTINEL", "SET", master, "down-after-milliseconds", "600000").Err(); err != nil {
			t.Fatalf("SENTINEL SET down-after-milliseconds on %s: %v", s, err)
		}
	}
	// Then the set must be settled: all Sentinels name one primary and the
	// two other data nodes replicate from it, link up. Docker runs in CI saw
	// Sentinel fail over a second time right after the first (redis-1 ->
	// redis-3 -> redis-2): with down-after 1 s the Sentinels' fresh
	// connections to a new primary answered too late (docs/failover.md, Redis with Sentinel;
	// docker now runs down-after 3 s); the cut goes to the primary the
	// Sentinels settled on.
	announced := map[string]string{}
	for _, n := range []string{"redis-1", "redis-2", "redis-3"} {
		announced[mustNode(t, env, n).(*node).announce] = n
	}
	primary := ""
	eventually(t, 30*time.Second, "the Sentinels and replicas agree on one primary", func(ctx context.Context) error {
		primary = ""
		for _, s := range []string{"sentinel-1", "sentinel-2", "sentinel-3"} {
			hp, err := client(s).Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", master).StringSlice()
			if err != nil || len(hp) != 2 {
				return fmt.Errorf("%s: get-master-addr-by-name = %v, %v", s, hp, err)
			}
			name := announced[net.JoinHostPort(hp[0], hp[1])]
			if name == "" || (primary != "" && name != primary) {
				return fmt.Errorf("%s names %v as primary, others %q", s, hp, primary)
			}
			primary = name
		}
		for _, r := range []string{"redis-1", "redis-2", "redis-3"} {
			if r == primary {
				continue
			}
			info, err := directInfo(ctx, mustNode(t, env, r).(*node), "replication")
			if err != nil {
				return err
			}
			if info["master_link_status"] != "up" || announced[net.JoinHostPort(info["master_host"], info["master_port"])] != primary {
				return fmt.Errorf("%s: replica of %s:%s, link %q; want %s, up", r, info["master_host"], info["master_port"], info["master_link_status"], primary)
			}
		}
		return nil
	})
	if primary != res.New {
		t.Logf("%s: Sentinel failed over again after the first failover: the primary is now %s", provider, primary)
	}
	res.New = primary
	l, ok := env.Link(res.New)
	if !ok {
		t.Fatalf("no link to %s", res.New)
	}
	if err := l.Proxy().Disable(ctx); err != nil {
		t.Fatal(err)
	}
	var replicas []string
	for _, n := range []string{"redis-1", "redis-2", "redis-3"} {
		if n != res.New {
			replicas = append(replicas, n)
		}
	}
	for _, r := range replicas {
		eventually(t, 10*time.Second, r+" sees its link down", func(ctx context.Context) error {
			info, err := directInfo(ctx, mustNode(t, env, r).(*node), "replication")
			if err != nil {
				return err
			}
			if info["master_link_status"] != "down" {
				return fmt.Errorf("master_link_status %q (replica of %s:%s; the cut link is %s)",
					info["master_link_status"], info["master_host"], info["master_port"], mustNode(t, env, res.New).(*node).announce)
			}
			return nil
		})
	}
	if err := client(res.New).Set(ctx, "k6", "cut-off", 0).Err(); err != nil {
		t.Fatalf("write through %s's client proxy while its peer link is cut: %v", res.New, err)
	}
	for _, r := range replicas {
		if got, err := client(r).Get(ctx, "k6").Result(); !errors.Is(err, redis.Nil) {
			t.Errorf("k6 reached %s across the cut link: %q, %v", r, got, err)
		}
	}
}

// The redis-sentinel rows of the SIGINT cleanup test (cleanup_test.go):
// every server process and temp dir (local), every container, the peer
// proxy container and the network (docker) are gone after the child's exit.
func init() {
	cleanupCases = append(cleanupCases, cleanupCase{
		provider: "local", topology: TopologyRedisSentinel,
		check: func(t *testing.T, r childReport) {
			if len(r.PIDs) < 6 || len(r.Dirs) < 6 {
				t.Errorf("child reported pids %v and dirs %v, want 6 servers (3 redis + 3 sentinels)", r.PIDs, r.Dirs)
			}
		},
	})
	var runID string
	cleanupCases = append(cleanupCases, cleanupCase{
		provider: "docker", topology: TopologyRedisSentinel,
		skip: func(t *testing.T) {
			requireDocker(t)
			requireToxiproxyImage(t)
			runID = "cleanup-" + randomHex(4)
			t.Setenv(EnvRunID, runID)
		},
		check: func(t *testing.T, r childReport) {
			if len(r.Containers) != 7 || len(r.Networks) != 1 {
				t.Errorf("child reported containers %v and networks %v, want 7 (6 nodes + the peer proxy) and 1", r.Containers, r.Networks)
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
			for _, id := range r.Networks {
				if _, err := cli.NetworkInspect(ctx, id, client.NetworkInspectOptions{}); !cerrdefs.IsNotFound(err) {
					t.Errorf("network %.12s of the child still exists (inspect: %v)", id, err)
				}
			}
			assertNoContainers(t, LabelRun+"="+runID)
		},
	})
}

// TestTopologySpecValidation: a topology names its own nodes (extras beside
// them must not clash), Sentinels come
// only with redis-sentinel, unknown topologies and failover modes are refused,
// and an environment of independent nodes has no topology API.
func TestTopologySpecValidation(t *testing.T) {
	cases := []struct {
		spec Spec
		want string
	}{
		{Spec{Topology: TopologyRedisSentinel, Nodes: Nodes(1, 0)}, "may only add other, independent nodes"},
		{Spec{Topology: "redis-cluster"}, "unknown topology"},
		{Spec{Nodes: []NodeSpec{{Name: "s", Kind: Sentinel}}}, "Sentinels come only with"},
	}
	for _, tc := range cases {
		_, err := Up(context.Background(), tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.spec, err, tc.want)
		}
	}
	var e Env // independent nodes
	if _, err := e.Roles(context.Background()); !errors.Is(err, errNoTopology) {
		t.Errorf("Roles without a topology: %v", err)
	}
	if _, err := e.Failover(context.Background(), FailoverKill); !errors.Is(err, errNoTopology) {
		t.Errorf("Failover without a topology: %v", err)
	}
	if m, s := e.SentinelEndpoints(); m != "" || s != nil || e.Links() != nil {
		t.Errorf("independent nodes have sentinel endpoints %q %v or links %v", m, s, e.Links())
	}
}

// TestGCRemovesNetworks: gc removes a labelled network a crashed run left.
func TestGCRemovesNetworks(t *testing.T) {
	requireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runID := "gc-net-" + randomHex(4)
	nw, err := tcnetwork.New(ctx, tcnetwork.WithLabels(map[string]string{LabelFaultline: "1", LabelRun: runID}))
	if err != nil {
		t.Fatal(err)
	}
	removed, err := gc(ctx, LabelRun+"="+runID, t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, "network "+nw.Name) {
		t.Errorf("gc removed %v, want network %s", removed, nw.Name)
	}
	cli, err := dockerClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.NetworkInspect(ctx, nw.ID, client.NetworkInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("network %s still exists after gc (inspect: %v)", nw.Name, err)
		_ = nw.Remove(ctx)
	}
}

// TestRedisSentinelForceFailover: SENTINEL FAILOVER promotes a replica
// without killing anything; the old primary keeps running and the
// Sentinels make it a replica of the new one.
func TestRedisSentinelForceFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 real servers")
	}
	env := upTopology(t, "local", TopologyRedisSentinel)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := env.Failover(ctx, FailoverForce)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("local failover (force): %s -> %s in %v", res.Old, res.New, res.Took)
	if res.Old != "redis-1" || res.New == "redis-1" || res.Mode != FailoverForce {
		t.Fatalf("Failover(force) = %+v, want redis-1 -> another node", res)
	}
	if p, err := env.Primary(ctx); err != nil || p.Name() != res.New {
		t.Fatalf("Primary() after the failover = %v, %v; want %s", p, err, res.New)
	}
	eventually(t, 30*time.Second, "redis-1 becomes a replica", func(ctx context.Context) error {
		if r := nodeRole(ctx, mustNode(t, env, "redis-1").(*node)); r != RoleReplica {
			return fmt.Errorf("redis-1 is %s", r)
		}
		return nil
	})
}

// Sentinel's down-after per provider: on docker a freshly promoted primary
// answered its Sentinels' first PING 1.28-1.39 s after +switch-master (a
// reset entry reconnects at most once per second, through the peer proxy),
// so down-after 1 s made every Sentinel call it down and fail over a
// second time; docker gets 3 s, local 2 s (the same seen at load 17-20).
// An explicit option wins everywhere. Each Sentinel's is staggered on top
// (checked in TestSentinelRejoinAtOnce).
func TestSentinelDownAfterPerProvider(t *testing.T) {
	for _, tc := range []struct {
		provider string
		opt      time.Duration
		want     string
	}{
		{"local", 0, "down-after-milliseconds faultline 2000"},
		{"docker", 0, "down-after-milliseconds faultline 3000"},
		{"docker", 1500 * time.Millisecond, "down-after-milliseconds faultline 1500"},
		{"local", 2 * time.Second, "down-after-milliseconds faultline 2000"},
	} {
		o := ReplicationOptions{SentinelDownAfter: tc.opt}.withDefaults()
		conf := strings.Join(sentinelConf("10.0.0.1:7004", "10.0.0.1:7001", "pw", o, o.sentinelDownAfter(tc.provider)), "\n")
		if !strings.Contains(conf, "sentinel "+tc.want+"\n") || !strings.Contains(conf, "failover-timeout faultline 3000") {
			t.Errorf("%s, option %v: conf\n%s\nwant %q", tc.provider, tc.opt, conf, tc.want)
		}
	}
}

// Pairs reads both reply shapes of a field list (chaos' pair tests use it
// for SENTINEL REPLICAS too).
func TestPairs(t *testing.T) {
	want := map[string]string{"name": "10.0.0.1:7002", "flags": "slave", "slave-priority": "0"}
	for _, v := range []any{
		[]any{"name", "10.0.0.1:7002", "flags", "slave", "slave-priority", int64(0)},
		map[any]any{"name": "10.0.0.1:7002", "flags": "slave", "slave-priority": int64(0)},
	} {
		if got := Pairs(v); !maps.Equal(got, want) {
			t.Errorf("Pairs(%T) = %v, want %v", v, got, want)
		}
	}
	if got := Pairs("OK"); len(got) != 0 {
		t.Errorf("Pairs(a string) = %v, want empty", got)
	}
	if got := Pairs([]any{"odd"}); len(got) != 0 {
		t.Errorf("Pairs(odd array) = %v, want empty", got)
	}
}

// The Sentinels' down-after is staggered (SentinelDownAfterStep). A killed
// primary restarted after a failover is a replica of the new
// primary when Start returns (REPLICAOF at once: sentinelRejoin), not an
// empty master of its own for the 8-18 s Sentinel takes to re-point it;
// the set settles right after. FAULTLINE_MEASURE_HEAL=N repeats the
// failover 2N times, alternating the rejoin and Sentinel's own re-pointing
// (the pending rejoin dropped), and logs each heal's time (Start to
// settled).
func TestSentinelRejoinAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 real servers")
	}
	rounds := 1
	if v := os.Getenv("FAULTLINE_MEASURE_HEAL"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("FAULTLINE_MEASURE_HEAL=%q: want a count of rounds", v)
		}
		rounds = 2 * n
	}
	env := upTopology(t, "local", TopologyRedisSentinel)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rounds)*time.Minute)
	defer cancel()
	// Down-after staggered: 2 s, 2.5 s, 3 s (SentinelDownAfterStep).
	for i, s := range env.ByKind(Sentinel) {
		c := directClient(s.(*node))
		m, err := c.Do(ctx, "SENTINEL", "MASTER", SentinelMaster).Result()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := (DefaultSentinelDownAfter + time.Duration(i)*SentinelDownAfterStep).Milliseconds()
		if got := Pairs(m)["down-after-milliseconds"]; got != strconv.FormatInt(want, 10) {
			t.Errorf("%s: down-after-milliseconds %s, want %d", s.Name(), got, want)
		}
	}
	var heals [2][]time.Duration
	for i := range rounds {
		bySentinel := i%2 == 1
		res, err := env.Failover(ctx, FailoverKill)
		if err != nil {
			t.Fatal(err)
		}
		old := mustNode(t, env, res.Old).(*node)
		if bySentinel {
			old.mu.Lock()
			old.rejoin = nil
			old.mu.Unlock()
		}
		t0 := time.Now()
		if err := old.Start(ctx); err != nil {
			t.Fatalf("restart %s: %v", res.Old, err)
		}
		started := time.Since(t0)
		if !bySentinel {
			info, err := directInfo(ctx, old, "replication")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := net.JoinHostPort(info["master_host"], info["master_port"]), mustNode(t, env, res.New).(*node).announce; info["role"] != "slave" || got != want {
				t.Fatalf("%s right after its restart: role %s, master %s; want a replica of %s (%s)", res.Old, info["role"], got, res.New, want)
			}
		}
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		err = env.WaitSettled(sctx)
		scancel()
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(t0)
		heals[b2i(bySentinel)] = append(heals[b2i(bySentinel)], took)
		t.Logf("round %d: %s -> %s promoted in %v; heal by %s: restart %v, settled %v after the restart began",
			i+1, res.Old, res.New, res.Took.Round(time.Millisecond), map[bool]string{false: "rejoin", true: "Sentinel"}[bySentinel],
			started.Round(time.Millisecond), took.Round(time.Millisecond))
	}
	if rounds > 1 {
		t.Logf("heal times: rejoin %v, Sentinel %v", heals[0], heals[1])
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
