package infra

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgStandbyCases are the providers × replication modes TestPGStandby runs.
var pgStandbyCases = []struct {
	provider string
	sync     bool
}{
	{"local", false},
	{"local", true},
	{"docker", true}, // async on docker: same code path, left out to keep make test short
}

// TestPGStandby starts pg-standby for real and walks it through streaming
// replication, a replication-link partition, an asynchronous loss (or a
// synchronous block), a prepared transaction across the failover, the
// failover itself and writes through FailoverDSN on the promoted node.
func TestPGStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	for _, tc := range pgStandbyCases {
		name := tc.provider + "/async"
		if tc.sync {
			name = tc.provider + "/sync"
		}
		t.Run(name, func(t *testing.T) {
			if tc.provider == "docker" {
				requireDocker(t)
			}
			testPGStandby(t, tc.provider, tc.sync)
		})
	}
}

func testPGStandby(t *testing.T, provider string, sync bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t0 := time.Now()
	env, err := Up(ctx, Spec{Provider: provider, Topology: TopologyPGStandby,
		Replication: ReplicationOptions{SyncStandby: sync}})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() {
		var dirs []string // local: both nodes' temp dirs, gone after Close
		for _, n := range env.Nodes() {
			if s, ok := n.(*node).srv.(interface{ tempDirs() []string }); ok {
				dirs = append(dirs, s.tempDirs()...)
			}
		}
		if err := env.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		for _, d := range dirs {
			if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("temp dir %s left after Close (%v)", d, err)
			}
		}
	})
	t.Logf("pg-standby (%s, sync=%v) up in %v", env.Provider(), sync, time.Since(t0).Round(time.Millisecond))
	p1, p2 := mustNode(t, env, "pg-1"), mustNode(t, env, "pg-2")

	wantSync := "async"
	if sync {
		wantSync = "sync"
	}
	st, err := ReplicationStatus(ctx, p1.DirectDSN())
	if err != nil || len(st) != 1 || st[0] != (Replica{AppName: "pg_2", State: "streaming", SyncState: wantSync, Slot: "pg_2"}) {
		t.Fatalf("pg_stat_replication on pg-1: %+v, %v (want pg_2 streaming %s on slot pg_2)", st, err, wantSync)
	}
	if roles, err := env.Roles(ctx); err != nil || roles["pg-1"] != RolePrimary || roles["pg-2"] != RoleReplica {
		t.Fatalf("roles %v, %v", roles, err)
	}
	if prim, err := env.Primary(ctx); err != nil || prim.Name() != "pg-1" {
		t.Fatalf("primary %v, %v", prim, err)
	}
	links := env.Links()
	if len(links) != 2 || links[0].Name() != "peer:pg-1" || links[0].To() != "pg-1" || links[1].Name() != "peer:pg-2" {
		t.Fatalf("links %v", links)
	}
	link := links[0].Proxy()

	mustExec(t, p1.DSN(), "CREATE TABLE kv (k text PRIMARY KEY, v text)", "INSERT INTO kv VALUES ('a', 'replicated')")
	if sync { // remote_apply: visible on the standby once the commit returned
		if v := kvGet(t, p2.DirectDSN(), "a"); v != "replicated" {
			t.Fatalf("sync: row committed on pg-1 not on pg-2 at once: %q", v)
		}
	} else {
		waitKV(t, p2.DirectDSN(), "a", "replicated")
	}
	if err := pgExec(ctx, p2.DirectDSN(), "INSERT INTO kv VALUES ('x', 'standby')"); err == nil {
		t.Fatal("write on the standby succeeded")
	}

	// A prepared transaction on the primary, replicated before the failover:
	// PREPARE TRANSACTION is WAL-logged, so the promoted standby has it.
	mustExec(t, p1.DSN(), "BEGIN; INSERT INTO kv VALUES ('p', 'prepared'); PREPARE TRANSACTION 'fl-gid-1'")
	if gids := preparedGIDs(t, p1.DirectDSN()); len(gids) != 1 || gids[0] != "fl-gid-1" {
		t.Fatalf("pg_prepared_xacts on pg-1: %v", gids)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	if err := env.WaitReplayed(wctx); err != nil {
		t.Fatal(err)
	}
	wcancel()

	// Partition the replication link: pg-2 stops streaming, clients of
	// pg-1 are untouched.
	if err := link.Disable(ctx); err != nil {
		t.Fatal(err)
	}
	poll(t, 20*time.Second, func() error {
		st, err := ReplicationStatus(ctx, p1.DirectDSN())
		if err != nil || len(st) != 0 {
			return fmt.Errorf("pg_stat_replication %+v, %v", st, err)
		}
		return nil
	})
	// A write acknowledged by the old primary alone: async commits it and
	// loses it in the failover; sync never acknowledges it (indeterminate).
	wctx, wcancel = context.WithTimeout(ctx, 2*time.Second)
	werr := pgExec(wctx, p1.DSN(), "INSERT INTO kv VALUES ('b', 'only-on-pg-1')")
	wcancel()
	switch {
	case !sync && werr != nil:
		t.Fatalf("async: write on the primary with the link cut: %v", werr)
	case sync && werr == nil:
		t.Fatal("sync: a commit was acknowledged while no standby received it")
	case !sync && kvGet(t, p1.DirectDSN(), "b") != "only-on-pg-1":
		t.Fatal("async: the acknowledged write is not on pg-1")
	}

	res, err := env.Failover(ctx, FailoverKill)
	if err != nil {
		t.Fatalf("Failover: %v", err)
	}
	if res.Mode != FailoverKill || res.Old != "pg-1" || res.New != "pg-2" || res.Took <= 0 {
		t.Fatalf("failover result %+v", res)
	}
	t.Logf("promotion (%s, sync=%v): %v from SIGKILL to pg_promote returning", env.Provider(), sync, res.Took.Round(time.Millisecond))
	if roles, err := env.Roles(ctx); err != nil || roles["pg-1"] != RoleDown || roles["pg-2"] != RolePrimary {
		t.Fatalf("roles after failover %v, %v", roles, err)
	}
	if prim, err := env.Primary(ctx); err != nil || prim.Name() != "pg-2" {
		t.Fatalf("primary after failover %v, %v", prim, err)
	}
	if v := kvGet(t, p2.DirectDSN(), "b"); v != "" {
		t.Errorf("write made while the link was cut reached pg-2: %q", v)
	} // async: an acknowledged write is lost; sync: it was never acknowledged
	if v := kvGet(t, p2.DirectDSN(), "a"); v != "replicated" {
		t.Errorf("replicated row lost in the failover: %q", v)
	}

	// Clients follow the promoted node through FailoverDSN.
	pool, err := pgxpool.New(ctx, env.FailoverDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var rec bool
	if err := pool.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || rec {
		t.Fatalf("FailoverDSN connection: in recovery %v, %v", rec, err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO kv VALUES ('c', 'after-failover')"); err != nil {
		t.Fatalf("write through FailoverDSN: %v", err)
	}
	if v := kvGet(t, p2.DirectDSN(), "c"); v != "after-failover" {
		t.Errorf("write through FailoverDSN not on pg-2: %q", v)
	}
	// The prepared transaction survived the promotion: recovery commits it.
	if gids := preparedGIDs(t, p2.DirectDSN()); len(gids) != 1 || gids[0] != "fl-gid-1" {
		t.Fatalf("pg_prepared_xacts on the promoted pg-2: %v", gids)
	}
	if _, err := pool.Exec(ctx, "COMMIT PREPARED 'fl-gid-1'"); err != nil {
		t.Fatalf("COMMIT PREPARED on the promoted node: %v", err)
	}
	if v := kvGet(t, p2.DirectDSN(), "p"); v != "prepared" {
		t.Errorf("prepared row after COMMIT PREPARED: %q", v)
	}
	// The old primary rejoins as a standby of pg-2 (pg_rewind): what it
	// wrote after the cut is gone, replication flows pg-2 -> pg-1.
	if err := link.Enable(ctx); err != nil {
		t.Fatal(err)
	}
	rejoin(t, env, p1, p2, sync, "b")
	pool.Reset() // new connections: FailoverDSN tries pg-1 first
	if _, err := pool.Exec(ctx, "INSERT INTO kv VALUES ('e', 'after-restart')"); err != nil || kvGet(t, p2.DirectDSN(), "e") != "after-restart" {
		t.Errorf("write through FailoverDSN after the old primary's rejoin: %v (want it on pg-2)", err)
	}

	// Second failover, back to pg-1, with a write pg-1 never receives:
	// pg-1's WAL receiver connects through pg-2's peer link.
	link2 := links[1].Proxy()
	if err := link2.Disable(ctx); err != nil {
		t.Fatal(err)
	}
	poll(t, 20*time.Second, func() error {
		st, err := ReplicationStatus(ctx, p2.DirectDSN())
		if err != nil || len(st) != 0 {
			return fmt.Errorf("pg_stat_replication on pg-2 %+v, %v", st, err)
		}
		return nil
	})
	wctx, wcancel = context.WithTimeout(ctx, 2*time.Second)
	werr = pgExec(wctx, p2.DSN(), "INSERT INTO kv VALUES ('b2', 'only-on-pg-2')")
	wcancel()
	if !sync && (werr != nil || kvGet(t, p2.DirectDSN(), "b2") != "only-on-pg-2") {
		t.Fatalf("async: write on pg-2 with its link cut: %v", werr)
	} else if sync && werr == nil {
		t.Fatal("sync: a commit on pg-2 was acknowledged while no standby received it")
	}
	res, err = env.Failover(ctx, FailoverKill)
	if err != nil {
		t.Fatalf("second Failover: %v", err)
	}
	if res.Old != "pg-2" || res.New != "pg-1" {
		t.Fatalf("second failover result %+v", res)
	}
	t.Logf("second promotion (%s, sync=%v): %v", env.Provider(), sync, res.Took.Round(time.Millisecond))
	if roles, err := env.Roles(ctx); err != nil || roles["pg-1"] != RolePrimary || roles["pg-2"] != RoleDown {
		t.Fatalf("roles after the second failover %v, %v", roles, err)
	}
	for k, want := range map[string]string{"a": "replicated", "c": "after-failover", "e": "after-restart", "b2": ""} {
		if v := kvGet(t, p1.DirectDSN(), k); v != want {
			t.Errorf("pg-1 promoted again: kv[%s] = %q, want %q", k, v, want)
		}
	}
	if err := link2.Enable(ctx); err != nil {
		t.Fatal(err)
	}
	rejoin(t, env, p2, p1, sync, "b2")
	if _, err := env.Failover(ctx, FailoverForce); err != nil {
		t.Errorf("a third failover (forced) after the second rejoin: %v", err)
	}
}

// rejoin restarts old, the old primary of the last failover, and checks
// that it came back as a streaming standby of primary: not writable, the
// write lost (made on old after its replication was cut) gone, a write on
// primary replicated to it.
func rejoin(t *testing.T, env *Env, old, primary Node, sync bool, lost string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := old.Start(ctx); err != nil {
		t.Fatalf("restart the old primary %s: %v", old.Name(), err)
	}
	t.Logf("rejoin of %s (%s, sync=%v): %v from Start to streaming (pg_rewind, start, slot)", old.Name(), env.Provider(), sync, time.Since(t0).Round(time.Millisecond))
	if roles, err := env.Roles(ctx); err != nil || roles[old.Name()] != RoleReplica || roles[primary.Name()] != RolePrimary {
		t.Fatalf("roles after %s rejoined: %v, %v", old.Name(), roles, err)
	}
	if prim, err := env.Primary(ctx); err != nil || prim.Name() != primary.Name() {
		t.Fatalf("primary after %s rejoined: %v, %v", old.Name(), prim, err)
	}
	wantSync := "async"
	if sync {
		wantSync = "sync"
	}
	slot := slotOf(old.Name())
	st, err := ReplicationStatus(ctx, primary.DirectDSN())
	if err != nil || len(st) != 1 || st[0] != (Replica{AppName: slot, State: "streaming", SyncState: wantSync, Slot: slot}) {
		t.Fatalf("pg_stat_replication on %s: %+v, %v (want %s streaming %s on slot %s)", primary.Name(), st, err, slot, wantSync, slot)
	}
	if v := kvGet(t, old.DirectDSN(), lost); v != "" {
		t.Errorf("%s kept %q = %q, written after its replication was cut: pg_rewind must drop it", old.Name(), lost, v)
	}
	if err := pgExec(ctx, old.DirectDSN(), "INSERT INTO kv VALUES ('x-"+old.Name()+"', 'on-the-standby')"); err == nil {
		t.Errorf("the rejoined %s took a write", old.Name())
	}
	key := "after-rejoin-" + old.Name()
	mustExec(t, primary.DSN(), "INSERT INTO kv VALUES ('"+key+"', 'flows')")
	waitKV(t, old.DirectDSN(), key, "flows")
}

func mustExec(t *testing.T, dsn string, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pgExec(ctx, dsn, stmts...); err != nil {
		t.Fatal(err)
	}
}

// kvGet reads kv.v for k ("" when absent).
func kvGet(t *testing.T, dsn, k string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var v string
	if err := c.QueryRow(ctx, "SELECT v FROM kv WHERE k = $1", k).Scan(&v); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	return v
}

func waitKV(t *testing.T, dsn, k, want string) {
	t.Helper()
	poll(t, 20*time.Second, func() error {
		var v string
		err := pgQueryRow(context.Background(), dsn, "SELECT coalesce((SELECT v FROM kv WHERE k = '"+k+"'), '')", &v)
		if err != nil || v != want {
			return fmt.Errorf("kv[%s] = %q (%v), want %q", k, v, err, want)
		}
		return nil
	})
}

func preparedGIDs(t *testing.T, dsn string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	rows, _ := c.Query(ctx, "SELECT gid FROM pg_prepared_xacts ORDER BY gid")
	gids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return gids
}

// poll retries f until it succeeds or the deadline passes.
func poll(t *testing.T, limit time.Duration, f func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if err := pollEvery(ctx, 50*time.Millisecond, nil, func(context.Context) error { return f() }); err != nil {
		t.Fatal(err)
	}
}
