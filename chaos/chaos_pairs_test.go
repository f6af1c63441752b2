package chaos_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/faultline-dev/faultline/bench"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/infra"
)

// The WAIT rows (issue 12): which replica acknowledged a lock decides
// whether redis-sentinel-wait keeps it through a failover. They need a
// per-pair cut (one replica cut from the primary, the other still
// replicating): the docker provider. Their environment is a redis-sentinel
// set of its own in which redis-2 has replica-priority 0, so Sentinel
// never promotes it: the replica promoted is always the other one.
var pairEnv struct {
	once sync.Once
	env  *infra.Env
	err  error
	skip string
	took time.Duration
}

// pairScripts are the scripted rows run by TestChaosFailoverPairs (run
// settings "script; provider=docker").
var pairScripts = map[string]script{
	"failover-unacked": {ttl: pairTTL, run: func(s *scene) { waitFailoverScenario(s, false) }},
	"failover-acked":   {ttl: pairTTL, run: func(s *scene) { waitFailoverScenario(s, true) }},
}

// pairTTL outlives a docker Sentinel failover (2.3–3.6 s measured on a
// loaded machine with down-after 1 s; 3.9 s with docker's 3 s) plus B's
// acquire after it, with margin for A's write.
const pairTTL = 15 * time.Second

// neverPromoted is the replica given replica-priority 0.
const neverPromoted = "redis-2"

// dockerRow says whether a row runs on the docker pair environment.
func dockerRow(row chaos.Row) bool { return row.Settings()["provider"] == "docker" }

func needPairEnv(t *testing.T) *infra.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("Chaos suite: starts a replicated Redis in containers (skipped with -short)")
	}
	pairEnv.once.Do(func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		env, err := infra.Up(ctx, infra.Spec{Topology: infra.TopologyRedisSentinel,
			Nodes: []infra.NodeSpec{{Name: "resource", Kind: infra.Redis}}, Provider: "docker"})
		if err != nil {
			if strings.Contains(err.Error(), "no docker engine") {
				pairEnv.skip = err.Error()
				return
			}
			pairEnv.err = err
			return
		}
		pairEnv.env = env
		pairEnv.err = neverPromote(ctx, env, neverPromoted)
		pairEnv.took = time.Since(start)
	})
	if pairEnv.skip != "" {
		t.Skipf("the WAIT rows need the docker provider: %s", pairEnv.skip)
	}
	if pairEnv.err != nil {
		t.Fatalf("pair environment did not start: %v", pairEnv.err)
	}
	return pairEnv.env
}

// nodeClient is a client of one node through its client proxy.
func nodeClient(env *infra.Env, name string) *redis.Client {
	n, _ := env.Node(name)
	return redis.NewClient(&redis.Options{Addr: n.Addr(), Password: n.Password(), MaxRetries: -1, PoolSize: 1,
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
}

// neverPromote sets replica-priority 0 on the node and waits until every
// Sentinel has read it (they refresh a replica's INFO every 10 s).
func neverPromote(ctx context.Context, env *infra.Env, name string) error {
	c := nodeClient(env, name)
	defer c.Close()
	if err := c.ConfigSet(ctx, "replica-priority", "0").Err(); err != nil {
		return fmt.Errorf("CONFIG SET replica-priority 0 on %s: %w", name, err)
	}
	return pollUntil(ctx, 30*time.Second, func(ctx context.Context) error {
		for _, s := range env.ByKind(infra.Sentinel) {
			rs, err := sentinelReplicas(ctx, env, s.Name())
			if err != nil {
				return err
			}
			if p := rs[name]["slave-priority"]; p != "0" {
				return fmt.Errorf("%s sees %s with slave-priority %q", s.Name(), name, p)
			}
		}
		return nil
	})
}

// sentinelReplicas is SENTINEL REPLICAS of one Sentinel, by node name.
func sentinelReplicas(ctx context.Context, env *infra.Env, sentinel string) (map[string]map[string]string, error) {
	c := nodeClient(env, sentinel)
	defer c.Close()
	v, err := c.Do(ctx, "SENTINEL", "REPLICAS", infra.SentinelMaster).Slice()
	if err != nil {
		return nil, fmt.Errorf("%s: SENTINEL REPLICAS: %w", sentinel, err)
	}
	out := map[string]map[string]string{}
	for _, r := range v {
		f := infra.Pairs(r)
		if n, ok := env.ClientAddr(f["name"]); ok {
			for _, node := range env.Nodes() {
				if node.Addr() == n {
					out[node.Name()] = f
				}
			}
		}
	}
	return out, nil
}

// pollUntil polls f every 100 ms until it returns nil or d passes.
func pollUntil(ctx context.Context, d time.Duration, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
		last = f(pctx)
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still failing after %v: %w", d, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// whole waits until the set is whole again (a row's failover leaves the old
// primary restarted empty, rejoining as a replica): every Sentinel names
// one primary, both other Redis nodes replicate from it with their link up,
// and every Sentinel sees both replicas with no down flag. It returns the
// primary and the replica Sentinel would promote.
func whole(ctx context.Context, env *infra.Env) (primary, candidate string, err error) {
	err = pollUntil(ctx, 60*time.Second, func(ctx context.Context) error {
		p, err := env.Primary(ctx)
		if err != nil {
			return err
		}
		primary = p.Name()
		candidate = ""
		for _, n := range env.ByKind(infra.Redis) {
			name := n.Name()
			if name == primary || name == "resource" {
				continue
			}
			c := nodeClient(env, name)
			info, err := c.Info(ctx, "replication").Result()
			c.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if !strings.Contains(info, "master_link_status:up") {
				return fmt.Errorf("%s: link to %s not up yet", name, primary)
			}
			if name != neverPromoted {
				candidate = name
			}
		}
		for _, s := range env.ByKind(infra.Sentinel) {
			rs, err := sentinelReplicas(ctx, env, s.Name())
			if err != nil {
				return err
			}
			if len(rs) != 2 {
				return fmt.Errorf("%s knows %d replicas", s.Name(), len(rs))
			}
			for n, f := range rs {
				if f["flags"] != "slave" || f["master-link-status"] != "ok" {
					return fmt.Errorf("%s sees %s flags %q, master link %q", s.Name(), n, f["flags"], f["master-link-status"])
				}
			}
		}
		return nil
	})
	return primary, candidate, err
}

// TestChaosFailoverPairs runs the WAIT rows of chaos/expected.md (run
// settings "script; provider=docker") on a docker redis-sentinel set.
func TestChaosFailoverPairs(t *testing.T) {
	m := loadMatrix(t)
	var rows []chaos.Row
	for _, row := range m.Rows {
		if rowTopology(row) == infra.TopologyRedisSentinel && dockerRow(row) {
			rows = append(rows, row)
		}
	}
	if len(rows) == 0 {
		t.Fatal("no provider=docker row in chaos/expected.md")
	}
	env := needPairEnv(t)
	t.Logf("environment: %s %s, %s at replica-priority 0, started in %v", env.Topology(), env.Provider(), neverPromoted, pairEnv.took.Round(time.Millisecond))
	for _, row := range rows {
		t.Run(row.Name(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			sc, ok := pairScripts[row.Fault]
			if !ok {
				t.Fatalf("row %s (line %d): no pair script named %q", row.Name(), row.Line, row.Fault)
			}
			t0 := time.Now()
			cfg := lockConfig(row, sc.ttl, 1)
			cfg.Path = bench.PathProxied
			cfg.Quiet = time.Second
			r := newPhaseRun(t, row, cfg, nil)
			r.spec.Script = func(ctx context.Context, d *bench.Driver) error {
				sc.run(&scene{t: t, ctx: ctx, d: d, row: row, ttl: sc.ttl})
				return nil
			}
			o := r.run(t, ctx, env)
			t.Logf("row took %v", time.Since(t0).Round(time.Millisecond))
			assertRow(t, row, o)
		})
	}
}

// waitFailoverScenario: the primary P has two replicas, redis-2 (never
// promoted) and the candidate R. One replica is cut from P alone
// (partition-pair): unacked cuts R, so A's WAIT 1 is satisfied by
// redis-2; acked cuts redis-2, so R acknowledges. A acquires k0 (SET +
// WAIT 1) and reads; P is killed and Sentinel promotes R; the cut heals.
// B asks for k0 on R. Unacked: R never had A's key, B gets it and writes;
// A, within its lease, writes over B's increment — WAIT 1 of 2 was
// satisfied by a replica that was not promoted. Acked: R has A's key, B is
// refused while A holds it, A writes and releases.
func waitFailoverScenario(s *scene, acked bool) {
	env := s.d.Env()
	wctx, cancel := context.WithTimeout(s.ctx, 90*time.Second)
	primary, candidate, err := whole(wctx, env)
	cancel()
	s.must(err == nil && candidate != "", "the set is not whole: %v", err)
	cutOff := candidate
	if acked {
		cutOff = neverPromoted
	}
	what := "partition-pair:" + cutOff + "|" + primary
	spec, err := chaos.Parse(what + "@0s")
	s.must(err == nil, "%v", err)
	p, err := chaos.Build(spec, "script", env, nil, s.ttl)
	s.must(err == nil, "build %s: %v", what, err)
	healCut := s.fault(p.Fault, what)

	a := s.proc(nil)
	b := s.proc(nil)
	la := s.acquire(a, 2*time.Second) // SET, then WAIT 1: acknowledged by the replica not cut
	va, err := a.Read(s.ctx, la)
	s.must(err == nil, "A read: %v", err)
	healFailover, rep := s.failover()
	s.t.Logf("%s cut from %s; failover %s → %s", cutOff, primary, rep.Attrs["old"], rep.Attrs["new"])
	s.must(rep.Attrs["new"] == candidate, "Sentinel promoted %s, not %s (%s has replica-priority 0)", rep.Attrs["new"], candidate, neverPromoted)
	healCut()
	timeout := 5 * time.Second // unacked: B's WAIT needs redis-2 resynced from R
	if acked {
		timeout = time.Second // acked: R holds A's key, B must be refused
	}
	lb, bErr := b.Acquire(s.ctx, key, timeout, false)
	if !acked {
		s.must(bErr == nil, "B could not acquire k0 on the new primary %s: %v", candidate, bErr)
	}
	if bErr == nil {
		s.cycle(b, lb)
	}
	s.stillHeld(a, la)
	_ = a.Write(s.ctx, la, va)
	_ = a.Release(s.ctx, la)
	healFailover()
}
