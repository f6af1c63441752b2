//go:build unix

// Unix only: process groups, SIGSTOP/SIGCONT and setuid (local_windows.go refuses the provider).

package infra

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/faultline-dev/faultline/internal/shell"
)

// localProvider runs host binaries as child processes, each server in its own
// temp dir, listening on a free port of 127.0.0.1.
type localProvider struct {
	bins  localBinaries
	cred  *syscall.Credential // non-nil when we are root: run servers as this user
	owner string              // the user name behind cred, for messages

	verMu    sync.Mutex
	versions map[string]string // binary path -> version

	tmplMu sync.Mutex // one PostgreSQL template build at a time
}

// newLocalProvider prepares the local provider. It looks no binary up yet:
// missing binaries are reported per node by startRedis/startPostgres.
func newLocalProvider(bins localBinaries) (*localProvider, error) {
	p := &localProvider{bins: bins, versions: map[string]string{}}
	if os.Geteuid() == 0 {
		cred, name, err := unprivilegedUser()
		if err != nil {
			return nil, err
		}
		p.cred, p.owner = cred, name
	}
	return p, nil
}

// unprivilegedUser picks the user servers run as when we are root:
// "faultline" when scripts/deps.sh created it, else "nobody".
func unprivilegedUser() (*syscall.Credential, string, error) {
	var errs []error
	for _, name := range []string{"faultline", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			errs = append(errs, fmt.Errorf("user %s has unusable uid %q gid %q", name, u.Uid, u.Gid))
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, name, nil
	}
	return nil, "", fmt.Errorf("running as root, PostgreSQL needs an unprivileged user but neither \"faultline\" nor \"nobody\" exists (run make deps, or useradd faultline): %w", errors.Join(errs...))
}

func (p *localProvider) name() string { return "local" }

func (p *localProvider) close(ctx context.Context) error { return nil }

// peerNet: the local provider's peer proxies live on the Env's proxy host
// (127.0.0.1), and follow their server's address.
func (p *localProvider) peerNet(ctx context.Context, envID string, proxies proxyHost) (peerNet, error) {
	return &localPeerNet{proxies: proxies}, nil
}

// localPeerNet makes peer proxies on 127.0.0.1.
type localPeerNet struct {
	proxies proxyHost
	mu      sync.Mutex
	made    []nodeProxy
}

// link creates "peer:<node>" listening on a free 127.0.0.1 port; its
// upstream is set once the server runs (follows).
func (l *localPeerNet) link(ctx context.Context, node string, port int) (nodeProxy, string, bool, error) {
	// 127.0.0.1:9 (discard) until the server has an address: nothing
	// dials a peer before the node is started.
	px, err := l.proxies.create(ctx, "peer-"+node, "127.0.0.1:9")
	if err != nil {
		return nil, "", false, err
	}
	l.mu.Lock()
	l.made = append(l.made, px)
	l.mu.Unlock()
	return px, px.Listen(), true, nil
}

func (l *localPeerNet) serverConfig(*serverConfig) {}

func (l *localPeerNet) close(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, px := range l.made {
		errs = append(errs, px.destroy(ctx))
	}
	l.made = nil
	return errors.Join(errs...)
}

// missingBinary is the error for a program that cannot be found.
func missingBinary(node, bin, pkg string, err error) error {
	return fmt.Errorf("node %s: cannot find %s (%v): run `make deps` (scripts/deps.sh) to install the Debian package %s", node, bin, err, pkg)
}

func (p *localProvider) redisBinary(node string) (string, error) {
	bin := p.bins.RedisServer
	if bin == "" {
		bin = "redis-server"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return "", missingBinary(node, bin, "redis-server", err)
	}
	return path, nil
}

// postgresDir finds the directory holding postgres and initdb: the override,
// PATH, or the newest /usr/lib/postgresql/*/bin.
func (p *localProvider) postgresDir(node string) (string, error) {
	check := func(dir string) error {
		for _, b := range []string{"postgres", "initdb"} {
			if _, err := exec.LookPath(filepath.Join(dir, b)); err != nil {
				return err
			}
		}
		return nil
	}
	if d := p.bins.PostgresDir; d != "" {
		if err := check(d); err != nil {
			return "", missingBinary(node, filepath.Join(d, "postgres"), "postgresql", err)
		}
		return d, nil
	}
	if path, err := exec.LookPath("postgres"); err == nil {
		if d := filepath.Dir(path); check(d) == nil {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { // newest major version first
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if check(d) == nil {
			return d, nil
		}
	}
	return "", missingBinary(node, "postgres and initdb (PATH, /usr/lib/postgresql/*/bin)", "postgresql", exec.ErrNotFound)
}

var versionRe = regexp.MustCompile(`(?:v=|\(PostgreSQL\) )(\d+(?:\.\d+)*)`)

// version runs "bin --version" once per binary and extracts the version.
func (p *localProvider) version(ctx context.Context, bin string) string {
	p.verMu.Lock()
	defer p.verMu.Unlock()
	if v, ok := p.versions[bin]; ok {
		return v
	}
	// Not cut short by ctx: a cancelled start must not cache a wrong answer.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	m := versionRe.FindSubmatch(out)
	if err != nil || m == nil {
		return "unknown" // not cached: ask again next time
	}
	p.versions[bin] = string(m[1])
	return string(m[1])
}

// newLocalServer creates the temp dir and log file shared by both kinds.
func (p *localProvider) newLocalServer(kind Kind, cfg serverConfig) (*localServer, error) {
	dir, err := os.MkdirTemp("", tempPrefix+cfg.Name+"-")
	if err != nil {
		return nil, fmt.Errorf("node %s: create temp dir: %w", cfg.Name, err)
	}
	s := &localServer{kind: kind, cfg: cfg, p: p, dir: dir, logPath: filepath.Join(dir, "server.log")}
	if err := markTempDirOwner(dir); err != nil { // lets faultline gc tell ours from leftovers
		os.RemoveAll(dir)
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	if cfg.ReadyTimeout <= 0 {
		s.cfg.ReadyTimeout = 30 * time.Second
	}
	if p.cred != nil {
		// The unprivileged user must be able to write in the dir (initdb
		// creates data/ there, postgres its socket).
		if err := os.Chown(dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("node %s: chown %s to %s: %w", cfg.Name, dir, p.owner, err)
		}
	}
	return s, nil
}

// writeOwned writes a file the server's user can read (mode 0600).
func (s *localServer) writeOwned(name, content string) (string, error) {
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return "", fmt.Errorf("node %s: write %s: %w", s.cfg.Name, path, err)
	}
	if c := s.p.cred; c != nil {
		if err := os.Chown(path, int(c.Uid), int(c.Gid)); err != nil {
			return "", fmt.Errorf("node %s: chown %s: %w", s.cfg.Name, path, err)
		}
	}
	return path, nil
}

func (p *localProvider) startRedis(ctx context.Context, cfg serverConfig) (server, error) {
	bin, err := p.redisBinary(cfg.Name)
	if err != nil {
		return nil, err
	}
	s, err := p.newLocalServer(Redis, cfg)
	if err != nil {
		return nil, err
	}
	appendOnly := "no"
	if cfg.AppendOnly {
		appendOnly = "yes"
	}
	lines := []string{
		"bind 127.0.0.1",
		"protected-mode no",
		"requirepass " + cfg.Password,
		"dir " + s.dir,
		"daemonize no",
		`logfile ""`,
	}
	if !cfg.Sentinel {
		lines = append(lines, `save ""`, "appendonly "+appendOnly)
	}
	// A topology's directives; Sentinel (and CONFIG REWRITE after a
	// failover) rewrites this file, which the server's user owns.
	conf := strings.Join(append(lines, cfg.Conf...), "\n") + "\n"
	confPath, err := s.writeOwned("redis.conf", conf)
	if err != nil {
		s.removeDir()
		return nil, err
	}
	s.bin = bin
	s.args = func(port int) []string { return []string{confPath, "--port", strconv.Itoa(port)} }
	if cfg.Sentinel {
		s.args = func(port int) []string { return []string{confPath, "--sentinel", "--port", strconv.Itoa(port)} }
	}
	s.ready = s.redisReady
	s.ver = p.version(ctx, bin)
	if err := s.start(ctx); err != nil {
		s.destroy(context.WithoutCancel(ctx))
		return nil, err
	}
	return s, nil
}

// proc is one spawned server process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and been reaped
	err  error         // cmd.Wait's result, readable once done is closed
}

// exitErr is the process's exit status once it has exited.
func (p *proc) exitErr() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// localServer is one redis-server or postgres process tree in its temp dir.
type localServer struct {
	kind    Kind
	cfg     serverConfig
	p       *localProvider
	dir     string
	logPath string
	bin     string
	args    func(port int) []string
	ready   func(ctx context.Context) error
	ver     string

	mu        sync.Mutex // serialises lifecycle operations
	port      int
	proc      *proc        // the current process, nil before the first spawn
	leader    int          // the server's main pid, 0 once it is known gone
	liveLead  atomic.Int64 // leader, readable without mu (for destroy)
	logFile   *os.File
	sockDir   string // PostgreSQL's unix socket dir when s.dir is too long for one
	paused    bool
	destroyed bool
	// preStart runs before the next spawn (pg-standby: the pending rewind
	// of an old primary into a standby); cleared once it succeeded.
	preStart func(ctx context.Context) error
}

func (s *localServer) addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

func (s *localServer) version() string { return s.ver }
func (s *localServer) logTail() string { return s.logLines(logTailLines) }

func (s *localServer) logLines(n int) string { return fileTail(s.logPath, n) }

// pids lists the server's live processes (main process and descendants).
func (s *localServer) pids() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return nil
	}
	return append(descendants(s.leader), s.leader)
}

// commandLine is the current command line, for errors.
func (s *localServer) commandLine(port int) string {
	return shell.Join(append([]string{s.bin}, s.args(port)...))
}

func (s *localServer) sysProcAttr() *syscall.SysProcAttr {
	attr := ownGroupDyingWithUs() // a terminal's Ctrl-C must reach us, not the server; die with us
	attr.Credential = s.p.cred
	return attr
}

func (s *localServer) openLog() (*os.File, error) {
	if s.logFile == nil {
		f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("node %s: open log %s: %w", s.cfg.Name, s.logPath, err)
		}
		s.logFile = f
	}
	return s.logFile, nil
}

// runOnce runs a setup command (initdb, pg_basebackup) to completion under
// a deadline; env adds variables (e.g. PGPASSWORD, kept off the command line).
func (s *localServer) runOnce(ctx context.Context, limit time.Duration, argv []string, env ...string) error {
	log, err := s.openLog()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.dir, log, log
	cmd.Env = append(append(os.Environ(), "LC_ALL=C"), env...)
	cmd.SysProcAttr = s.sysProcAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("node %s: %s failed: %w\n  command: %s\n  log tail (%s):\n%s",
			s.cfg.Name, filepath.Base(argv[0]), err, strings.Join(argv, " "), s.logPath, indent(s.logTail()))
	}
	return nil
}

// spawn starts the server process on port; s.mu is held.
func (s *localServer) spawn(port int) error {
	log, err := s.openLog()
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args(port)...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.dir, log, log
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = s.sysProcAttr()
	if err := cmd.Start(); err != nil {
		hint := ""
		if s.p.cred != nil && errors.Is(err, os.ErrPermission) {
			hint = fmt.Sprintf(" (the server runs as user %s, which needs to reach %s: check the permissions of TMPDIR and its parents)", s.p.owner, s.dir)
		}
		return fmt.Errorf("node %s: cannot run %s: %w%s\n  command: %s", s.cfg.Name, s.bin, err, hint, s.commandLine(port))
	}
	pr := &proc{cmd: cmd, done: make(chan struct{})}
	s.proc, s.leader, s.port, s.paused = pr, cmd.Process.Pid, port, false
	s.liveLead.Store(int64(s.leader))
	go func() {
		pr.err = cmd.Wait()
		s.liveLead.CompareAndSwap(int64(cmd.Process.Pid), 0) // reaped: the pid may be reused
		close(pr.done)
	}()
	return nil
}

// running reports whether the current process is alive; s.mu is held.
func (s *localServer) running() bool {
	if s.proc == nil {
		return false
	}
	select {
	case <-s.proc.done:
		return false
	default:
		return true
	}
}

var bindFailure = regexp.MustCompile(`(?i)address already in use|could not bind|could not create listen socket|could not create any TCP/IP sockets`)

// start (re)starts the server and waits until it is ready: on the same port
// when it can, else on a new one (the node's proxy follows addr()).
func (s *localServer) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.destroyed {
		return fmt.Errorf("node %s: server was destroyed", s.cfg.Name)
	}
	if s.running() {
		if s.paused {
			return s.signalTree(syscall.SIGCONT)
		}
		return nil
	}
	if s.preStart != nil {
		if err := s.preStart(ctx); err != nil {
			return err
		}
		s.preStart = nil
	}
	port := s.port
	const attempts = 3
	for i := 1; ; i++ {
		if port == 0 {
			p, err := freePort()
			if err != nil {
				return fmt.Errorf("node %s: %w", s.cfg.Name, err)
			}
			port = p
		}
		var logStart int64
		if st, err := os.Stat(s.logPath); err == nil {
			logStart = st.Size()
		}
		if err := s.spawn(port); err != nil {
			return err
		}
		err := s.waitReady(ctx)
		if err == nil {
			return nil
		}
		s.killLocked(context.WithoutCancel(ctx))
		if errors.Is(err, errStopped) && bindFailure.MatchString(fileFrom(s.logPath, logStart)) && i < attempts {
			port = 0 // someone took the port: try another
			continue
		}
		what := "did not become ready"
		if errors.Is(err, errStopped) {
			what = fmt.Sprintf("exited during start-up (%v)", s.proc.exitErr())
			if bindFailure.MatchString(fileFrom(s.logPath, logStart)) {
				what = fmt.Sprintf("cannot bind 127.0.0.1:%d (port taken, %d attempts)", port, i)
			}
		} else if ctx.Err() == nil {
			what = fmt.Sprintf("not ready within %v: %v", s.cfg.ReadyTimeout, err)
		} else {
			what = fmt.Sprintf("start-up cancelled: %v", err)
		}
		return fmt.Errorf("node %s: %s %s\n  command: %s\n  log tail (%s):\n%s",
			s.cfg.Name, s.kind, what, s.commandLine(port), s.logPath, indent(s.logTail()))
	}
}

// waitReady polls the readiness probe until it answers, the process exits,
// or ReadyTimeout passes; s.mu is held.
func (s *localServer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	// A probe in flight is abandoned as soon as the process exits.
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	done := s.proc.done
	go func() {
		select {
		case <-done:
			pcancel()
		case <-pctx.Done():
		}
	}()
	return pollEvery(ctx, 20*time.Millisecond, done, func(context.Context) error { return s.ready(pctx) })
}

func (s *localServer) directAddrLocked() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// redisReady pings the server directly (see redisPing), within 1 s.
func (s *localServer) redisReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return redisPing(ctx, s.directAddrLocked(), s.cfg.Password)
}

// signalTree signals the server's process tree; s.mu is held.
func (s *localServer) signalTree(sig syscall.Signal) error {
	if !s.running() {
		return nil
	}
	if _, err := signalTree(s.leader, sig); err != nil {
		return fmt.Errorf("node %s: send %v to process %d and its children: %w", s.cfg.Name, sig, s.leader, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		s.paused = true
	case syscall.SIGCONT:
		s.paused = false
	}
	return nil
}

// killLocked SIGKILLs the process tree and waits until the main process is
// reaped and every process of the tree is gone (a restarted postgres must
// not find old backends); s.mu is held.
func (s *localServer) killLocked(ctx context.Context) error {
	if s.leader == 0 {
		return nil
	}
	var pids []int
	if s.running() {
		var err error
		if pids, err = signalTree(s.leader, syscall.SIGKILL); err != nil {
			return fmt.Errorf("node %s: kill process %d and its children: %w", s.cfg.Name, s.leader, err)
		}
	}
	s.paused = false
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.proc != nil {
		select {
		case <-s.proc.done:
		case <-ctx.Done():
			return fmt.Errorf("node %s: process %d did not die after SIGKILL: %w", s.cfg.Name, s.leader, ctx.Err())
		}
	}
	err := pollEvery(ctx, 5*time.Millisecond, nil, func(context.Context) error {
		for _, p := range pids {
			if procAlive(p) {
				return fmt.Errorf("process %d still alive after SIGKILL", p)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("node %s: %w", s.cfg.Name, err)
	}
	s.leader = 0 // never signal a pid the kernel may reuse
	s.liveLead.Store(0)
	return nil
}

func (s *localServer) kill(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return nil
	}
	return s.killLocked(ctx)
}

func (s *localServer) pause(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return fmt.Errorf("node %s: cannot pause: server is not running", s.cfg.Name)
	}
	return s.signalTree(syscall.SIGSTOP)
}

func (s *localServer) resume(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signalTree(syscall.SIGCONT)
}

// stop shuts down gracefully (Redis SIGTERM, PostgreSQL fast shutdown SIGINT),
// waiting up to 10 s (or ctx) before falling back to SIGKILL.
func (s *localServer) stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return nil
	}
	sig := syscall.SIGTERM
	if s.kind == Postgres {
		sig = syscall.SIGINT
	}
	if err := syscall.Kill(s.leader, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("node %s: send %v: %w", s.cfg.Name, sig, err)
	}
	if err := s.signalTree(syscall.SIGCONT); err != nil { // a paused server must see the signal
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case <-s.proc.done:
		return s.killLocked(context.WithoutCancel(ctx)) // reap stragglers, if any
	case <-wctx.Done():
		kerr := s.killLocked(context.WithoutCancel(ctx))
		return errors.Join(fmt.Errorf("node %s: no graceful stop within the deadline, killed: %w\n  log tail:\n%s",
			s.cfg.Name, wctx.Err(), indent(s.logTail())), kerr)
	}
}

// destroy kills the process tree (paused or not) and removes the temp dir.
func (s *localServer) destroy(ctx context.Context) error {
	// Kill first without the lock: a start() holding it while it waits for
	// readiness then sees the process exit and returns.
	if pid := s.liveLead.Load(); pid > 0 {
		signalTree(int(pid), syscall.SIGKILL)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.destroyed {
		return nil
	}
	s.destroyed = true
	err := s.killLocked(ctx)
	if s.logFile != nil {
		s.logFile.Close()
	}
	return errors.Join(err, s.removeDir())
}

func (s *localServer) removeDir() error {
	var errs []error
	for _, d := range s.tempDirs() {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("node %s: remove %s: %w", s.cfg.Name, d, err))
		}
	}
	return errors.Join(errs...)
}

// tempDirs lists every directory the server owns.
func (s *localServer) tempDirs() []string {
	if s.sockDir != "" {
		return []string{s.dir, s.sockDir}
	}
	return []string{s.dir}
}
