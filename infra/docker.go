package infra

// The docker provider: each server is a container created with
// testcontainers-go and driven afterwards with the Docker client (the
// testcontainers Container interface has no kill or pause).
//
// Images. The defaults are faultline/redis:7 and faultline/postgres:15, built
// without any registry by scripts/build-images.sh (`make images`) from the
// host's binaries. Spec.RedisImage/PostgresImage or the environment variables
// FAULTLINE_REDIS_IMAGE/FAULTLINE_POSTGRES_IMAGE choose others. The faultline
// images follow the official images' interface (redis: command
// `redis-server <args>`; postgres: POSTGRES_PASSWORD/USER/DB and
// POSTGRES_INITDB_ARGS, command `postgres <args>`), so the official redis:7
// and postgres:15 images should work unchanged where a registry is reachable
// and they have been pulled; only the faultline images are tested here. An
// image must exist locally: the provider never pulls.
//
// Reaper. Ryuk cannot be pulled here, so testcontainers reads its
// configuration (once per process) with TESTCONTAINERS_RYUK_DISABLED=true
// unless the variable is already set; the variable is set only around that
// read and restored after it, so the process environment is left as found
// (see dockerInit). Cleanup is faultline's: env destroys every container,
// every container carries the labels dev.faultline=1, dev.faultline.run=<run
// id> and dev.faultline.pid=<owner pid>, and GC (`faultline gc`) removes
// leftovers.
//
// Ports. The container's port is published on an ephemeral host port that
// changes on every container start: addr() is re-read after each start, and
// the node's proxy follows it. On a local engine (unix socket) the port is
// published on 127.0.0.1 only; with DOCKER_HOST=tcp://HOST:PORT it is
// published and reached where docker_host.go says (HOST).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/jackc/pgx/v5"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	tclog "github.com/testcontainers/testcontainers-go/log"
)

// Default images and the environment variables that override them.
const (
	DefaultRedisImage    = "faultline/redis:7"
	DefaultPostgresImage = "faultline/postgres:15"
	EnvRedisImage        = "FAULTLINE_REDIS_IMAGE"
	EnvPostgresImage     = "FAULTLINE_POSTGRES_IMAGE"
	// EnvRunID, when set, is the run id the docker provider labels its
	// containers with (dev.faultline.run); otherwise a random one is drawn.
	EnvRunID = "FAULTLINE_RUN_ID"
)

// Container labels faultline puts on everything it creates.
const (
	LabelFaultline = "dev.faultline"     // always "1"
	LabelRun       = "dev.faultline.run" // the run id
	LabelPID       = "dev.faultline.pid" // pid of the process that created it
	LabelNode      = "dev.faultline.node"
	labelProvider  = "dev.faultline.provider" // one docker provider (one Env)
	labelVersion   = "dev.faultline.version"  // written by build-images.sh
)

const (
	dockerAvailTimeout    = 3 * time.Second  // bound of dockerAvailable
	dockerCallTimeout     = 30 * time.Second // bound of one Docker API call
	dockerStopTimeout     = 10               // seconds of graceful stop before SIGKILL
	dockerPollEvery       = 50 * time.Millisecond
	dockerProbeTimeout    = 2 * time.Second
	dockerDefaultReady    = 30 * time.Second
	redisContainerPort    = "6379/tcp"
	sentinelContainerPort = "26379/tcp"
	pgContainerPort       = "5432/tcp"
	pgUser, pgDatabase    = "faultline", "faultline"
)

var dockerInitOnce sync.Once

// envRyukDisabled turns testcontainers' reaper (Ryuk) off when "true".
const envRyukDisabled = "TESTCONTAINERS_RYUK_DISABLED"

// dockerInit prepares the process for testcontainers: Ryuk off (its image
// cannot be pulled) and the library's chatter sent to slog at debug level.
// It must run before the first testcontainers call. The library reads its
// configuration once per process and offers no way to pass it but the
// environment (and ~/.testcontainers.properties), so the variable is set
// only for that first read (testcontainers.ReadConfig) and then removed
// again: nothing else in the process, and no child, sees it.
func dockerInit() {
	dockerInitOnce.Do(func() {
		if _, set := os.LookupEnv(envRyukDisabled); set {
			_ = testcontainers.ReadConfig() // the user's choice stands
		} else {
			_ = os.Setenv(envRyukDisabled, "true")
			_ = testcontainers.ReadConfig()
			_ = os.Unsetenv(envRyukDisabled)
		}
		tclog.SetDefault(slogPrintf{slog.Default().With("component", "testcontainers")})
	})
}

// slogPrintf adapts slog to testcontainers' Printf logger, at debug level.
type slogPrintf struct{ l *slog.Logger }

func (s slogPrintf) Printf(format string, v ...any) {
	s.l.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// dockerImages returns the images spec asks for, after defaults and env.
func dockerImages(spec Spec) (redisImage, pgImage string) {
	pick := func(fromSpec, env, def string) string {
		if fromSpec != "" {
			return fromSpec
		}
		if v := os.Getenv(env); v != "" {
			return v
		}
		return def
	}
	return pick(spec.RedisImage, EnvRedisImage, DefaultRedisImage),
		pick(spec.PostgresImage, EnvPostgresImage, DefaultPostgresImage)
}

// dockerAvailable tells whether the docker provider can run spec here: an
// engine answers within 3 s and both images exist locally (and, for a
// topology, the in-network Toxiproxy's). reason says why,
// in plain words, for the run header.
func dockerAvailable(ctx context.Context, spec Spec) (ok bool, reason string) {
	dockerInit()
	ctx, cancel := context.WithTimeout(ctx, dockerAvailTimeout)
	defer cancel()
	redisImage, pgImage := dockerImages(spec)

	type answer struct {
		missing []string
		err     error
	}
	ch := make(chan answer, 1)
	go func() { // NewDockerProvider ignores ctx: bound it from outside.
		cli, err := dockerClient(ctx)
		if err != nil {
			ch <- answer{err: err}
			return
		}
		defer cli.Close()
		var missing []string
		want := []string{redisImage, pgImage}
		if spec.Topology != TopologyNone { // peer links run on the in-network proxy
			want = append(want, toxiproxyImage())
		}
		for _, img := range want {
			if _, err := cli.ImageInspect(ctx, img); err != nil {
				if !cerrdefs.IsNotFound(err) {
					ch <- answer{err: fmt.Errorf("inspect image %s: %w", img, err)}
					return
				}
				missing = append(missing, img)
			}
		}
		ch <- answer{missing: missing}
	}()
	select {
	case <-ctx.Done():
		return false, fmt.Sprintf("no docker engine: no answer within %s", dockerAvailTimeout)
	case a := <-ch:
		switch {
		case a.err != nil:
			return false, "no docker engine: " + a.err.Error()
		case len(a.missing) > 0:
			return false, fmt.Sprintf("docker engine answered but images missing: %s (run make images)",
				strings.Join(a.missing, ", "))
		}
	}
	return true, fmt.Sprintf("docker engine answered and images %s, %s exist", redisImage, pgImage)
}

// dockerClient returns a Docker client once the engine answered (testcontainers
// provider + Health, which negotiates the API version: the engine here speaks
// API 1.41).
func dockerClient(ctx context.Context) (client.APIClient, error) {
	dockerInit()
	p, err := testcontainers.NewDockerProvider(testcontainers.WithLogger(tclog.NewNoopLogger()))
	if err != nil {
		return nil, fmt.Errorf("connect to the docker engine (is dockerd running, is DOCKER_HOST right?): %w", err)
	}
	if err := p.Health(ctx); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("docker engine health check (is dockerd running?): %w", err)
	}
	// testcontainers-go skips a DOCKER_HOST whose engine does not answer
	// (or whose scheme it cannot speak: ssh://) and silently takes the
	// next candidate, the local socket: a run meant for a remote engine
	// would run here. Refuse instead (tc.host in
	// ~/.testcontainers.properties legitimately comes first).
	if want := os.Getenv(EnvDockerHost); want != "" && testcontainers.ReadConfig().Config.TestcontainersHost == "" {
		if got := p.Client().DaemonHost(); got != want {
			_ = p.Close()
			return nil, fmt.Errorf("%s=%s does not answer, or testcontainers-go cannot speak to it (unix:// and tcp:// only; "+
				"for ssh forward the engine's socket: ssh -NL 127.0.0.1:23750:/var/run/docker.sock HOST, then DOCKER_HOST=tcp://127.0.0.1:23750 "+
				"and %s=HOST): it would fall back to %s; unset %s to use that one", EnvDockerHost, want, EnvDockerHostOverride, got, EnvDockerHost)
		}
	}
	return p.Client(), nil
}

// dockerProvider starts servers as containers.
type dockerProvider struct {
	runID               string
	instance            string // labelProvider value: this provider's containers
	redisImage, pgImage string
	cli                 client.APIClient
	ep                  dockerEndpoint // where published ports are reached
	log                 *slog.Logger
}

// newDockerProvider connects to the engine. Images are checked per server
// (dockerAvailable checks them up front for --provider auto/docker).
func newDockerProvider(ctx context.Context, spec Spec) (provider, error) {
	dockerInit()
	cctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	cli, err := dockerClient(cctx)
	if err != nil {
		return nil, fmt.Errorf("docker provider: %w", err)
	}
	p := &dockerProvider{cli: cli, log: slog.Default().With("provider", "docker")}
	if p.ep, err = resolveDockerEndpoint(cli.DaemonHost(), os.Getenv(EnvDockerHostOverride)); err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("docker provider: %w", err)
	}
	if p.ep.remote() {
		p.log.Info("docker engine on another host: ports published on its interfaces and reached there",
			"engine", p.ep.daemon, "published on", p.ep.bindIP, "reached at", p.ep.dialHost)
	}
	p.redisImage, p.pgImage = dockerImages(spec)
	p.instance = randomHex(6)
	p.runID = os.Getenv(EnvRunID)
	if p.runID == "" {
		p.runID = randomHex(6)
	}
	return p, nil
}

func (p *dockerProvider) name() string { return "docker" }

// RunID is the run id every container of this provider is labelled with.
func (p *dockerProvider) RunID() string { return p.runID }

// close removes any container of this provider still there (env destroys
// its servers first; this catches one left by a start cut short) and closes
// the client.
func (p *dockerProvider) close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	_, err := removeLabelled(ctx, p.cli, labelProvider+"="+p.instance)
	return errors.Join(err, p.cli.Close())
}

func (p *dockerProvider) startRedis(ctx context.Context, cfg serverConfig) (server, error) {
	img := cfg.Image
	if img == "" {
		img = p.redisImage
	}
	aof := "no"
	if cfg.AppendOnly {
		aof = "yes"
	}
	req := testcontainers.ContainerRequest{
		Image:        img,
		ExposedPorts: []string{redisContainerPort},
		Cmd: []string{"redis-server", "--bind", "0.0.0.0", "--port", "6379",
			"--requirepass", cfg.Password, "--save", "", "--appendonly", aof, "--dir", "/data"},
	}
	port := redisContainerPort
	switch {
	case cfg.Sentinel:
		// Sentinel needs a config file it can rewrite (in /data, owned by
		// the image's user; the file itself is made world-writable).
		port = sentinelContainerPort
		conf := strings.Join(append([]string{"bind 0.0.0.0", "port 26379", "requirepass " + cfg.Password, "dir /data"}, cfg.Conf...), "\n") + "\n"
		req.ExposedPorts = []string{sentinelContainerPort}
		req.Files = []testcontainers.ContainerFile{{Reader: strings.NewReader(conf), ContainerFilePath: "/data/sentinel.conf", FileMode: 0o666}}
		req.Cmd = []string{"redis-server", "/data/sentinel.conf", "--sentinel"}
	default:
		for _, c := range cfg.Conf { // "replicaof h p" -> --replicaof h p
			f := strings.Fields(c)
			req.Cmd = append(append(req.Cmd, "--"+f[0]), f[1:]...)
		}
	}
	return p.start(ctx, cfg, Redis, img, req, port)
}

func (p *dockerProvider) startPostgres(ctx context.Context, cfg serverConfig) (server, error) {
	img := cfg.Image
	if img == "" {
		img = p.pgImage
	}
	fsync := "off"
	if cfg.Fsync {
		fsync = "on"
	}
	env := map[string]string{
		"POSTGRES_PASSWORD":    cfg.Password,
		"POSTGRES_USER":        pgUser,
		"POSTGRES_DB":          pgDatabase,
		"POSTGRES_INITDB_ARGS": "--locale=C --encoding=UTF8",
	}
	cmd := []string{"postgres", "-c", "listen_addresses=*", "-c", "max_prepared_transactions=64",
		"-c", "jit=off", "-c", "fsync=" + fsync}
	if cfg.Rewindable {
		// A pending rewind runs before the image's entrypoint (see
		// dockerServer.prepareRewind); pg_rewind reads PGPASSWORD.
		env["PGPASSWORD"] = cfg.Password
		cmd = []string{"sh", "-c", dockerRewindHook + "\nexec docker-entrypoint.sh " + strings.Join(cmd, " ") + " -c wal_log_hints=on"}
	}
	return p.start(ctx, cfg, Postgres, img, testcontainers.ContainerRequest{
		Image:        img,
		ExposedPorts: []string{pgContainerPort},
		Env:          env,
		Cmd:          cmd,
	}, pgContainerPort)
}

// start creates and starts one container and waits until its server answers.
func (p *dockerProvider) start(ctx context.Context, cfg serverConfig, kind Kind, img string,
	req testcontainers.ContainerRequest, port string) (server, error) {
	if cfg.Network != "" { // a topology's node: on its network, under its alias
		req.Networks = []string{cfg.Network}
		req.NetworkAliases = map[string][]string{cfg.Network: {cfg.Alias}}
	}
	s := &dockerServer{p: p, kind: kind, cfg: cfg, image: img, port: port}
	if s.cfg.ReadyTimeout <= 0 {
		s.cfg.ReadyTimeout = dockerDefaultReady
	}
	cctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	ii, err := p.cli.ImageInspect(cctx, img)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("node %s: image %s is not on this docker engine: run make images "+
				"(scripts/build-images.sh) or pull it; faultline never pulls", cfg.Name, img)
		}
		return nil, fmt.Errorf("node %s: inspect image %s: %w", cfg.Name, img, err)
	}
	s.ver = ii.Config.Labels[labelVersion]

	s.cmd = strings.Join(req.Cmd, " ")
	if cfg.Password != "" {
		s.cmd = strings.ReplaceAll(s.cmd, cfg.Password, "***")
	}
	s.cname = fmt.Sprintf("faultline-%s-%s-%s", p.runID, dockerSafeName(cfg.Name), randomHex(2))
	req.Name = s.cname
	req.Labels = map[string]string{
		LabelFaultline: "1",
		LabelRun:       p.runID,
		LabelPID:       strconv.Itoa(os.Getpid()),
		LabelNode:      cfg.Name,
		labelProvider:  p.instance,
	}
	req.ConfigModifier = func(c *container.Config) {
		if kind == Postgres {
			c.StopSignal = "SIGINT" // fast shutdown (SIGTERM waits for clients)
		}
	}
	req.HostConfigModifier = func(hc *container.HostConfig) {
		// Publish on an ephemeral port of 127.0.0.1 (local engine) or
		// of the address the engine's host is reached at (docker_host.go).
		hc.PortBindings = network.PortMap{
			network.MustParsePort(port): {{HostIP: p.ep.bindIP, HostPort: "0"}},
		}
	}
	t0 := time.Now()
	ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: req,
		Started:          true,
		Logger:           slogPrintf{p.log},
	})
	if ctr != nil {
		s.id = ctr.GetContainerID()
		s.ctr = ctr
	}
	if err != nil {
		tail := s.logTail()
		derr := s.destroy(context.WithoutCancel(ctx))
		return nil, errors.Join(fmt.Errorf("node %s: start container %s from %s (command: %s): %w\n  log tail:\n%s",
			cfg.Name, s.cname, img, s.cmd, err, indent(tail)), derr)
	}
	tCreated := time.Now()
	err = s.refreshAddr(ctx)
	if err == nil {
		err = s.waitReady(ctx)
	}
	if err != nil {
		derr := s.destroy(context.WithoutCancel(ctx))
		return nil, errors.Join(err, derr)
	}
	if s.ver == "" {
		s.ver = s.execVersion(ctx)
	}
	p.log.Debug("container ready", "node", cfg.Name, "container", s.cname, "addr", s.addr(),
		"create+start", tCreated.Sub(t0).Round(time.Millisecond),
		"took", time.Since(t0).Round(time.Millisecond))
	return s, nil
}

// dockerServer is one container running Redis or PostgreSQL.
type dockerServer struct {
	p     *dockerProvider
	kind  Kind
	cfg   serverConfig
	image string
	cmd   string // the container command, password masked, for errors
	port  string // container port, "6379/tcp"
	cname string
	id    string
	ctr   testcontainers.Container
	ver   string

	mu       sync.Mutex
	hostAddr string // <engine's host>:<mapped port>, changes on each start
}

func (s *dockerServer) addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hostAddr
}

// containerID names the container (for the cleanup test and errors).
func (s *dockerServer) containerID() string { return s.id }

func (s *dockerServer) version() string { return s.ver }

// refreshAddr re-reads the mapped host port (it changes on every start).
func (s *dockerServer) refreshAddr(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	// The port is published once the container runs; poll briefly.
	var last error
	for {
		in, err := s.p.cli.ContainerInspect(ctx, s.id, client.ContainerInspectOptions{})
		if err != nil {
			return s.errorf("inspect container: %w", err)
		}
		if in.Container.NetworkSettings != nil {
			for _, b := range in.Container.NetworkSettings.Ports[network.MustParsePort(s.port)] {
				if b.HostPort != "" && b.HostPort != "0" {
					s.mu.Lock()
					s.hostAddr = s.p.ep.publishAddr(b.HostPort)
					s.mu.Unlock()
					return nil
				}
			}
		}
		last = fmt.Errorf("container publishes no host port for %s yet", s.port)
		if st := in.Container.State; st != nil && !st.Running {
			return s.errorf("container is %s (exit code %d), no host port for %s\n  log tail:\n%s",
				st.Status, st.ExitCode, s.port, indent(s.logTail()))
		}
		select {
		case <-ctx.Done():
			return s.errorf("%w", last)
		case <-time.After(dockerPollEvery):
		}
	}
}

// waitReady polls the server (Redis AUTH+PING, PostgreSQL SELECT 1) until it
// answers or cfg.ReadyTimeout passes; it fails fast when the container exits.
// Log-based waits are no good here: after a restart the old lines match.
func (s *dockerServer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	probe := s.probeRedis
	if s.kind == Postgres {
		probe = s.probePostgres
	}
	// Every ~0.5 s a failed probe also asks whether the container died;
	// closing exited then ends the poll at once.
	exited := make(chan struct{})
	var last error
	var st *container.State
	i := 0
	err := pollEvery(ctx, dockerPollEvery, exited, func(ctx context.Context) error {
		pctx, pcancel := context.WithTimeout(ctx, dockerProbeTimeout)
		defer pcancel()
		if last = probe(pctx); last != nil && i%10 == 9 {
			if cur, err := s.state(ctx); err == nil && !cur.Running {
				st = cur
				close(exited)
			}
		}
		i++
		return last
	})
	switch {
	case err == nil:
		return nil
	case st != nil:
		return s.errorf("container exited (code %d) before the server was ready (last probe: %v)\n  log tail:\n%s",
			st.ExitCode, last, indent(s.logTail()))
	}
	return s.errorf("not ready after %s (last probe: %v)\n  log tail:\n%s",
		s.cfg.ReadyTimeout, last, indent(s.logTail()))
}

func (s *dockerServer) probeRedis(ctx context.Context) error {
	return redisPing(ctx, s.addr(), s.cfg.Password)
}

func (s *dockerServer) probePostgres(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.dsn())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// dsn is a connection string to the container's mapped port.
func (s *dockerServer) dsn() string {
	host, port, _ := net.SplitHostPort(s.addr())
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&connect_timeout=2",
		pgUser, s.cfg.Password, net.JoinHostPort(host, port), pgDatabase)
}

func (s *dockerServer) state(ctx context.Context) (*container.State, error) {
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	in, err := s.p.cli.ContainerInspect(ctx, s.id, client.ContainerInspectOptions{})
	if err != nil {
		return nil, err
	}
	if in.Container.State == nil {
		return nil, fmt.Errorf("container %s: inspect returned no state", s.cname)
	}
	return in.Container.State, nil
}

// kill sends SIGKILL (works on a paused container too) and waits until the
// container has exited, so a following start really starts a new process.
func (s *dockerServer) kill(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	if _, err := s.p.cli.ContainerKill(cctx, s.id, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		st, serr := s.state(cctx)
		if serr == nil && !st.Running {
			return nil // already dead
		}
		return s.errorf("kill container (SIGKILL): %w", err)
	}
	for {
		st, err := s.state(cctx)
		if err != nil {
			return s.errorf("inspect after kill: %w", err)
		}
		if !st.Running {
			return nil
		}
		select {
		case <-cctx.Done():
			return s.errorf("container still running %s after SIGKILL", dockerCallTimeout)
		case <-time.After(dockerPollEvery / 2):
		}
	}
}

// start restarts the killed or stopped container (same container, so the same
// data directory), re-reads its new host port and waits until ready.
func (s *dockerServer) start(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	if _, err := s.p.cli.ContainerStart(cctx, s.id, client.ContainerStartOptions{}); err != nil {
		return s.errorf("start container: %w\n  log tail:\n%s", err, indent(s.logTail()))
	}
	if err := s.refreshAddr(ctx); err != nil {
		return err
	}
	return s.waitReady(ctx)
}

func (s *dockerServer) pause(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	if _, err := s.p.cli.ContainerPause(ctx, s.id, client.ContainerPauseOptions{}); err != nil {
		return s.errorf("pause container: %w", err)
	}
	return nil
}

func (s *dockerServer) resume(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	if _, err := s.p.cli.ContainerUnpause(ctx, s.id, client.ContainerUnpauseOptions{}); err != nil {
		return s.errorf("unpause container: %w", err)
	}
	return nil
}

// stop shuts the server down gracefully (SIGTERM for Redis, SIGINT — fast
// shutdown — for PostgreSQL), with SIGKILL after 10 s.
func (s *dockerServer) stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	t := dockerStopTimeout
	if _, err := s.p.cli.ContainerStop(ctx, s.id, client.ContainerStopOptions{Timeout: &t}); err != nil {
		return s.errorf("stop container: %w", err)
	}
	return nil
}

// destroy removes the container and its anonymous volumes, paused or not.
// Removing a container that is already gone is not an error.
func (s *dockerServer) destroy(ctx context.Context) error {
	if s.id == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	_, err := s.p.cli.ContainerRemove(ctx, s.id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) && !strings.Contains(err.Error(), "already in progress") {
		return s.errorf("remove container: %w (remove it by hand: docker rm -f -v %s, or run faultline gc)", err, s.cname)
	}
	return nil
}

// logTail returns the container's last log lines (stdout and stderr).
func (s *dockerServer) logTail() string { return s.logLines(logTailLines) }

// logLines returns the container's last n log lines (stdout and stderr).
func (s *dockerServer) logLines(n int) string {
	if s.id == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rc, err := s.p.cli.ContainerLogs(ctx, s.id, client.ContainerLogsOptions{
		ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n)})
	if err != nil {
		return fmt.Sprintf("(container logs unavailable: %v)", err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := stdcopy.StdCopy(&buf, &buf, io.LimitReader(rc, 64<<10)); err != nil && buf.Len() == 0 {
		return fmt.Sprintf("(container logs unreadable: %v)", err)
	}
	return strings.TrimRight(buf.String(), "\n")
}

var (
	redisVersionRE = regexp.MustCompile(`v=([0-9][0-9.]*)`)
	pgVersionRE    = regexp.MustCompile(`\(PostgreSQL\) ([0-9][0-9.]*)`)
)

// execVersion asks the binary in the container for its version (images
// without the dev.faultline.version label, e.g. the official ones).
func (s *dockerServer) execVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd, re := []string{"redis-server", "--version"}, redisVersionRE
	if s.kind == Postgres {
		cmd, re = []string{"postgres", "--version"}, pgVersionRE
	}
	_, out, err := s.ctr.Exec(ctx, cmd, tcexec.Multiplexed())
	if err != nil {
		return "unknown"
	}
	b, _ := io.ReadAll(io.LimitReader(out, 4096))
	if m := re.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return "unknown"
}

func (s *dockerServer) errorf(format string, args ...any) error {
	return fmt.Errorf("node %s (container %s, image %s, command: %s): "+format,
		append([]any{s.cfg.Name, s.cname, s.image, s.cmd}, args...)...)
}

// removeLabelled force-removes (with volumes) every container matching the
// label filter ("key" or "key=value") and returns their names.
func removeLabelled(ctx context.Context, cli client.APIClient, label string) ([]string, error) {
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All: true, Filters: make(client.Filters).Add("label", label)})
	if err != nil {
		return nil, fmt.Errorf("list containers labelled %s: %w", label, err)
	}
	var removed []string
	var errs []error
	for _, c := range list.Items {
		name := c.ID[:12]
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		_, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", name, err))
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

var unsafeNameRE = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

func dockerSafeName(s string) string { return unsafeNameRE.ReplaceAllString(s, "_") }
