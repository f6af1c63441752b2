package infra

// redis-sentinel: redis-1 (initial primary), redis-2 and redis-3 (replicas),
// sentinel-1..3 (redis-server --sentinel, quorum 2) monitoring the master set
// "faultline". All share one password (requirepass, masterauth, Sentinel
// auth-pass and sentinel-pass): Sentinel authenticates to every node of a
// master set with the same one. Every node announces its peer proxy (see
// Link), so all node-to-node traffic goes through the peer links and all
// client traffic through the client proxies.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	redisPort      = 6379  // Redis's container port (docker)
	sentinelPort   = 26379 // Sentinel's container port (docker)
	sentinelQuorum = 2
	// topoPoll is how often Failover and the role probes poll.
	topoPoll = 20 * time.Millisecond
	// topoProbeTimeout bounds one probe of one node.
	topoProbeTimeout = time.Second
)

// sentinelTopology implements topology for redis-sentinel.
type sentinelTopology struct{}

// sentinelRedisConf is the replication part of a data node's configuration.
func sentinelRedisConf(announce, primary, password string, replica bool) []string {
	ah, ap, _ := net.SplitHostPort(announce)
	ph, pp, _ := net.SplitHostPort(primary)
	conf := []string{
		"replica-announce-ip " + ah,
		"replica-announce-port " + ap,
		"masterauth " + password,
		// A cut link is noticed within seconds, not the default minute.
		"repl-ping-replica-period 1",
		"repl-timeout 5",
		// Full syncs start at once (the default waits 5 s for more replicas).
		"repl-diskless-sync-delay 0",
	}
	if replica {
		conf = append(conf, "replicaof "+ph+" "+pp)
	}
	return conf
}

// sentinelConf is a Sentinel's configuration.
func sentinelConf(announce, primary, password string, o ReplicationOptions, downAfter time.Duration) []string {
	ah, ap, _ := net.SplitHostPort(announce)
	ph, pp, _ := net.SplitHostPort(primary)
	m := SentinelMaster
	return []string{
		"sentinel announce-ip " + ah,
		"sentinel announce-port " + ap,
		"sentinel sentinel-pass " + password,
		fmt.Sprintf("sentinel monitor %s %s %s %d", m, ph, pp, sentinelQuorum),
		fmt.Sprintf("sentinel auth-pass %s %s", m, password),
		fmt.Sprintf("sentinel down-after-milliseconds %s %d", m, downAfter.Milliseconds()),
		fmt.Sprintf("sentinel failover-timeout %s %d", m, o.SentinelFailoverTimeout.Milliseconds()),
		fmt.Sprintf("sentinel parallel-syncs %s 2", m),
	}
}

func (t *sentinelTopology) start(ctx context.Context, e *Env) error {
	pn, err := e.prov.peerNet(ctx, e.id, e.proxies)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.peers = pn
	e.mu.Unlock()

	type planned struct {
		ns       NodeSpec
		px       nodeProxy
		announce string
		follows  bool
		rank     int // a Sentinel's: 0 for the first (its down-after step)
	}
	plan := make([]planned, len(e.spec.Nodes))
	sentinels := 0
	for i, ns := range e.spec.Nodes {
		port := redisPort
		if ns.Kind == Sentinel {
			port = sentinelPort
		}
		px, announce, follows, err := pn.link(ctx, ns.Name, port)
		if err != nil {
			return fmt.Errorf("peer link of %s: %w", ns.Name, err)
		}
		plan[i] = planned{ns, px, announce, follows, 0}
		if ns.Kind == Sentinel {
			plan[i].rank = sentinels
			sentinels++
		}
	}
	password := newPassword()
	primary := plan[0].announce // redis-1
	startOne := func(p planned) error {
		cfg := serverConfig{
			Name:         p.ns.Name,
			Password:     password,
			AppendOnly:   e.spec.RedisAppendOnly,
			Image:        e.spec.RedisImage,
			ReadyTimeout: e.spec.ReadyTimeout,
			Alias:        p.ns.Name,
		}
		if p.ns.Kind == Sentinel {
			cfg.Sentinel = true
			cfg.Conf = sentinelConf(p.announce, primary, password, e.spec.Replication,
				e.spec.Replication.sentinelDownAfter(e.prov.name())+time.Duration(p.rank)*SentinelDownAfterStep)
		} else {
			cfg.Conf = sentinelRedisConf(p.announce, primary, password, p.ns.Name != "redis-1")
		}
		pn.serverConfig(&cfg)
		return e.startTopoNode(ctx, p.ns, cfg, p.px, p.announce, p.follows)
	}
	// The primary first, then the replicas, then (once both replicas are
	// attached) the Sentinels: a Sentinel learns the replicas from the
	// primary's INFO, which it asks at once and then only every 10 s.
	if err := startOne(plan[0]); err != nil {
		return err
	}
	parallel := func(ps []planned) error {
		errs := make([]error, len(ps))
		var wg sync.WaitGroup
		for i, p := range ps {
			wg.Go(func() { errs[i] = startOne(p) })
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	if err := parallel(plan[1:3]); err != nil {
		return err
	}
	if err := t.waitSettled(ctx, e); err != nil {
		return err
	}
	if err := parallel(plan[3:]); err != nil {
		return err
	}
	return t.waitSettled(ctx, e)
}

// startTopoNode starts one Redis server or Sentinel of a topology with its
// client proxy and registers it with its peer link.
func (e *Env) startTopoNode(ctx context.Context, ns NodeSpec, cfg serverConfig, peer nodeProxy, announce string, follows bool) error {
	srv, err := e.prov.startRedis(ctx, cfg)
	if err != nil {
		return err
	}
	return e.addTopoNode(ctx, ns, srv, cfg.Password, peer, announce, follows)
}

// addTopoNode registers a started server of a topology with its peer link
// (nil: none) and gives it its client proxy.
func (e *Env) addTopoNode(ctx context.Context, ns NodeSpec, srv server, password string, peer nodeProxy, announce string, follows bool) error {
	n := &node{name: ns.Name, kind: ns.Kind, password: password, srv: srv,
		peer: peer, announce: announce, peerFollows: follows}
	if err := e.addNode(ctx, n); err != nil {
		return err
	}
	if follows {
		if err := peer.setUpstream(ctx, srv.addr()); err != nil {
			return err
		}
	}
	px, err := e.proxies.create(ctx, ns.Name, srv.addr())
	if err != nil {
		return err // Close destroys the server
	}
	n.mu.Lock()
	n.px = px
	n.mu.Unlock()
	return nil
}

// waitSettled waits until the set is whole: both replicas report
// master_link_status:up, and every Sentinel knows the 2 replicas and the 2
// other Sentinels. Up returns only then, so a failover right after Up works.
func (t *sentinelTopology) waitSettled(ctx context.Context, e *Env) error {
	ctx, cancel := context.WithTimeout(ctx, e.spec.ReadyTimeout)
	defer cancel()
	var last error
	err := pollEvery(ctx, 50*time.Millisecond, nil, func(ctx context.Context) error {
		last = t.whole(ctx, e)
		return last
	})
	if err != nil {
		return fmt.Errorf("redis-sentinel did not settle within %s: %w\n%s", e.spec.ReadyTimeout, errors.Join(last, err), t.diagnose(ctx, e))
	}
	return nil
}

// whole is one probe of waitSettled (at start, redis-1 the primary).
func (t *sentinelTopology) whole(ctx context.Context, e *Env) error {
	for _, n := range e.Nodes() {
		nn := n.(*node)
		switch {
		case nn.kind == Redis && nn.name != "redis-1":
			info, err := directInfo(ctx, nn, "replication")
			if err != nil {
				return err
			}
			if info["master_link_status"] != "up" {
				return fmt.Errorf("%s: master_link_status %q", nn.name, info["master_link_status"])
			}
		case nn.kind == Sentinel:
			c := directClient(nn)
			m, err := c.Do(ctx, "SENTINEL", "MASTER", SentinelMaster).Result()
			c.Close()
			if err != nil {
				return fmt.Errorf("%s: SENTINEL MASTER: %w", nn.name, err)
			}
			f := Pairs(m)
			if f["num-slaves"] != "2" || f["num-other-sentinels"] != "2" {
				return fmt.Errorf("%s knows %s replicas and %s other sentinels (want 2 and 2)", nn.name, f["num-slaves"], f["num-other-sentinels"])
			}
		}
	}
	return nil
}

// settled: every Sentinel names the same primary, which reports role
// master, and every other Redis node is a replica with its link up; and
// every Sentinel is done with the last failover: its master entry is the
// primary with flags "master" alone (no s_down, o_down or
// failover_in_progress: GET-MASTER-ADDR-BY-NAME already names the promoted
// replica while the leader still re-points the others, and a failover
// then was seen to run into the next one), and it sees the set's other
// Redis nodes as replicas that are neither down nor disconnected.
func (t *sentinelTopology) settled(ctx context.Context, e *Env) error {
	p, err := t.primary(ctx, e)
	if err != nil {
		return err
	}
	prim := p.(*node)
	if r := nodeRole(ctx, prim); r != RolePrimary {
		return fmt.Errorf("the Sentinels name %s, which is %s", prim.name, r)
	}
	for _, n := range e.Nodes() {
		nn := n.(*node)
		switch {
		case nn.kind == Sentinel:
			c := directClient(nn)
			a, err := c.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster).StringSlice()
			c.Close()
			if err != nil || len(a) != 2 {
				return fmt.Errorf("%s: SENTINEL GET-MASTER-ADDR-BY-NAME: %q, %v", nn.name, a, err)
			}
			if addr := net.JoinHostPort(a[0], a[1]); addr != prim.announce {
				return fmt.Errorf("%s names %s, the others %s (%s)", nn.name, addr, prim.announce, prim.name)
			}
			if err := t.sentinelDone(ctx, e, nn, prim); err != nil {
				return err
			}
		case nn.kind == Redis && nn != prim && nn.peer != nil: // the set's nodes, not a workload's resource beside them
			info, err := directInfo(ctx, nn, "replication")
			if err != nil {
				return err
			}
			if info["role"] != "slave" || info["master_link_status"] != "up" {
				return fmt.Errorf("%s: role %s, master_link_status %q (not yet a replica of %s)", nn.name, info["role"], info["master_link_status"], prim.name)
			}
		}
	}
	return nil
}

// sentinelDone says whether Sentinel s is done with the last failover:
// its master entry is prim with flags "master" alone, and it sees every
// other Redis node of the set as a replica with flags "slave" alone.
func (t *sentinelTopology) sentinelDone(ctx context.Context, e *Env, s, prim *node) error {
	c := directClient(s)
	defer c.Close()
	m, err := c.Do(ctx, "SENTINEL", "MASTER", SentinelMaster).Result()
	if err != nil {
		return fmt.Errorf("%s: SENTINEL MASTER: %w", s.name, err)
	}
	f := Pairs(m)
	if addr := net.JoinHostPort(f["ip"], f["port"]); addr != prim.announce || f["flags"] != "master" {
		return fmt.Errorf("%s: its master entry is %s with flags %s (want %s (%s), flags master)", s.name, addr, f["flags"], prim.name, prim.announce)
	}
	rs, err := c.Do(ctx, "SENTINEL", "REPLICAS", SentinelMaster).Slice()
	if err != nil {
		return fmt.Errorf("%s: SENTINEL REPLICAS: %w", s.name, err)
	}
	flags := map[string]string{}
	for _, r := range rs {
		f := Pairs(r)
		flags[net.JoinHostPort(f["ip"], f["port"])] = f["flags"]
	}
	for _, n := range e.ByKind(Redis) {
		nn := n.(*node)
		if nn == prim || nn.peer == nil {
			continue
		}
		if fl, ok := flags[nn.announce]; !ok || fl != "slave" {
			return fmt.Errorf("%s sees replica %s with flags %q (want slave)", s.name, nn.name, fl)
		}
	}
	return nil
}

// directClient is a one-connection client to the server itself (no proxy);
// its dial, read and write timeouts bound every probe.
func directClient(n *node) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: n.srv.addr(), Password: n.password, MaxRetries: -1, PoolSize: 1,
		DialTimeout: topoProbeTimeout, ReadTimeout: topoProbeTimeout, WriteTimeout: topoProbeTimeout,
	})
}

// directInfo returns one INFO section of a node, asked directly.
func directInfo(ctx context.Context, n *node, section string) (map[string]string, error) {
	c := directClient(n)
	defer c.Close()
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, fmt.Errorf("%s: INFO %s: %w", n.name, section, err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

// Pairs turns a Redis reply that lists fields — a RESP2 flat key/value
// array or a RESP3 map, e.g. SENTINEL MASTER, SENTINEL REPLICAS' entries —
// into a map of strings (anything else gives an empty map).
func Pairs(v any) map[string]string {
	out := map[string]string{}
	switch v := v.(type) {
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			out[fmt.Sprint(v[i])] = fmt.Sprint(v[i+1])
		}
	case map[any]any:
		for k, x := range v {
			out[fmt.Sprint(k)] = fmt.Sprint(x)
		}
	}
	return out
}

func (t *sentinelTopology) roles(ctx context.Context, e *Env) (map[string]Role, error) {
	nodes := e.Nodes()
	roles := make([]Role, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { roles[i] = nodeRole(ctx, n.(*node)) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := map[string]Role{}
	for i, n := range nodes {
		out[n.Name()] = roles[i]
	}
	return out, nil
}

// nodeRole asks one node directly what it is.
func nodeRole(ctx context.Context, n *node) Role {
	c := directClient(n)
	defer c.Close()
	if n.kind == Sentinel {
		if err := c.Ping(ctx).Err(); err != nil {
			return RoleDown
		}
		return RoleSentinel
	}
	r, err := c.Do(ctx, "ROLE").Slice()
	if err != nil || len(r) == 0 {
		return RoleDown
	}
	switch r[0] {
	case "master":
		return RolePrimary
	case "slave":
		return RoleReplica
	}
	return RoleDown
}

// sentinelPrimary returns the node a majority of the Sentinels names as the
// master of the set (asked directly, in parallel).
func (t *sentinelTopology) primary(ctx context.Context, e *Env) (Node, error) {
	sentinels := e.ByKind(Sentinel)
	answers := make([]string, len(sentinels))
	errs := make([]error, len(sentinels))
	var wg sync.WaitGroup
	for i, s := range sentinels {
		wg.Go(func() {
			c := directClient(s.(*node))
			defer c.Close()
			a, err := c.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster).StringSlice()
			if err == nil && len(a) == 2 {
				answers[i] = net.JoinHostPort(a[0], a[1])
			}
			errs[i] = err
		})
	}
	wg.Wait()
	votes := map[string]int{}
	for _, a := range answers {
		if a != "" {
			votes[a]++
		}
	}
	for addr, v := range votes {
		if v >= sentinelQuorum {
			if n, ok := e.nodeByAnnounce(addr); ok {
				return n, nil
			}
			return nil, fmt.Errorf("the Sentinels name %s as primary, which is no node's announced address", addr)
		}
	}
	return nil, fmt.Errorf("no majority of the Sentinels names one primary (answers %q): %w", answers, errors.Join(errs...))
}

func (t *sentinelTopology) failover(ctx context.Context, e *Env, how FailoverMode) (FailoverResult, error) {
	old, err := t.primary(ctx, e)
	if err != nil {
		return FailoverResult{}, fmt.Errorf("failover: %w", err)
	}
	res := FailoverResult{Mode: how, Old: old.Name(), Started: time.Now()}
	switch how {
	case FailoverKill:
		if err := old.Kill(ctx); err != nil {
			return res, fmt.Errorf("failover: kill %s: %w", old.Name(), err)
		}
		on := old.(*node)
		on.mu.Lock()
		on.rejoin = &sentinelRejoin{t: t, e: e}
		on.mu.Unlock()
	case FailoverForce:
		res.Started = time.Now()
		if err := t.askFailover(ctx, e); err != nil {
			return res, err
		}
	}
	var last error
	err = pollEvery(ctx, topoPoll, nil, func(ctx context.Context) error {
		p, err := t.primary(ctx, e)
		switch {
		case err != nil:
			last = err
		case p.Name() == old.Name():
			last = fmt.Errorf("the Sentinels still name %s", old.Name())
		case nodeRole(ctx, p.(*node)) != RolePrimary:
			last = fmt.Errorf("the Sentinels name %s, which does not report role master yet", p.Name())
		default:
			res.New, res.Promoted = p.Name(), time.Now()
			return nil
		}
		return last
	})
	if err != nil {
		return res, fmt.Errorf("failover (%s) of %s: no new primary: %w\n%s", how, old.Name(), errors.Join(last, err), t.diagnose(ctx, e))
	}
	res.Took = res.Promoted.Sub(res.Started)
	return res, nil
}

// sentinelRejoin is the pending rejoin of a killed primary (node.rejoin).
// Restarted, it is an empty master of its own, and Sentinel re-points it
// only once it has reported role master for 8 s and its INFO (asked every
// 10 s) says so: 8-18 s (11.4 s measured). afterStart makes it a replica of
// the primary the Sentinels name at once, as Sentinel would (REPLICAOF,
// CONFIG REWRITE where it has a config file); Sentinel then finds it a
// replica already. If the Sentinels still name the node itself (no
// replica was promoted), it stays a master.
type sentinelRejoin struct {
	t *sentinelTopology
	e *Env
}

func (r *sentinelRejoin) beforeStart(context.Context, *node) error { return nil }

func (r *sentinelRejoin) afterStart(ctx context.Context, n *node) error {
	p, err := r.t.primary(ctx, r.e)
	if err != nil {
		return fmt.Errorf("redis-sentinel: rejoin %s: %w", n.name, err)
	}
	if p.Name() == n.name {
		return nil
	}
	host, port, err := net.SplitHostPort(p.(*node).announce)
	if err != nil {
		return fmt.Errorf("redis-sentinel: rejoin %s: the primary %s announces %q: %w", n.name, p.Name(), p.(*node).announce, err)
	}
	c := directClient(n)
	defer c.Close()
	if err := c.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		return fmt.Errorf("redis-sentinel: rejoin %s: REPLICAOF %s (%s): %w", n.name, p.Name(), p.(*node).announce, err)
	}
	// A restart keeps what it is told (a docker node runs without a
	// config file: its directives are command-line arguments, and CONFIG
	// REWRITE refuses; Sentinel ignores that failure too).
	if err := c.Do(ctx, "CONFIG", "REWRITE").Err(); err != nil && !strings.Contains(err.Error(), "without a config file") {
		return fmt.Errorf("redis-sentinel: rejoin %s: CONFIG REWRITE: %w", n.name, err)
	}
	return nil
}

// askFailover sends SENTINEL FAILOVER to the first Sentinel that accepts it.
func (t *sentinelTopology) askFailover(ctx context.Context, e *Env) error {
	var errs []error
	for _, s := range e.ByKind(Sentinel) {
		c := directClient(s.(*node))
		err := c.Do(ctx, "SENTINEL", "FAILOVER", SentinelMaster).Err()
		c.Close()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", s.Name(), err))
	}
	return fmt.Errorf("failover: no Sentinel accepted SENTINEL FAILOVER: %w", errors.Join(errs...))
}
