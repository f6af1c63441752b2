package infra

// pg-standby on the docker provider: pg-2 is a container whose command runs
// pg_basebackup through pg-1's peer link (on the topology's docker network)
// into a data directory of its own, then execs postgres on it. A restart of
// the container finds that directory and starts the standby again.

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
)

// pgStandbyData is pg-2's data directory inside its container (the image's
// PGDATA holds a pre-built cluster pg_basebackup must not mix with).
const pgStandbyData = "/var/lib/postgresql/standby"

func (p *dockerProvider) startPostgresStandby(ctx context.Context, cfg serverConfig, sb standbyConfig) (server, error) {
	img := cfg.Image
	if img == "" {
		img = p.pgImage
	}
	host, port, err := net.SplitHostPort(sb.Upstream)
	if err != nil {
		return nil, fmt.Errorf("node %s: standby upstream %q: %w", cfg.Name, sb.Upstream, err)
	}
	fsync := "off"
	if cfg.Fsync {
		fsync = "on"
	}
	d := pgStandbyData
	cfg.PGData = d
	script := strings.Join([]string{
		dockerRewindHook, // set -e, then a pending rewind
		fmt.Sprintf(`if [ ! -s %s/PG_VERSION ]; then rm -rf %s.tmp`, d, d),
		fmt.Sprintf(`pg_basebackup -D %s.tmp -d '%s' -R -X stream -C -S %s --checkpoint=fast --no-sync -w`,
			d, sb.conninfo(host, port), sb.Slot),
		fmt.Sprintf(`mv %s.tmp %s; fi`, d, d),
		fmt.Sprintf(`exec postgres -D %s -c listen_addresses=* -c max_prepared_transactions=64 -c jit=off -c fsync=%s -c wal_log_hints=on`, d, fsync),
	}, "\n")
	return p.start(ctx, cfg, Postgres, img, testcontainers.ContainerRequest{
		Image:        img,
		ExposedPorts: []string{pgContainerPort},
		Env:          map[string]string{"PGPASSWORD": cfg.Password},
		Cmd:          []string{"sh", "-c", script},
	}, pgContainerPort)
}

// allowReplication lets standbys on the docker network connect for
// replication (the image's pg_hba.conf allows it from 127.0.0.1 only).
func (s *dockerServer) allowReplication(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	code, out, err := s.ctr.Exec(ctx, []string{"sh", "-c",
		`echo "host replication all all scram-sha-256" >> "${PGDATA:-/var/lib/postgresql/data}/pg_hba.conf"`}, tcexec.Multiplexed())
	if err == nil && code != 0 {
		b, _ := io.ReadAll(io.LimitReader(out, 4096))
		err = fmt.Errorf("exit code %d: %s", code, b)
	}
	if err == nil {
		err = pgExec(ctx, s.dsn(), "SELECT pg_reload_conf()")
	}
	if err != nil {
		return s.errorf("allow replication connections in pg_hba.conf: %w", err)
	}
	return nil
}

// dockerRewindScript is where prepareRewind puts the rewind script in a
// stopped container; dockerRewindHook, the first lines of a pg-standby
// container's command, runs it before PostgreSQL starts and removes it once
// it succeeded (a failed rewind exits: the start fails, the node stays
// fenced, and the next start tries again).
const (
	dockerRewindScript = "/var/lib/postgresql/faultline-rewind.sh"
	dockerRewindHook   = "set -e\nif [ -f " + dockerRewindScript + " ]; then sh " + dockerRewindScript + "; rm -f " + dockerRewindScript + "; fi"
)

// prepareRewind fences the stopped old primary (standby.signal in its data
// directory: a start comes up read-only) and puts the rewind script into
// the container, which its command runs on the next start (see
// dockerRewindHook and pgStandbyTopology.failover).
func (s *dockerServer) prepareRewind(ctx context.Context, rw rewindConfig) error {
	data := s.cfg.PGData
	if data == "" {
		data = "/var/lib/postgresql/data"
	}
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	if err := s.ctr.CopyToContainer(ctx, nil, data+"/standby.signal", 0o644); err != nil {
		return s.errorf("write standby.signal: %w", err)
	}
	// The container started afresh: PID 1 is this shell, which the
	// postmaster.pid left by the killed server (PID 1 too) would name.
	script := "rm -f " + data + "/postmaster.pid\n" + rewindScript(data, "pg_rewind", rw, s.cfg.Fsync)
	if err := s.ctr.CopyToContainer(ctx, []byte(script), dockerRewindScript, 0o644); err != nil {
		return s.errorf("write %s: %w", dockerRewindScript, err)
	}
	return nil
}
