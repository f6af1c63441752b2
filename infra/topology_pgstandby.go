package infra

// The pg-standby topology: pg-1 starts as the primary, pg-2 is a streaming
// standby built with pg_basebackup from pg-1 through pg-1's peer link
// ("peer:pg-1", separate from both client proxies), replicating over the
// physical replication slot "pg_2". Asynchronous by default; with
// Spec.Replication.SyncStandby the primary runs synchronous_standby_names =
// 'pg_2' and synchronous_commit = remote_apply, so a commit returns only
// once the standby has applied it.
//
// Each node has a peer link; a standby's WAL receiver (and a base backup or
// a rewind) connects to its primary's, so WAL flows "downstream" through
// the primary's link and nothing else uses it. Cutting it partitions
// replication while clients still reach both nodes; a latency toxic on it
// is replication lag.
//
// Failover is driven by faultline itself (PostgreSQL has no Sentinel): kill
// (or stop) the primary, then pg_promote() on the standby. Clients follow
// the promoted node with FailoverDSN, a multi-host DSN through both client
// proxies with target_session_attrs=read-write. The old primary is fenced
// (its next start is read-only) and its next start (Node.Start, the
// failover fault's heal) rewinds it with pg_rewind from the new primary
// through that one's peer link and brings it back as a streaming standby on
// a slot of its own, so the topology can fail over again, back to it.

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Names of the pg-standby nodes.
const (
	pgPrimaryName = "pg-1"
	pgStandbyName = "pg-2"
	// pgPort is PostgreSQL's port inside a container.
	pgPort = 5432
)

// slotOf is the physical replication slot a node streams from when it is
// the standby ("pg-2" -> "pg_2"), and its application_name (its name in
// synchronous_standby_names).
func slotOf(node string) string { return strings.ReplaceAll(node, "-", "_") }

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

// rewindConfig is what a stopped old primary needs to rejoin: the new
// primary (Upstream: its peer link), the slot there and its application_name.
type rewindConfig struct{ standbyConfig }

// rewindScript is the sh script that turns the stopped old primary in
// dataDir into a standby of rw.Upstream: pg_rewind (PGPASSWORD from the
// environment) throws away what the old primary wrote after the two
// histories diverged — writes its standby never received, lost for good —
// and copies what changed on the new primary; then primary_conninfo and
// primary_slot_name point at the new primary, and standby.signal makes the
// start a standby's. standby.signal is back on every exit: a failed rewind
// leaves the node fenced, never a second primary.
func rewindScript(dataDir, pgRewind string, rw rewindConfig, fsync bool) string {
	host, port, _ := net.SplitHostPort(rw.Upstream)
	conninfo := rw.conninfo(host, port)
	sync := " --no-sync"
	if fsync {
		sync = ""
	}
	auto := `"$D/postgresql.auto.conf"`
	return strings.Join([]string{
		"set -e",
		"D=" + dataDir,
		`trap 'touch "$D/standby.signal"' EXIT`,
		// pg_rewind first finishes a killed server's crash recovery in
		// single-user mode, which refuses to run with standby.signal.
		`rm -f "$D/standby.signal"`,
		fmt.Sprintf(`%s -D "$D" --source-server='%s dbname=%s'%s`, pgRewind, conninfo, pgDatabase, sync),
		// pg_rewind copied the new primary's postgresql.auto.conf: keep
		// all but the replication settings (a standby that waits for a
		// synchronous standby of its own would block every commit once
		// promoted), then follow the new primary on the slot.
		`grep -v -E '^(primary_conninfo|primary_slot_name|synchronous_standby_names|synchronous_commit) ' ` + auto + ` > "$D/auto.conf.tmp" || true`,
		fmt.Sprintf(`echo "primary_conninfo = '%s password=$PGPASSWORD'" >> "$D/auto.conf.tmp"`, conninfo),
		fmt.Sprintf(`echo "primary_slot_name = '%s'" >> "$D/auto.conf.tmp"`, rw.Slot),
		`mv "$D/auto.conf.tmp" ` + auto,
	}, "\n") + "\n"
}

// pgRewinder is a PostgreSQL server that can be rewound into a standby.
type pgRewinder interface {
	prepareRewind(ctx context.Context, rw rewindConfig) error
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
	px2, announce2, follows2, err := pn.link(ctx, pgStandbyName, pgPort)
	if err != nil {
		return fmt.Errorf("peer link of %s: %w", pgStandbyName, err)
	}
	pw := newPassword() // one password: pg-2's cluster is a copy of pg-1's
	config := func(name string) serverConfig {
		cfg := serverConfig{Name: name, Password: pw, Fsync: e.spec.PostgresFsync, Image: e.spec.PostgresImage,
			ReadyTimeout: e.spec.ReadyTimeout, Alias: name, Rewindable: true}
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
	primary, _ := e.Node(pgPrimaryName)
	// In the configuration file too (pg_basebackup and pg_rewind copy it):
	// pg_rewind's crash recovery of a killed node runs a single-user
	// server on it with the file's settings only. The wal_log_hints it
	// runs with is the one pg_rewind then requires in the control file;
	// with the default max_prepared_transactions (0) it cannot replay a
	// PREPARE TRANSACTION.
	if err := pgExec(ctx, primary.DirectDSN(), "ALTER SYSTEM SET wal_log_hints = on",
		"ALTER SYSTEM SET max_prepared_transactions = 64"); err != nil {
		return fmt.Errorf("node %s: %w", pgPrimaryName, err)
	}
	slot := slotOf(pgStandbyName)
	srv, err = ss.startPostgresStandby(ctx, config(pgStandbyName), standbyConfig{Upstream: announce, Slot: slot, AppName: slot})
	if err != nil {
		return err
	}
	if err := e.addTopoNode(ctx, NodeSpec{Name: pgStandbyName, Kind: Postgres}, srv, pw, px2, announce2, follows2); err != nil {
		return err
	}
	standby, _ := e.Node(pgStandbyName)
	sync := e.spec.Replication.SyncStandby
	if sync {
		// Only now: pg_basebackup copies postgresql.auto.conf, and a promoted
		// pg-2 waiting for a standby of its own would block every commit.
		if err := makeSync(ctx, primary, pgStandbyName); err != nil {
			return err
		}
	}
	return e.waitStreaming(ctx, primary, standby, sync)
}

// makeSync makes standby the synchronous standby of primary
// (remote_apply).
func makeSync(ctx context.Context, primary Node, standby string) error {
	if err := pgExec(ctx, primary.DirectDSN(), "ALTER SYSTEM SET synchronous_standby_names = '"+slotOf(standby)+"'",
		"ALTER SYSTEM SET synchronous_commit = 'remote_apply'", "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("node %s: make %s the synchronous standby: %w", primary.Name(), standby, err)
	}
	return nil
}

// waitStreaming polls pg_stat_replication on the primary until standby's
// WAL sender is streaming from its slot (and sync_state is sync when sync
// is set).
func (e *Env) waitStreaming(ctx context.Context, primary, standby Node, sync bool) error {
	ctx, cancel := context.WithTimeout(ctx, e.spec.ReadyTimeout)
	defer cancel()
	want := "streaming"
	if sync {
		want += " (sync_state sync)"
	}
	slot := slotOf(standby.Name())
	err := pollEvery(ctx, 50*time.Millisecond, nil, func(ctx context.Context) error {
		st, err := ReplicationStatus(ctx, primary.DirectDSN())
		if err != nil {
			return err
		}
		for _, r := range st {
			if r.AppName == slot && r.Slot == slot && r.State == "streaming" && (!sync || r.SyncState == "sync") {
				return nil
			}
		}
		return fmt.Errorf("pg_stat_replication: %+v", st)
	})
	if err != nil {
		return fmt.Errorf("node %s: not %s from %s within %s: %w\n  log tail of %s:\n%s",
			standby.Name(), want, primary.Name(), e.spec.ReadyTimeout, err, standby.Name(), indent(standby.(*node).srv.logTail()))
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
	for _, n := range e.standbyPair() {
		out[n.Name()] = pgRole(ctx, n)
	}
	return out, nil
}

// settled: one node of the pair is primary, the other a standby (a
// rejoined old primary streams once Node.Start returned: pgRejoin).
func (t *pgStandbyTopology) settled(ctx context.Context, e *Env) error {
	roles, _ := t.roles(ctx, e)
	n := map[Role]int{}
	for _, r := range roles {
		n[r]++
	}
	if n[RolePrimary] != 1 || n[RoleReplica] != len(roles)-1 {
		return fmt.Errorf("pg-standby: roles %v (want one primary, the other a standby)", roles)
	}
	return nil
}

// primary is the node answering pg_is_in_recovery() = false; with two (an
// old primary restarted next to the promoted one) the promoted one.
func (t *pgStandbyTopology) primary(ctx context.Context, e *Env) (Node, error) {
	roles, _ := t.roles(ctx, e)
	var prim []string
	for _, n := range e.standbyPair() {
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
// true) and fences the old primary, whose next start rejoins (see
// pgRejoin). FailoverKill SIGKILLs the primary: what its standby had not
// received is lost (asynchronous replication), and the rewind at the
// rejoin throws the old primary's copy away too. FailoverForce stops it
// with a fast shutdown, whose WAL sender streams everything to the standby
// before the server exits: a switchover that loses no committed write.
func (t *pgStandbyTopology) failover(ctx context.Context, e *Env, how FailoverMode) (FailoverResult, error) {
	old, err := t.primary(ctx, e)
	if err != nil {
		return FailoverResult{}, err
	}
	var next Node
	for _, n := range e.standbyPair() {
		if n.Name() != old.Name() {
			next = n
		}
	}
	if !pgFollows(ctx, next) {
		return FailoverResult{}, fmt.Errorf("pg-standby: cannot fail over from %s: %s is not its standby (it is down or fenced: the old primary of the last failover rejoins as the standby when it starts again)", old.Name(), next.Name())
	}
	res := FailoverResult{Mode: how, Old: old.Name(), New: next.Name(), Started: time.Now()}
	if how == FailoverKill {
		err = old.Kill(ctx)
	} else {
		err = old.Stop(ctx)
	}
	res.OldStopped = true
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
	// Reserve the WAL the old primary's rejoin will stream, now: its rewind
	// restarts replay at its last checkpoint before the timelines split,
	// which is at or after the promoted node's last restartpoint, the LSN a
	// slot created now keeps. A slot created only at the rejoin reserved
	// from that moment's checkpoint, and under load the new primary had
	// recycled the segment the rewound node needed ("requested WAL segment
	// 000000030000000000000003 has already been removed", never
	// consistent, TestRunFailoverTwice 1 run in 3). An inactive slot of
	// that name (an earlier round's) would hold the wrong point: replaced.
	slot := slotOf(old.Name())
	if _, err := c.Exec(pctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, slot); err != nil {
		return res, fmt.Errorf("pg-standby: drop the stale slot %s on the promoted %s: %w", slot, next.Name(), err)
	}
	if _, err := c.Exec(pctx, `SELECT pg_create_physical_replication_slot($1, true)`, slot); err != nil {
		return res, fmt.Errorf("pg-standby: reserve WAL for %s's rejoin (slot %s) on the promoted %s: %w", old.Name(), slot, next.Name(), err)
	}
	// Fence the old primary (standby.signal: a restart comes up read-only,
	// so FailoverDSN's read-write clients skip it and it cannot take
	// writes next to the promoted node) and make its next start rewind
	// it into a standby of the new one.
	on := old.(*node)
	rw, ok := on.srv.(pgRewinder)
	if !ok {
		return res, fmt.Errorf("pg-standby: the %s provider cannot rewind the old primary %s", e.prov.name(), old.Name())
	}
	if err := rw.prepareRewind(ctx, rewindConfig{standbyConfig{Upstream: next.(*node).announce, Slot: slot, AppName: slot}}); err != nil {
		return res, fmt.Errorf("pg-standby: fence the old primary %s: %w", old.Name(), err)
	}
	on.mu.Lock()
	on.rejoin = &pgRejoin{e: e, primary: next}
	on.mu.Unlock()
	return res, nil
}

// pgRejoin is the pending rejoin of an old primary as a standby of the
// node promoted in its place (node.rejoin). Before the start: a
// checkpoint on the new primary (pg_promote's end-of-recovery checkpoint
// runs in the background, and until one completes pg_rewind reads the old
// timeline from its control file and finds nothing to rewind); the
// physical slot there was reserved at the promotion (created now only if
// someone dropped it). The start itself runs the rewind (prepareRewind).
// After it: the node streams from its slot, and with SyncStandby is the
// new primary's synchronous standby.
type pgRejoin struct {
	e       *Env
	primary Node // the new primary
}

func (r *pgRejoin) beforeStart(ctx context.Context, n *node) error {
	slot := slotOf(n.name)
	err := pgExec(ctx, r.primary.DirectDSN(), "CHECKPOINT",
		"SELECT pg_create_physical_replication_slot('"+slot+"', true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '"+slot+"')")
	if err != nil {
		return fmt.Errorf("pg-standby: rejoin %s: prepare the new primary %s: %w", n.name, r.primary.Name(), err)
	}
	return nil
}

func (r *pgRejoin) afterStart(ctx context.Context, n *node) error {
	sync := r.e.spec.Replication.SyncStandby
	if sync {
		if err := makeSync(ctx, r.primary, n.name); err != nil {
			return err
		}
	}
	if err := r.e.waitStreaming(ctx, r.primary, n, sync); err != nil {
		return fmt.Errorf("pg-standby: rejoin %s: %w", n.name, err)
	}
	return nil
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

// standbyPair is pg-standby's own nodes, pg-1 and pg-2: not the
// independent PostgreSQL nodes beside them (the bank's participant B).
func (e *Env) standbyPair() []Node {
	var out []Node
	for _, name := range []string{pgPrimaryName, pgStandbyName} {
		if n, ok := e.Node(name); ok {
			out = append(out, n)
		}
	}
	return out
}

// FailoverDSN is, for pg-standby, a DSN that follows the primary: both
// nodes' client proxies as hosts, target_session_attrs=read-write. pgx
// tries them in order on every new connection (connect_timeout applies per
// host) and keeps the first that accepts writes, so a pool reconnects to
// the promoted standby after a failover. "" for other topologies.
func (e *Env) FailoverDSN() string { return e.failoverDSN(false) }

// FailoverDirectDSN is FailoverDSN through the nodes' own addresses
// (bypassing their proxies, so no network fault hides the primary): for
// set-up and audits. "" for other topologies.
func (e *Env) FailoverDirectDSN() string { return e.failoverDSN(true) }

func (e *Env) failoverDSN(direct bool) string {
	if e.spec.Topology != TopologyPGStandby {
		return ""
	}
	var hosts []string
	pw := ""
	for _, n := range e.standbyPair() {
		if direct {
			hosts = append(hosts, n.DirectAddr())
		} else {
			hosts = append(hosts, n.Addr())
		}
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
	for _, n := range e.standbyPair() {
		if n.Name() == prim.Name() || !pgFollows(ctx, n) {
			continue // a fenced old primary follows nobody
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
