package infra

// The pg-standby topology: pg-1 starts as the primary, pg-2 is a streaming
// standby built with pg_basebackup from pg-1 through pg-1's peer link
// ("peer:pg-1", separate from both client proxies), replicating over the
// physical replication slot "pg_2". Asynchronous by default; with
// Spec.Replication.SyncStandby the primary runs synchronous_standby_names =
// 'pg_2' and synchronous_commit = remote_apply, so a commit returns only
// once the standby has applied it.
//
// peer:pg-1 carries pg-2's WAL receiver connection (and the base backup)
// and nothing else; WAL flows pg-1 -> pg-2, i.e. "downstream" through it.
// Cutting it partitions replication while clients still reach both nodes;
// a latency toxic on it is replication lag. pg-2 has no peer link: nothing
// connects to it (after a failover the old primary stays down; faultline
// does not pg_rewind it into a standby).
//
// Failover is driven by faultline itself (PostgreSQL has no Sentinel): kill
// (or stop) the primary, then pg_promote() on the standby. Clients follow
// the promoted node with FailoverDSN, a multi-host DSN through both client
// proxies with target_session_attrs=read-write.

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Names of the pg-standby nodes and slot.
const (
	pgPrimaryName = "pg-1"
	pgStandbyName = "pg-2"
	// pgSlot is the physical replication slot on pg-1 and pg-2's
	// application_name (its name in synchronous_standby_names).
	pgSlot = "pg_2"
	// pgPort is PostgreSQL's port inside a container.
	pgPort = 5432
)

// standbyConfig says where a streaming standby copies from and streams.
type standbyConfig struct {
	Upstream string // host:port of the primary as the standby reaches it (its peer link)
	Slot     string // physical replication slot, created by pg_basebackup -C
	AppName  string // application_name: the standby's name in synchronous_standby_names
}

// conninfo is the libpq connection string pg_basebackup uses and -R writes
// into primary_conninfo (the password comes from PGPASSWORD and is written
// too).
func (sb standbyConfig) conninfo(host, port string) string {
	return fmt.Sprintf("host=%s port=%s user=%s application_name=%s sslmode=disable connect_timeout=5",
		host, port, pgUser, sb.AppName)
}

// standbyStarter is a provider that can start a PostgreSQL streaming standby.
type standbyStarter interface {
	startPostgresStandby(ctx context.Context, cfg serverConfig, sb standbyConfig) (server, error)
}

// pgStandbyTopology is the pg-standby topology (see the file comment).
type pgStandbyTopology struct {
	mu       sync.Mutex
	promoted string // the node promoted by the last Failover ("" = none yet)
}

// start starts pg-1 with its peer link, then pg-2 as its standby through
// that link, and returns once pg-2 streams from the slot (and is the
// synchronous standby when asked for).
func (t *pgStandbyTopology) start(ctx context.Context, e *Env) error {
	ss, ok := e.prov.(standbyStarter)
	if !ok {
		return fmt.Errorf("the %s provider cannot start a PostgreSQL standby", e.prov.name())
	}
	pn, err := e.prov.peerNet(ctx, e.id, e.proxies)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.peers = pn
	e.mu.Unlock()
	px, announce, follows, err := pn.link(ctx, pgPrimaryName, pgPort)
	if err != nil {
		return fmt.Errorf("peer link of %s: %w", pgPrimaryName, err)
	}
	pw := newPassword() // one password: pg-2's cluster is a copy of pg-1's
	config := func(name string) serverConfig {
		cfg := serverConfig{Name: name, Password: pw, Fsync: e.spec.PostgresFsync, Image: e.spec.PostgresImage,
			ReadyTimeout: e.spec.ReadyTimeout, Alias: name}
		pn.serverConfig(&cfg)
		return cfg
	}
	srv, err := e.prov.startPostgres(ctx, config(pgPrimaryName))
	if err != nil {
		return err
	}
	if err := e.addTopoNode(ctx, NodeSpec{Name: pgPrimaryName, Kind: Postgres}, srv, pw, px, announce, follows); err != nil {
		return err
	}
	if r, ok := srv.(interface{ allowReplication(context.Context) error }); ok {
		if err := r.allowReplication(ctx); err != nil {
			return err
		}
	}
	srv, err = ss.startPostgresStandby(ctx, config(pgStandbyName), standbyConfig{Upstream: announce, Slot: pgSlot, AppName: pgSlot})
	if err != nil {
		return err
	}
	if err := e.addTopoNode(ctx, NodeSpec{Name: pgStandbyName, Kind: Postgres}, srv, pw, nil, "", false); err != nil {
		return err
	}
	primary, _ := e.Node(pgPrimaryName)
	sync := e.spec.Replication.SyncStandby
	if sync {
		// Only now: pg_basebackup copies postgresql.auto.conf, and a promoted
		// pg-2 waiting for a standby of its own would block every commit.
		if err := pgExec(ctx, primary.DirectDSN(), "ALTER SYSTEM SET synchronous_standby_names = '"+pgSlot+"'",
			"ALTER SYSTEM SET synchronous_commit = 'remote_apply'", "SELECT pg_reload_conf()"); err != nil {
			return fmt.Errorf("node %s: make %s the synchronous standby: %w", pgPrimaryName, pgStandbyName, err)
		}
	}
	return e.waitStreaming(ctx, primary, sync)
}

// waitStreaming polls pg_stat_replication on the primary until the slot's
// WAL sender is streaming (and sync_state is sync when sync is set).
func (e *Env) waitStreaming(ctx context.Context, primary Node, sync bool) error {
	ctx, cancel := context.WithTimeout(ctx, e.spec.ReadyTimeout)
	defer cancel()
	want := "streaming"
	if sync {
		want += " (sync_state sync)"
	}
	err := pollEvery(ctx, 50*time.Millisecond, nil, func(ctx context.Context) error {
		st, err := ReplicationStatus(ctx, primary.DirectDSN())
		if err != nil {
			return err
		}
		for _, r := range st {
			if r.AppName == pgSlot && r.State == "streaming" && (!sync || r.SyncState == "sync") {
				return nil
			}
		}
		return fmt.Errorf("pg_stat_replication: %+v", st)
	})
	if err != nil {
		tail := ""
		if n, ok := e.Node(pgStandbyName); ok {
			tail = n.(*node).srv.logTail()
		}
		return fmt.Errorf("node %s: not %s from %s within %s: %w\n  log tail of %s:\n%s",
			pgStandbyName, want, pgPrimaryName, e.spec.ReadyTimeout, err, pgStandbyName, indent(tail))
	}
	return nil
}

// Replica is one row of pg_stat_replication.
type Replica struct {
	AppName   string // application_name: "pg_2" for pg-standby's standby
	State     string // streaming, catchup, startup, ...
	SyncState string // async, sync, potential, quorum
	Slot      string // the physical slot the WAL sender serves ("" = none)
}

// ReplicationStatus reads pg_stat_replication (with each sender's slot) on
// the server behind dsn: the standbys streaming from it.
func ReplicationStatus(ctx context.Context, dsn string) ([]Replica, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	rows, err := c.Query(ctx, `SELECT r.application_name, r.state, r.sync_state, coalesce(s.slot_name, '')
		FROM pg_stat_replication r LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Replica, error) {
		var x Replica
		return x, r.Scan(&x.AppName, &x.State, &x.SyncState, &x.Slot)
	})
}

// pgExec runs statements one by one on a fresh connection.
func pgExec(ctx context.Context, dsn string, stmts ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	for _, s := range stmts {
		if _, err := c.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// pgRole asks one node directly (bypassing its proxy) whether it is a
// primary or a standby; "down" when it does not answer within a second.
func pgRole(ctx context.Context, n Node) Role {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, n.DirectDSN())
	if err != nil {
		return RoleDown
	}
	defer c.Close(context.WithoutCancel(ctx))
	var rec bool
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
		return RoleDown
	}
	if rec {
		return RoleReplica
	}
	return RolePrimary
}

func (t *pgStandbyTopology) roles(ctx context.Context, e *Env) (map[string]Role, error) {
	out := map[string]Role{}
	for _, n := range e.ByKind(Postgres) {
		out[n.Name()] = pgRole(ctx, n)
	}
	return out, nil
}

// primary is the node answering pg_is_in_recovery() = false; with two (an
// old primary restarted next to the promoted one) the promoted one.
func (t *pgStandbyTopology) primary(ctx context.Context, e *Env) (Node, error) {
	roles, _ := t.roles(ctx, e)
	var prim []string
	for _, n := range e.ByKind(Postgres) {
		if roles[n.Name()] == RolePrimary {
			prim = append(prim, n.Name())
		}
	}
	t.mu.Lock()
	promoted := t.promoted
	t.mu.Unlock()
	switch {
	case len(prim) == 0:
		return nil, fmt.Errorf("pg-standby: no primary answers (roles %v)", roles)
	case len(prim) > 1 && promoted != "":
		prim = []string{promoted}
	case len(prim) > 1:
		return nil, fmt.Errorf("pg-standby: two primaries %v (roles %v)", prim, roles)
	}
	n, _ := e.Node(prim[0])
	return n, nil
}

// failover ends the primary, promotes the standby with pg_promote(wait =>
// true) and fences the old primary (see below). FailoverKill SIGKILLs the primary: what its standby had not
// received is lost (asynchronous replication). FailoverForce stops it with
// a fast shutdown, whose WAL sender streams everything to the standby
// before the server exits: a switchover that loses no committed write. The
// old primary stays down; Node.Start brings it back read-only (fenced), not
// as a standby of the new primary: that needs pg_rewind, not done here.
func (t *pgStandbyTopology) failover(ctx context.Context, e *Env, how FailoverMode) (FailoverResult, error) {
	old, err := t.primary(ctx, e)
	if err != nil {
		return FailoverResult{}, err
	}
	var next Node
	for _, n := range e.ByKind(Postgres) {
		if n.Name() != old.Name() {
			next = n
		}
	}
	if !pgFollows(ctx, next) {
		return FailoverResult{}, fmt.Errorf("pg-standby: cannot fail over from %s: %s is not its standby (a promoted standby has none of its own; a fenced old primary follows nobody)", old.Name(), next.Name())
	}
	res := FailoverResult{Mode: how, Old: old.Name(), New: next.Name(), Started: time.Now()}
	if how == FailoverKill {
		err = old.Kill(ctx)
	} else {
		err = old.Stop(ctx)
	}
	if err != nil {
		return res, fmt.Errorf("pg-standby: end primary %s: %w", old.Name(), err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(pctx, next.DirectDSN())
	if err != nil {
		return res, fmt.Errorf("pg-standby: connect to %s to promote it: %w", next.Name(), err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	var ok bool
	if err := c.QueryRow(pctx, "SELECT pg_promote(true, 25)").Scan(&ok); err != nil || !ok {
		return res, fmt.Errorf("pg-standby: pg_promote on %s (returned %v): %w\n  log tail:\n%s",
			next.Name(), ok, err, indent(next.(*node).srv.logTail()))
	}
	res.Promoted = time.Now()
	res.Took = res.Promoted.Sub(res.Started)
	t.mu.Lock()
	t.promoted = next.Name()
	t.mu.Unlock()
	// Fence the old primary: a standby.signal in its data directory makes
	// a restart (Node.Start, the failover fault's heal) come up read-only
	// in recovery, following nobody, so FailoverDSN's read-write clients
	// skip it and it cannot take writes next to the promoted node.
	if f, ok := old.(*node).srv.(interface{ fenceAsStandby(context.Context) error }); ok {
		if err := f.fenceAsStandby(ctx); err != nil {
			return res, fmt.Errorf("pg-standby: fence the old primary %s: %w", old.Name(), err)
		}
	}
	return res, nil
}

// pgFollows says whether n is a standby with a primary to follow (a fenced
// old primary is in recovery too, but has no primary_conninfo). Whether it
// streams right now does not matter: a cut replication link is a failover
// scenario of its own.
func pgFollows(ctx context.Context, n Node) bool {
	var follows bool
	err := pgQueryRow(ctx, n.DirectDSN(), "SELECT pg_is_in_recovery() AND current_setting('primary_conninfo') <> ''", &follows)
	return err == nil && follows
}

// FailoverDSN is, for pg-standby, a DSN that follows the primary: both
// nodes' client proxies as hosts, target_session_attrs=read-write. pgx
// tries them in order on every new connection (connect_timeout applies per
// host) and keeps the first that accepts writes, so a pool reconnects to
// the promoted standby after a failover. "" for other topologies.
func (e *Env) FailoverDSN() string {
	if e.spec.Topology != TopologyPGStandby {
		return ""
	}
	var hosts []string
	pw := ""
	for _, n := range e.ByKind(Postgres) {
		hosts = append(hosts, n.Addr())
		pw = n.Password()
	}
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&connect_timeout=2&target_session_attrs=read-write",
		pgUser, url.QueryEscape(pw), strings.Join(hosts, ","), pgDatabase)
}

// WaitReplayed waits until every standby of pg-standby has replayed the
// primary's WAL up to the primary's position now: what was committed
// before the call survives a failover from then on. A no-op without a
// standby (other topologies, or after a failover).
func (e *Env) WaitReplayed(ctx context.Context) error {
	if e.spec.Topology != TopologyPGStandby {
		return nil
	}
	prim, err := e.Primary(ctx)
	if err != nil {
		return err
	}
	var lsn string
	if err := pgQueryRow(ctx, prim.DirectDSN(), "SELECT pg_current_wal_lsn()::text", &lsn); err != nil {
		return fmt.Errorf("pg-standby: WAL position of %s: %w", prim.Name(), err)
	}
	for _, n := range e.ByKind(Postgres) {
		if n.Name() == prim.Name() || pgRole(ctx, n) != RoleReplica {
			continue
		}
		err := pollEvery(ctx, 20*time.Millisecond, nil, func(ctx context.Context) error {
			var done bool
			if err := pgQueryRow(ctx, n.DirectDSN(), "SELECT pg_last_wal_replay_lsn() >= '"+lsn+"'::pg_lsn", &done); err != nil {
				return err
			}
			if !done {
				return fmt.Errorf("%s has not replayed up to %s", n.Name(), lsn)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("pg-standby: %w", err)
		}
	}
	return nil
}

// pgQueryRow scans one row of sql into dest on a fresh connection.
func pgQueryRow(ctx context.Context, dsn, sql string, dest ...any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	return c.QueryRow(ctx, sql).Scan(dest...)
}
