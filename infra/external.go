package infra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
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
func (t ExternalTarget) ProcessControl() (bool, string) {
	if t.Container != "" {
		return true, "docker container " + t.Container
	}
	return false, "faultline does not own the process of external target " + t.Name + " (give container=NAME to let it use the Docker API)"
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
	ns      string

	mu      sync.Mutex
	cli     client.APIClient // docker, on first use
	schemas map[string]bool  // "db/schema" this provider created
}

func newExternalProvider(spec Spec) *externalProvider {
	return &externalProvider{targets: spec.External, ns: spec.Namespace, schemas: map[string]bool{}}
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
// "resource-pg") shares the first target of its kind: its keys and tables
// are apart by name, and it gets a proxy of its own.
func (p *externalProvider) target(name string, kind Kind) (ExternalTarget, error) {
	var first *ExternalTarget
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
	}
	numbered := regexp.MustCompile(`^(redis|pg)-[0-9]+$`).MatchString(name)
	if first != nil && !numbered {
		t := *first
		t.Name = name
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

	mu             sync.Mutex
	killed, paused bool
}

func (s *externalServer) addr() string {
	if s.t.Kind == Postgres {
		u, err := url.Parse(s.t.DSN)
		if err == nil {
			return u.Host
		}
	}
	return s.t.Addr
}

func (s *externalServer) version() string { return s.ver }
func (s *externalServer) logTail() string { return "" }

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

func (s *externalServer) redisClient() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: s.t.Addr, Password: s.t.Password, MaxRetries: -1,
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		ContextTimeoutEnabled: true, PoolSize: 2,
	})
}

var errNotOwned = errors.New("not owned")

func (s *externalServer) container(ctx context.Context, what string) (client.APIClient, error) {
	if s.t.Container == "" {
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

// start starts the container again and waits until the server answers on
// the target's address (the container must publish a fixed port).
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
	c, err := pgx.Connect(ctx, s.t.DSN)
	if err != nil {
		return err
	}
	return c.Close(ctx)
}

func (s *externalServer) pause(ctx context.Context) error {
	cli, err := s.container(ctx, "pause")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	if _, err := cli.ContainerPause(ctx, s.t.Container, client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("pause container %s (%s): %w", s.t.Container, s.t.Name, err)
	}
	s.mu.Lock()
	s.paused = true
	s.mu.Unlock()
	return nil
}

func (s *externalServer) resume(ctx context.Context) error {
	cli, err := s.container(ctx, "resume")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	if _, err := cli.ContainerUnpause(ctx, s.t.Container, client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("unpause container %s (%s): %w", s.t.Container, s.t.Name, err)
	}
	s.mu.Lock()
	s.paused = false
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
		n, err = cleanRedis(ctx, s.t, KeyPrefix(s.ns)+"*")
	} else {
		n, err = cleanPostgres(ctx, s.t, Schema(s.ns))
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
	s := &externalServer{t: t}
	c := s.redisClient()
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
// database, and rolls back the transactions prepared there under them;
// it returns how many schemas it dropped.
func cleanPostgres(ctx context.Context, t ExternalTarget, like string) (int, error) {
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
	rows, _ := c.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname LIKE $1`, like)
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
	pattern, like := ExternalGCPattern, externalGCSchemas
	if ns != "" {
		if err := CheckNamespace(ns); err != nil {
			return nil, err
		}
		pattern, like = KeyPrefix(ns)+"*", Schema(ns)
	}
	var errs []error
	for _, t := range targets {
		var n int
		var err error
		if t.Kind == Redis {
			n, err = cleanRedis(ctx, t, pattern)
			removed = append(removed, fmt.Sprintf("%s: %d keys matching %s", t.Public(), n, pattern))
		} else {
			n, err = cleanPostgres(ctx, t, like)
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
		p := &externalProvider{targets: spec.External}
		t, err := p.target(n.Name, n.Kind)
		if err != nil {
			fmt.Fprintf(&b, "  %s: %v\n", n.Name, err)
			continue
		}
		what := fmt.Sprintf("keys under %q (SCAN %s* must find none first)", KeyPrefix(spec.Namespace), KeyPrefix(spec.Namespace))
		if n.Kind == Postgres {
			what = fmt.Sprintf("schema %s (must not exist), its tables reached through search_path", Schema(spec.Namespace))
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
