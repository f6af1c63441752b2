package infra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/moby/moby/client"
	"github.com/redis/go-redis/v9"
)

// ExternalTarget is one server faultline does not own (--provider
// external). faultline puts its proxy in front of it; it never starts,
// stops or flushes it. Every key it writes there starts with the run's
// KeyPrefix and every table lives in the run's Schema; both are removed
// when the environment closes.
type ExternalTarget struct {
	Name string // redis-1.., pg-1..: the names the fault grammar and implementations use
	Kind Kind
	// Addr is a Redis target's host:port.
	Addr string
	// Password is a Redis target's password ("" = none). Never printed.
	Password string
	// DSN is a PostgreSQL target's postgres:// URL, password included.
	// Never printed: see RedactDSN.
	DSN string
	// Container names a docker container running this server that
	// faultline may kill, pause and restart with the Docker API; "" =
	// process faults on this target are refused.
	Container string
	// Shares names the target whose server this node runs on when it has
	// none of its own (the workload's "resource" nodes share the first
	// target of their kind); "" = its own server. A node that shares
	// never gets process faults: they would hit the other node's server.
	Shares string
	// given is the name the target was given as (redis-2) when a node of
	// another name (resource) runs on it alone.
	given string
}

// Public is the target without secrets, for headers, results and logs:
// "redis-1=127.0.0.1:6379" or "pg-1=postgres://user@host:5432/db",
// with "(container NAME)" when faultline may control its process.
func (t ExternalTarget) Public() string {
	s := t.Name + "=" + t.Addr
	if t.Kind == Postgres {
		s = t.Name + "=" + RedactDSN(t.DSN)
	}
	if t.Container != "" {
		s += " (container " + t.Container + ")"
	}
	return s
}

// RedactDSN keeps a postgres:// URL's user, host, port and database and
// drops its password and parameters; anything else becomes "<dsn>".
func RedactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		return "<dsn>"
	}
	out := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	if u.User != nil {
		out.User = url.User(u.User.Username())
	}
	return out.String()
}

// ProcessControl says whether faultline can kill, pause and restart
// target's server, and if not, why.
// A node sharing another's server is refused with the reason of that
// server, so one server gives one reason whichever nodes run on it.
func (t ExternalTarget) ProcessControl() (bool, string) {
	switch {
	case t.Shares != "" && t.Container != "":
		return false, fmt.Sprintf("%s runs on %s's server (container %s): a process fault on %s would kill %s too; aim it at %s", t.Name, t.Shares, t.Container, t.Name, t.Shares, t.Shares)
	case t.Container != "":
		return true, "docker container " + t.Container
	}
	return false, "faultline does not own the process of external target " + t.server() + " (give container=NAME to let it use the Docker API)"
}

// server is the name of the target whose server t runs on.
func (t ExternalTarget) server() string {
	switch {
	case t.Shares != "":
		return t.Shares
	case t.given != "":
		return t.given
	}
	return t.Name
}

var namespaceRE = regexp.MustCompile(`^[a-z0-9_]{1,40}$`)

// NewNamespace returns a fresh run namespace ("r" and 8 hex digits).
func NewNamespace() string { return "r" + randomHex(4) }

// CheckNamespace rejects a namespace that would not make a safe key
// prefix and schema name.
func CheckNamespace(ns string) error {
	if !namespaceRE.MatchString(ns) {
		return fmt.Errorf("namespace %q: want 1-40 characters of a-z, 0-9 and _", ns)
	}
	return nil
}

// KeyPrefix is the prefix of every Redis key a run in namespace ns writes
// on external targets.
func KeyPrefix(ns string) string { return "faultline:" + ns + ":" }

// runGIDPrefix is the prefix of the prepared-transaction gids of the run
// whose token (Env.RunToken) is token: impl/txn.RunGIDPrefix, which infra
// does not import.
func runGIDPrefix(token string) string { return "fl:" + token + ":" }

// Schema is the PostgreSQL schema every table of a run in namespace ns
// lives in on external targets.
func Schema(ns string) string { return "faultline_" + ns }

// ExternalGCPattern and ExternalGCSchemas are what GCExternal removes when
// no namespace is given: every faultline run's keys and schemas.
const (
	ExternalGCPattern = "faultline:*"
	externalGCSchemas = `faultline\_%`
)

// externalCallTimeout bounds each call to an external server.
const externalCallTimeout = 10 * time.Second

// externalProvider hands out servers that already run.
type externalProvider struct {
	targets []ExternalTarget
	nodes   []NodeSpec // the run's nodes: a target none of them is named after is free
	ns      string

	mu      sync.Mutex
	cli     client.APIClient // docker, on first use
	schemas map[string]bool  // "db/schema" this provider created
	// moved holds a container's server's address after a restart
	// published its port anew (docker picks a new ephemeral port), by
	// target name; every node on that server follows it.
	moved map[string]string
}

func newExternalProvider(spec Spec) *externalProvider {
	return &externalProvider{targets: spec.External, nodes: spec.Nodes, ns: spec.Namespace, schemas: map[string]bool{}, moved: map[string]string{}}
}

func (p *externalProvider) name() string { return "external" }

// peerNet: faultline does not own the replication between your servers.
func (p *externalProvider) peerNet(context.Context, string, proxyHost) (peerNet, error) {
	return nil, errors.New("external provider: topologies (replication links between servers) are not supported: faultline does not own the servers' replication")
}

func (p *externalProvider) close(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cli != nil {
		return p.cli.Close()
	}
	return nil
}

func (p *externalProvider) docker(ctx context.Context) (client.APIClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cli == nil {
		ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
		defer cancel()
		cli, err := dockerClient(ctx)
		if err != nil {
			return nil, err
		}
		p.cli = cli
	}
	return p.cli, nil
}

// target finds the target for node name. A node with no target of its own
// that is not one of the numbered nodes (the workload's "resource" and
// "resource-pg") takes the first target of its kind no node of the run is
// named after (a server of its own: given one more target than the
// implementation needs, a kill of redis-1 leaves the counter alone), else
// shares the first target of its kind: its keys and tables are apart by
// name, it gets a proxy of its own, and it refuses process faults.
func (p *externalProvider) target(name string, kind Kind) (ExternalTarget, error) {
	var first, free *ExternalTarget
	n := 0
	for i, t := range p.targets {
		if t.Kind != kind {
			continue
		}
		n++
		if first == nil {
			first = &p.targets[i]
		}
		if t.Name == name {
			return t, nil
		}
		if free == nil && !slices.ContainsFunc(p.nodes, func(ns NodeSpec) bool { return ns.Name == t.Name }) {
			free = &p.targets[i]
		}
	}
	numbered := regexp.MustCompile(`^(redis|pg)-[0-9]+$`).MatchString(name)
	if free != nil && !numbered {
		t := *free
		t.Name, t.given = name, free.Name
		return t, nil
	}
	if first != nil && !numbered {
		t := *first
		t.Name, t.Shares = name, first.Name
		return t, nil
	}
	flag := "--redis ADDR[,ADDR…]"
	if kind == Postgres {
		flag = "--postgres DSN[,DSN…]"
	}
	return ExternalTarget{}, fmt.Errorf("node %s: no external %s target (%d given): give more with %s or a targets file", name, kind, n, flag)
}

func (p *externalProvider) startRedis(ctx context.Context, cfg serverConfig) (server, error) {
	t, err := p.target(cfg.Name, Redis)
	if err != nil {
		return nil, err
	}
	s := &externalServer{p: p, t: t, ns: p.ns, readyTimeout: cfg.ReadyTimeout}
	ctx, cancel := context.WithTimeout(ctx, externalCallTimeout)
	defer cancel()
	if err := s.bindContainer(ctx); err != nil {
		return nil, err
	}
	c := s.redisClient()
	defer c.Close()
	info, err := c.InfoMap(ctx, "server").Result()
	if err != nil {
		return nil, fmt.Errorf("external %s at %s: %w", t.Name, t.Addr, err)
	}
	s.ver = info["Server"]["redis_version"]
	keys, _, err := c.Scan(ctx, 0, KeyPrefix(p.ns)+"*", 1000).Result()
	if err == nil && len(keys) == 0 {
		keys, err = scanAll(ctx, c, KeyPrefix(p.ns)+"*", 1)
	}
	if err != nil {
		return nil, fmt.Errorf("external %s at %s: look for keys under %q: %w", t.Name, t.Addr, KeyPrefix(p.ns), err)
	}
	if len(keys) > 0 {
		return nil, fmt.Errorf("external %s at %s: keys under the run's prefix %q exist already (another run, or a crashed one): pick another --namespace, or remove them with faultline gc --provider external", t.Name, t.Addr, KeyPrefix(p.ns))
	}
	return s, nil
}

func (p *externalProvider) startPostgres(ctx context.Context, cfg serverConfig) (server, error) {
	t, err := p.target(cfg.Name, Postgres)
	if err != nil {
		return nil, err
	}
	s := &externalServer{p: p, t: t, ns: p.ns, readyTimeout: cfg.ReadyTimeout}
	ctx, cancel := context.WithTimeout(ctx, externalCallTimeout)
	defer cancel()
	if err := s.bindContainer(ctx); err != nil {
		return nil, err
	}
	c, err := pgx.Connect(ctx, t.DSN)
	if err != nil {
		return nil, fmt.Errorf("external %s at %s: %w", t.Name, RedactDSN(t.DSN), err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	if err := c.QueryRow(ctx, `SHOW server_version`).Scan(&s.ver); err != nil {
		return nil, fmt.Errorf("external %s at %s: %w", t.Name, RedactDSN(t.DSN), err)
	}
	// Two nodes on one database (pg-1 and resource-pg) share the schema:
	// the first creates it, the second finds it created by this run.
	schema := Schema(p.ns)
	p.mu.Lock()
	defer p.mu.Unlock()
	db := RedactDSN(t.DSN)
	if p.schemas[db+"/"+schema] {
		return s, nil
	}
	if _, err := c.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "42P06" { // duplicate_schema
			return nil, fmt.Errorf("external %s at %s: schema %s exists already (another run, or a crashed one): pick another --namespace, or remove it with faultline gc --provider external", t.Name, db, schema)
		}
		return nil, fmt.Errorf("external %s at %s: create schema %s (the user needs CREATE on the database): %w", t.Name, db, schema, err)
	}
	p.schemas[db+"/"+schema] = true
	return s, nil
}

// externalServer is a server faultline does not own. Process operations
// go to its docker container when it names one and fail otherwise (the
// run refuses such faults before it starts; see ExternalTarget.ProcessControl).
type externalServer struct {
	p            *externalProvider
	t            ExternalTarget
	ns           string
	ver          string
	readyTimeout time.Duration

	// cport is the container port ("6379/tcp") published on the target's
	// address, when the container publishes it; "" = the address is fixed
	// (host networking, or a port faultline could not match).
	cport string

	mu             sync.Mutex
	killed, paused bool
}

// givenAddr is the host:port the target was given with.
func (s *externalServer) givenAddr() string {
	if s.t.Kind == Postgres {
		u, err := url.Parse(s.t.DSN)
		if err == nil {
			return u.Host
		}
	}
	return s.t.Addr
}

// addr is the server's address now: the given one, or the one its
// container published when it last restarted.
func (s *externalServer) addr() string {
	s.p.mu.Lock()
	a, ok := s.p.moved[s.t.server()]
	s.p.mu.Unlock()
	if ok {
		return a
	}
	return s.givenAddr()
}

// current is the target pointed at the server's address now.
func (s *externalServer) current() ExternalTarget {
	t := s.t
	if t.Kind == Redis {
		t.Addr = s.addr()
		return t
	}
	if u, err := url.Parse(t.DSN); err == nil {
		u.Host = s.addr()
		t.DSN = u.String()
	}
	return t
}

// bindContainer checks that the target's container runs and, when it
// publishes ports, that one of them is the target's: a container= that
// names the wrong container would have faultline kill a server it does
// not measure. It remembers that port to follow it across restarts.
func (s *externalServer) bindContainer(ctx context.Context) error {
	if s.t.Container == "" || s.t.Shares != "" {
		return nil
	}
	cli, err := s.p.docker(ctx)
	if err != nil {
		return fmt.Errorf("external %s: container %s: %w", s.t.Name, s.t.Container, err)
	}
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	in, err := cli.ContainerInspect(ctx, s.t.Container, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("external %s: container %s: %w (container=NAME must name a container of the docker engine faultline reaches)", s.t.Name, s.t.Container, err)
	}
	if st := in.Container.State; st == nil || !st.Running || st.Paused {
		status := "not running"
		if st != nil {
			status = string(st.Status)
		}
		return fmt.Errorf("external %s: container %s is %s: start it (faultline leaves it as it finds it, and wants it running)", s.t.Name, s.t.Container, status)
	}
	_, port, _ := net.SplitHostPort(s.givenAddr())
	var published []string
	if ns := in.Container.NetworkSettings; ns != nil {
		for cp, bs := range ns.Ports {
			for _, b := range bs {
				published = append(published, b.HostPort)
				if b.HostPort == port {
					s.cport = cp.String()
				}
			}
		}
	}
	if s.cport == "" && len(published) > 0 {
		return fmt.Errorf("external %s at %s: container %s publishes host ports %s, not %s: is container= the container of this server?", s.t.Name, s.givenAddr(), s.t.Container, strings.Join(published, ", "), port)
	}
	return nil
}

// follow reads the host port the container publishes cport on after a
// restart and points every node of this server at it.
func (s *externalServer) follow(ctx context.Context, cli client.APIClient) error {
	if s.cport == "" {
		return nil
	}
	host, _, _ := net.SplitHostPort(s.givenAddr())
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	return pollEvery(ctx, 50*time.Millisecond, nil, func(ctx context.Context) error {
		in, err := cli.ContainerInspect(ctx, s.t.Container, client.ContainerInspectOptions{})
		if err != nil {
			return err
		}
		if ns := in.Container.NetworkSettings; ns != nil {
			for cp, bs := range ns.Ports {
				for _, b := range bs {
					if cp.String() == s.cport && b.HostPort != "" && b.HostPort != "0" {
						a := net.JoinHostPort(host, b.HostPort)
						if a != s.addr() {
							slog.Info("infra: external container published its port anew", "node", s.t.Name, "container", s.t.Container, "addr", a)
						}
						s.p.mu.Lock()
						s.p.moved[s.t.server()] = a
						s.p.mu.Unlock()
						return nil
					}
				}
			}
		}
		return fmt.Errorf("container %s publishes no host port for %s yet", s.t.Container, s.cport)
	})
}

func (s *externalServer) version() string { return s.ver }
func (s *externalServer) logTail() string { return "" }

func (s *externalServer) logLines(int) string { return "" }

// password is the Redis password the node hands to clients.
func (s *externalServer) password() string { return s.t.Password }

// dsnFor is the target's DSN pointed at addr (the proxy, or the server
// itself) with the run's schema first on the search_path.
func (s *externalServer) dsnFor(addr string) string {
	u, err := url.Parse(s.t.DSN)
	if err != nil {
		return ""
	}
	u.Host = addr
	q := u.Query()
	q.Set("search_path", Schema(s.ns))
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", "5")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func (s *externalServer) redisClient() *redis.Client { return externalRedis(s.current()) }

// externalRedis is a small client of Redis target t, every call bounded.
func externalRedis(t ExternalTarget) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: t.Addr, Password: t.Password, MaxRetries: -1,
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		ContextTimeoutEnabled: true, PoolSize: 2,
	})
}

var errNotOwned = errors.New("not owned")

func (s *externalServer) container(ctx context.Context, what string) (client.APIClient, error) {
	if s.t.Container == "" || s.t.Shares != "" {
		_, why := s.t.ProcessControl()
		return nil, fmt.Errorf("%s %s: %w: %s", what, s.t.Name, errNotOwned, why)
	}
	return s.p.docker(ctx)
}

func (s *externalServer) kill(ctx context.Context) error {
	cli, err := s.container(ctx, "kill")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	if _, err := cli.ContainerKill(ctx, s.t.Container, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		return fmt.Errorf("kill container %s (%s): %w", s.t.Container, s.t.Name, err)
	}
	s.mu.Lock()
	s.killed = true
	s.mu.Unlock()
	return nil
}

func (s *externalServer) stop(ctx context.Context) error {
	cli, err := s.container(ctx, "stop")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	t := 10
	if _, err := cli.ContainerStop(ctx, s.t.Container, client.ContainerStopOptions{Timeout: &t}); err != nil {
		return fmt.Errorf("stop container %s (%s): %w", s.t.Container, s.t.Name, err)
	}
	s.mu.Lock()
	s.killed = true
	s.mu.Unlock()
	return nil
}

// start starts the container again, follows the port it publishes (docker
// gives an ephemeral port anew) and waits until the server answers there.
func (s *externalServer) start(ctx context.Context) error {
	cli, err := s.container(ctx, "restart")
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	_, err = cli.ContainerStart(cctx, s.t.Container, client.ContainerStartOptions{})
	cancel()
	if err != nil {
		return fmt.Errorf("start container %s (%s): %w", s.t.Container, s.t.Name, err)
	}
	if err := s.follow(ctx, cli); err != nil {
		return fmt.Errorf("container %s (%s) restarted: its published port: %w", s.t.Container, s.t.Name, err)
	}
	s.mu.Lock()
	s.killed = false
	s.mu.Unlock()
	rt := s.readyTimeout
	if rt <= 0 {
		rt = 30 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, rt)
	defer cancel()
	return pollEvery(rctx, 50*time.Millisecond, nil, s.ping)
}

func (s *externalServer) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if s.t.Kind == Redis {
		c := s.redisClient()
		defer c.Close()
		return c.Ping(ctx).Err()
	}
	c, err := pgx.Connect(ctx, s.current().DSN)
	if err != nil {
		return err
	}
	return c.Close(ctx)
}

func (s *externalServer) pause(ctx context.Context) error  { return s.setPaused(ctx, true) }
func (s *externalServer) resume(ctx context.Context) error { return s.setPaused(ctx, false) }

// setPaused pauses or unpauses the target's container (docker pause).
func (s *externalServer) setPaused(ctx context.Context, pause bool) error {
	op, verb := "resume", "unpause"
	if pause {
		op, verb = "pause", "pause"
	}
	cli, err := s.container(ctx, op)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	if pause {
		_, err = cli.ContainerPause(ctx, s.t.Container, client.ContainerPauseOptions{})
	} else {
		_, err = cli.ContainerUnpause(ctx, s.t.Container, client.ContainerUnpauseOptions{})
	}
	if err != nil {
		return fmt.Errorf("%s container %s (%s): %w", verb, s.t.Container, s.t.Name, err)
	}
	s.mu.Lock()
	s.paused = pause
	s.mu.Unlock()
	return nil
}

// destroy leaves the server as the run found it: a container faultline
// paused or killed runs again, and every key under the run's prefix and
// the run's schema are removed. It never stops the server.
func (s *externalServer) destroy(ctx context.Context) error {
	s.mu.Lock()
	paused, killed := s.paused, s.killed
	s.mu.Unlock()
	var errs []error
	if paused {
		errs = append(errs, s.resume(ctx))
	}
	if killed {
		errs = append(errs, s.start(ctx))
	}
	if s.t.Shares != "" && s.t.Container != "" {
		// Its server's own node may be restarting the container right
		// now (destroys run in parallel): clean once it answers.
		rt := s.readyTimeout
		if rt <= 0 {
			rt = 30 * time.Second
		}
		rctx, cancel := context.WithTimeout(ctx, rt)
		defer cancel()
		return pollEvery(rctx, 100*time.Millisecond, nil, s.clean)
	}
	errs = append(errs, s.clean(ctx))
	return errors.Join(errs...)
}

// clean removes what the run wrote: the keys under its prefix, its schema.
func (s *externalServer) clean(ctx context.Context) error {
	var (
		n   int
		err error
	)
	if s.t.Kind == Redis {
		n, err = cleanRedis(ctx, s.current(), KeyPrefix(s.ns)+"*")
	} else {
		n, err = cleanPostgres(ctx, s.current(), Schema(s.ns), runGIDPrefix(s.ns))
	}
	slog.Debug("infra: external target cleaned", "node", s.t.Name, "removed", n, "err", err)
	return err
}

// scanAll returns the keys matching pattern (at most limit, 0 = all),
// bounded by ctx.
func scanAll(ctx context.Context, c *redis.Client, pattern string, limit int) ([]string, error) {
	var (
		out    []string
		cursor uint64
	)
	for {
		keys, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return out, err
		}
		out = append(out, keys...)
		if next == 0 || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		cursor = next
	}
}

// cleanRedis deletes every key matching pattern on t; it returns how many.
func cleanRedis(ctx context.Context, t ExternalTarget, pattern string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*externalCallTimeout)
	defer cancel()
	c := externalRedis(t)
	defer c.Close()
	keys, err := scanAll(ctx, c, pattern, 0)
	if err != nil {
		return 0, fmt.Errorf("external %s: scan %s: %w", t.Name, pattern, err)
	}
	for i := 0; i < len(keys); i += 500 {
		if err := c.Del(ctx, keys[i:min(i+500, len(keys))]...).Err(); err != nil {
			return i, fmt.Errorf("external %s: delete keys %s: %w", t.Name, pattern, err)
		}
	}
	return len(keys), nil
}

// cleanPostgres drops the schemas named like (LIKE) pattern on t's
// database, after rolling back the transactions prepared there with a gid
// starting with gids (a run's "fl:<namespace>:", or "fl:" for every run);
// it returns how many schemas it dropped.
func cleanPostgres(ctx context.Context, t ExternalTarget, like, gids string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*externalCallTimeout)
	defer cancel()
	c, err := pgx.Connect(ctx, t.DSN)
	if err != nil {
		return 0, fmt.Errorf("external %s at %s: %w", t.Name, RedactDSN(t.DSN), err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	if _, err := c.Exec(ctx, `SET lock_timeout = '5s'`); err != nil {
		return 0, err
	}
	// The run's prepared transactions first: they hold locks on its
	// tables, which DROP SCHEMA would wait for.
	rows, _ := c.Query(ctx, `SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND left(gid, length($1)) = $1`, gids)
	prepared, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("external %s: list prepared transactions %s*: %w", t.Name, gids, err)
	}
	for _, g := range prepared {
		if _, err := c.Exec(ctx, `ROLLBACK PREPARED '`+strings.ReplaceAll(g, "'", "''")+`'`); err != nil {
			return 0, fmt.Errorf("external %s: roll back prepared transaction %s: %w", t.Name, g, err)
		}
	}
	rows, _ = c.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname LIKE $1`, like)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("external %s: list schemas %s: %w", t.Name, like, err)
	}
	for i, name := range names {
		if _, err := c.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`); err != nil {
			return i, fmt.Errorf("external %s: drop schema %s: %w", t.Name, name, err)
		}
	}
	return len(names), nil
}

// GCExternal removes from targets what runs of faultline left there after
// a crash: with ns, that run's keys and schema; without, every key
// matching faultline:* and every schema named faultline_* (so run it when
// no other run uses these servers). removed lists what it removed.
func GCExternal(ctx context.Context, targets []ExternalTarget, ns string) (removed []string, err error) {
	pattern, like, gids := ExternalGCPattern, externalGCSchemas, "fl:"
	if ns != "" {
		if err := CheckNamespace(ns); err != nil {
			return nil, err
		}
		pattern, like, gids = KeyPrefix(ns)+"*", Schema(ns), runGIDPrefix(ns)
	}
	var errs []error
	for _, t := range targets {
		var n int
		var err error
		if t.Kind == Redis {
			n, err = cleanRedis(ctx, t, pattern)
			removed = append(removed, fmt.Sprintf("%s: %d keys matching %s", t.Public(), n, pattern))
		} else {
			n, err = cleanPostgres(ctx, t, like, gids)
			removed = append(removed, fmt.Sprintf("%s: %d schemas like %s", t.Public(), n, like))
		}
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

// DescribeExternal says what a run on spec's external targets would create
// there, for --dry-run; it connects to nothing.
func DescribeExternal(spec Spec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "provider external, namespace %s\n", spec.Namespace)
	for _, n := range spec.Nodes {
		p := &externalProvider{targets: spec.External, nodes: spec.Nodes}
		t, err := p.target(n.Name, n.Kind)
		if err != nil {
			fmt.Fprintf(&b, "  %s: %v\n", n.Name, err)
			continue
		}
		what := fmt.Sprintf("keys under %q (SCAN %s* must find none first)", KeyPrefix(spec.Namespace), KeyPrefix(spec.Namespace))
		if n.Kind == Postgres {
			what = fmt.Sprintf("schema %s (must not exist), its tables reached through search_path;\n"+
				"    prepared transactions (two-phase implementations) named %s…, rolled back if left", Schema(spec.Namespace), runGIDPrefix(spec.Namespace))
		}
		ctl, why := t.ProcessControl()
		proc := "process faults refused: " + why
		if ctl {
			proc = "kill/pause/restart through " + why
		}
		fmt.Fprintf(&b, "  %s -> proxy on 127.0.0.1 -> %s\n    creates %s\n    %s\n", n.Name, t.Public(), what, proc)
	}
	b.WriteString("  all of it is removed when the run ends (or by faultline gc --provider external … --namespace " + spec.Namespace + ")\n")
	return b.String()
}
