//go:build unix

// Unix only: part of the local provider (local.go).

package infra

// PostgreSQL on the local provider.
//
// initdb costs about 1 s of CPU (much more on a loaded machine), so a node's
// data directory is a copy (cp -a, ~0.1 s) of a template cluster built once
// per machine, PostgreSQL version and server user, and kept in
// $FAULTLINE_CACHE_DIR ("off" = no cache) or else the user cache dir
// ($HOME/.cache/faultline); the template already holds the "faultline"
// database. Every node then gets its own random password (ALTER ROLE over
// the node's private unix socket, where authentication is trust; TCP uses
// scram-sha-256). Without a cache dir each node runs initdb itself. The
// cache may be deleted at any time.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// templateFormat changes whenever the template's contents or the initdb
// options change, so an old cache is not reused.
const templateFormat = "v1"

// maxSocketDir keeps "<dir>/.s.PGSQL.65535" under the 107-byte limit of a
// unix socket path.
const maxSocketDir = 90

func (p *localProvider) startPostgres(ctx context.Context, cfg serverConfig) (server, error) {
	binDir, err := p.postgresDir(cfg.Name)
	if err != nil {
		return nil, err
	}
	s, err := p.newPostgres(ctx, cfg, binDir)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (server, error) {
		s.destroy(context.WithoutCancel(ctx))
		return nil, err
	}
	t0 := time.Now()
	tmpl, terr := p.pgTemplate(ctx, binDir)
	if terr != nil {
		slog.Warn("infra: no PostgreSQL template, running initdb per node", "err", terr)
	}
	how := "initdb"
	if tmpl != "" {
		how = "template copy"
		if err := copyTree(ctx, tmpl, s.dataDir()); err != nil {
			return fail(fmt.Errorf("node %s: copy template cluster %s: %w (delete it to rebuild)", cfg.Name, tmpl, err))
		}
	} else if err := s.initdb(ctx, binDir); err != nil {
		return fail(err)
	}
	tData := time.Since(t0)
	if err := s.start(ctx); err != nil {
		return fail(err)
	}
	tStart := time.Since(t0) - tData
	if err := s.pgSetup(ctx, cfg.Password); err != nil {
		return fail(err)
	}
	slog.Debug("infra: postgres ready", "node", cfg.Name, "data", how, "took", tData, "start", tStart, "setup", time.Since(t0)-tData-tStart)
	return s, nil
}

// newPostgres prepares a server (temp dir, command line) without data.
func (p *localProvider) newPostgres(ctx context.Context, cfg serverConfig, binDir string) (*localServer, error) {
	s, err := p.newLocalServer(Postgres, cfg)
	if err != nil {
		return nil, err
	}
	sock := s.dir
	if len(sock) > maxSocketDir {
		// A long TMPDIR: the socket goes to a short dir of its own.
		d, err := os.MkdirTemp("/tmp", tempPrefix+"sock-")
		if err == nil {
			s.sockDir = d // destroy removes it from here on
			err = markTempDirOwner(d)
		}
		if err == nil && p.cred != nil {
			err = os.Chown(d, int(p.cred.Uid), int(p.cred.Gid))
		}
		if err != nil {
			s.destroy(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("node %s: make a unix socket dir (TMPDIR %s is too long for one): %w", cfg.Name, s.dir, err)
		}
		s.sockDir, sock = d, d
	}
	data := s.dataDir()
	s.bin = filepath.Join(binDir, "postgres")
	s.args = func(port int) []string {
		a := []string{"-D", data, "-p", strconv.Itoa(port),
			"-c", "listen_addresses=127.0.0.1",
			"-c", "unix_socket_directories=" + sock,
			"-c", "max_prepared_transactions=64",
			"-c", "max_connections=200",
			"-c", "jit=off",
		}
		if cfg.Rewindable {
			a = append(a, "-c", "wal_log_hints=on")
		}
		if !cfg.Fsync {
			// synchronous_commit stays on: with it off a commit returns
			// before its WAL reaches the kernel, and a SIGKILL of the
			// server loses committed transactions. fsync and
			// full_page_writes off only matter for an OS crash
			// (full_page_writes stays on for pg_rewind).
			a = append(a, "-c", "fsync=off")
			if !cfg.Rewindable {
				a = append(a, "-c", "full_page_writes=off")
			}
		}
		return a
	}
	s.ready = s.postgresReady
	s.ver = p.version(ctx, s.bin)
	return s, nil
}

func (s *localServer) dataDir() string { return filepath.Join(s.dir, "data") }

func (s *localServer) socketDir() string {
	if s.sockDir != "" {
		return s.sockDir
	}
	return s.dir
}

// initdb creates the cluster: user faultline, trust on the private unix
// socket, scram-sha-256 on TCP (the throwaway initdb password is replaced
// per node by pgSetup).
func (s *localServer) initdb(ctx context.Context, binDir string) error {
	pwfile, err := s.writeOwned("pwfile", randomHex(16)+"\n")
	if err != nil {
		return err
	}
	defer os.Remove(pwfile)
	return s.runOnce(ctx, 2*time.Minute, []string{filepath.Join(binDir, "initdb"), "-D", s.dataDir(),
		"--locale=C", "--encoding=UTF8", "-U", "faultline", "--pwfile=" + pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions"})
}

// socketDSN reaches the server over its private unix socket (trust auth).
func (s *localServer) socketDSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=faultline dbname=%s sslmode=disable connect_timeout=5", s.socketDir(), s.port, db)
}

// postgresReady makes a real connection (unix socket) and runs SELECT 1;
// s.mu is held.
func (s *localServer) postgresReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.socketDSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// pgSetup gives the node its password and makes sure database faultline
// exists, then checks a password login over TCP.
func (s *localServer) pgSetup(ctx context.Context, password string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := func() error {
		conn, err := pgx.Connect(ctx, s.socketDSN("postgres"))
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if password != "" {
			// The password is hex: safe inside a literal.
			if _, err := conn.Exec(ctx, "SET password_encryption = 'scram-sha-256'; ALTER ROLE faultline PASSWORD '"+password+"'"); err != nil {
				return fmt.Errorf("set password: %w", err)
			}
		}
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'faultline')").Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := conn.Exec(ctx, "CREATE DATABASE faultline"); err != nil {
				return fmt.Errorf("create database faultline: %w", err)
			}
		}
		if password == "" {
			return nil
		}
		tcp, err := pgx.Connect(ctx, fmt.Sprintf("postgres://faultline:%s@%s/faultline?sslmode=disable&connect_timeout=5", password, s.directAddrLocked()))
		if err != nil {
			return fmt.Errorf("password login over TCP: %w", err)
		}
		return tcp.Close(ctx)
	}()
	if err != nil {
		return fmt.Errorf("node %s: set up PostgreSQL: %w\n  log tail (%s):\n%s", s.cfg.Name, err, s.logPath, indent(s.logTail()))
	}
	return nil
}

// cacheDir is where templates are kept ("" = no cache).
func cacheDir() string {
	switch d := os.Getenv("FAULTLINE_CACHE_DIR"); d {
	case "off":
		return ""
	case "":
	default:
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "faultline")
}

// pgTemplate returns the template cluster for binDir, building it on first
// use ("" with no error when there is no cache dir).
func (p *localProvider) pgTemplate(ctx context.Context, binDir string) (string, error) {
	p.tmplMu.Lock()
	defer p.tmplMu.Unlock()
	root := cacheDir()
	if root == "" {
		return "", nil
	}
	uid := os.Geteuid()
	if p.cred != nil {
		uid = int(p.cred.Uid)
	}
	ver := p.version(ctx, filepath.Join(binDir, "postgres"))
	if ver == "unknown" {
		return "", fmt.Errorf("cannot tell the version of %s/postgres", binDir)
	}
	final := filepath.Join(root, fmt.Sprintf("pg-template-%s-%s-uid%d-%s", ver, templateFormat, uid, shortHash(binDir)))
	if _, err := os.Stat(filepath.Join(final, "PG_VERSION")); err == nil {
		return final, nil
	}
	start := time.Now()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	// Build like a node (temp dir, unprivileged user), stop cleanly, copy in.
	s, err := p.newPostgres(ctx, serverConfig{Name: "pg-template", ReadyTimeout: 60 * time.Second}, binDir)
	if err != nil {
		return "", err
	}
	defer s.destroy(context.WithoutCancel(ctx))
	if err := s.initdb(ctx, binDir); err != nil {
		return "", err
	}
	if err := s.start(ctx); err != nil {
		return "", err
	}
	if err := s.pgSetup(ctx, ""); err != nil {
		return "", err
	}
	if err := s.stop(ctx); err != nil {
		return "", err
	}
	os.Remove(filepath.Join(s.dataDir(), "postmaster.opts"))
	tmp := final + ".tmp-" + randomHex(4)
	if err := copyTree(ctx, s.dataDir(), tmp); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Stat(filepath.Join(final, "PG_VERSION")); serr != nil {
			return "", err
		} // another process won the race: use its template
	}
	slog.Info("infra: built PostgreSQL template cluster", "dir", final, "took", time.Since(start))
	return final, nil
}

// shortHash is a short stable digest of s (FNV-1a), for cache keys.
func shortHash(s string) string {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return fmt.Sprintf("%08x", h)
}

// copyTree copies a directory tree with owners and modes (cp -a).
func copyTree(ctx context.Context, src, dst string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "cp", "-a", src, dst).CombinedOutput()
	if err != nil {
		return errors.Join(fmt.Errorf("cp -a %s %s: %w", src, dst, err), errors.New(string(out)))
	}
	return nil
}

// startPostgresStandby starts a streaming standby: pg_basebackup (as the
// server's user) copies the primary through sb.Upstream, creates the
// physical replication slot sb.Slot and writes standby.signal and
// primary_conninfo (-R); then the server starts in hot standby. The
// standby's faultline password is the primary's (the cluster is a copy), so
// cfg.Password must be the primary's.
func (p *localProvider) startPostgresStandby(ctx context.Context, cfg serverConfig, sb standbyConfig) (server, error) {
	binDir, err := p.postgresDir(cfg.Name)
	if err != nil {
		return nil, err
	}
	s, err := p.newPostgres(ctx, cfg, binDir)
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(sb.Upstream)
	if err != nil {
		s.destroy(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("node %s: standby upstream %q: %w", cfg.Name, sb.Upstream, err)
	}
	t0 := time.Now()
	err = s.runOnce(ctx, 2*time.Minute, []string{pgTool(binDir, "pg_basebackup"),
		"-D", s.dataDir(), "-d", sb.conninfo(host, port), "-R", "-X", "stream",
		"-C", "-S", sb.Slot, "--checkpoint=fast", "--no-sync", "-w"}, "PGPASSWORD="+cfg.Password)
	if err == nil {
		err = s.start(ctx)
	}
	if err != nil {
		s.destroy(context.WithoutCancel(ctx))
		return nil, err
	}
	slog.Debug("infra: postgres standby ready", "node", cfg.Name, "upstream", sb.Upstream, "took", time.Since(t0))
	return s, nil
}

// pgTool is a PostgreSQL program next to postgres: in binDir, else in the
// directory postgres links to (PATH may hold links to postgres and initdb
// only, e.g. /usr/local/bin -> /usr/lib/postgresql/15/bin).
func pgTool(binDir, name string) string {
	p := filepath.Join(binDir, name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if real, err := filepath.EvalSymlinks(filepath.Join(binDir, "postgres")); err == nil {
		return filepath.Join(filepath.Dir(real), name)
	}
	return p
}

// prepareRewind fences the stopped old primary (standby.signal: a start
// comes up read-only) and makes its next start first rewind it into a
// standby of rw's upstream (rewindScript, run as the server's user). See
// pgStandbyTopology.failover.
func (s *localServer) prepareRewind(_ context.Context, rw rewindConfig) error {
	if _, err := s.writeOwned(filepath.Join("data", "standby.signal"), ""); err != nil {
		return err
	}
	script := rewindScript(s.dataDir(), pgTool(filepath.Dir(s.bin), "pg_rewind"), rw, s.cfg.Fsync)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.preStart = func(ctx context.Context) error {
		t0 := time.Now()
		err := s.runOnce(ctx, 2*time.Minute, []string{"/bin/sh", "-c", script}, "PGPASSWORD="+s.cfg.Password)
		slog.Debug("infra: postgres rewound", "node", s.cfg.Name, "upstream", rw.Upstream, "took", time.Since(t0), "err", err)
		return err
	}
	return nil
}
