package bench

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/infra"
)

// sharedServers starts Redis and two PostgreSQL servers the way a user's
// would be (faultline's local provider, then used only by address), puts
// a key and a table of "another application" on them, and returns them as
// external targets.
func sharedServers(t *testing.T) (targets []infra.ExternalTarget, rc *redis.Client, pgs []*pgx.Conn) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real servers (-short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := infra.Up(ctx, infra.Spec{Nodes: infra.Nodes(1, 2), Provider: "local"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Close(context.Background()) })
	r := env.ByKind(infra.Redis)[0]
	targets = append(targets, infra.ExternalTarget{Name: "redis-1", Kind: infra.Redis, Addr: r.DirectAddr(), Password: r.Password()})
	rc = redis.NewClient(&redis.Options{Addr: r.DirectAddr(), Password: r.Password(), MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	if err := rc.Set(ctx, "app:keep", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for i, n := range env.ByKind(infra.Postgres) {
		targets = append(targets, infra.ExternalTarget{Name: n.Name(), Kind: infra.Postgres, DSN: n.DirectDSN()})
		c, err := pgx.Connect(ctx, n.DirectDSN())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		if _, err := c.Exec(ctx, `CREATE TABLE public.app_keep (id int); CREATE TABLE public.accounts (id int)`); err != nil {
			t.Fatalf("pg-%d: %v", i+1, err)
		}
		pgs = append(pgs, c)
	}
	return targets, rc, pgs
}

// leftovers lists what faultline left on the servers: keys matching
// faultline:*, schemas named faultline_*, prepared transactions. It also
// fails the test when the other application's key or tables are gone.
func leftovers(t *testing.T, rc *redis.Client, pgs []*pgx.Conn) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []string
	var cursor uint64
	for {
		keys, next, err := rc.Scan(ctx, cursor, "faultline:*", 1000).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			out = append(out, "key "+k)
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	if v, err := rc.Get(ctx, "app:keep").Result(); err != nil || v != "1" {
		t.Errorf("the other application's key app:keep is gone (%q, %v): faultline flushed a shared server", v, err)
	}
	for i, c := range pgs {
		rows, _ := c.Query(ctx, `SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname LIKE 'faultline\_%'
			UNION ALL SELECT 'prepared ' || gid FROM pg_prepared_xacts WHERE gid <> 'app:in-doubt'`)
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, names...)
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('app_keep', 'accounts')`).Scan(&n); err != nil || n != 2 {
			t.Errorf("pg-%d: the other application's tables: %d of 2 left (%v)", i+1, n, err)
		}
	}
	return out
}

func runExternal(t *testing.T, cfg Config) (*results.Results, string) {
	t.Helper()
	cfg.Out, cfg.Provider, cfg.Seed = t.TempDir(), ProviderExternal, 1
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res, cfg.Out
}

// The acceptance test of --provider external: servers faultline did not
// start, a lock workload and the bank with a latency and a partition
// fault, verdicts as on faultline's own servers (the unfenced lock caught,
// the fenced one clean), and nothing of the run left afterwards — while
// the other application's key and tables survive.
func TestExternalTargets(t *testing.T) {
	targets, rc, pgs := sharedServers(t)

	t.Run("refuses a prefix in use", func(t *testing.T) {
		ctx := context.Background()
		if err := rc.Set(ctx, infra.KeyPrefix("taken")+"x", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		_, err := Run(ctx, Config{Out: t.TempDir(), Provider: ProviderExternal, External: targets, Namespace: "taken",
			Impls: []string{"redis-setnx"}, Workload: "fenced-counter", Duration: time.Second, Seed: 1})
		if err == nil || !strings.Contains(err.Error(), "exist already") {
			t.Fatalf("Run with keys under the prefix: %v, want a refusal", err)
		}
		got := leftovers(t, rc, pgs)
		if len(got) != 1 || got[0] != "key "+infra.KeyPrefix("taken")+"x" {
			t.Errorf("after the refusal: %v, want only the planted key (the schema created meanwhile dropped)", got)
		}
		rc.Del(ctx, infra.KeyPrefix("taken")+"x")
	})

	t.Run("refuses a schema in use", func(t *testing.T) {
		// Planted on pg-2: pg-1's schema, created first, must go again.
		ctx := context.Background()
		if _, err := pgs[1].Exec(ctx, `CREATE SCHEMA `+infra.Schema("taken2")); err != nil {
			t.Fatal(err)
		}
		_, err := Run(ctx, Config{Out: t.TempDir(), Provider: ProviderExternal, External: targets, Namespace: "taken2",
			Impls: []string{"2pc"}, Workload: "bank", Duration: time.Second, Seed: 1})
		if err == nil || !strings.Contains(err.Error(), "schema "+infra.Schema("taken2")+" exists already") {
			t.Fatalf("Run with the schema taken: %v, want a refusal", err)
		}
		got := leftovers(t, rc, pgs)
		if len(got) != 1 || got[0] != "schema "+infra.Schema("taken2") {
			t.Errorf("after the refusal: %v, want only the planted schema (pg-1's dropped)", got)
		}
		if _, err := pgs[1].Exec(ctx, `DROP SCHEMA `+infra.Schema("taken2")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("gc", func(t *testing.T) {
		ctx := context.Background()
		plant := func(ns string) {
			if err := rc.Set(ctx, infra.KeyPrefix(ns)+"k", "1", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := pgs[1].Exec(ctx, `CREATE SCHEMA `+infra.Schema(ns)+`; CREATE TABLE `+infra.Schema(ns)+`.t (id int)`); err != nil {
				t.Fatal(err)
			}
		}
		plant("crashed1")
		plant("crashed2")
		if _, err := infra.GCExternal(ctx, targets, "crashed1"); err != nil {
			t.Fatal(err)
		}
		if got := leftovers(t, rc, pgs); len(got) != 2 || !strings.Contains(strings.Join(got, " "), "crashed2") {
			t.Errorf("gc --namespace crashed1 left %v, want only crashed2's key and schema", got)
		}
		if _, err := infra.GCExternal(ctx, targets, ""); err != nil {
			t.Fatal(err)
		}
		if got := leftovers(t, rc, pgs); len(got) > 0 {
			t.Errorf("gc left %v", got)
		}
	})

	t.Run("locks", func(t *testing.T) {
		res, dir := runExternal(t, Config{External: targets,
			Impls: []string{"redis-setnx", "redis-fenced"}, Workload: "fenced-counter",
			Clients: 4, Keys: 2, TTL: 300 * time.Millisecond, Duration: 4 * time.Second,
			Faults: []string{"latency:redis-1=50ms@500ms+700ms", "holder-pause:2xttl@1500ms", "partition:redis-1@2500ms+700ms"},
		})
		if res.Provider != ProviderExternal || res.Path != PathProxied {
			t.Errorf("provider %s path %s, want external, proxied", res.Provider, res.Path)
		}
		if v := verdict(res, "redis-setnx", "mutual-exclusion"); v.Valid != results.Invalid {
			t.Errorf("redis-setnx under holder-pause: mutual-exclusion %s (%s), want a violation", v.Valid, v.Summary)
		}
		for _, v := range res.Verdicts {
			if v.Impl == "redis-fenced" && v.Valid == results.Invalid && v.Checker != "availability" {
				t.Errorf("redis-fenced: %s invalid: %s", v.Checker, v.Summary)
			}
		}
		// The partition of its only node reached the server through the
		// proxy: acquires failed inside that window and only there.
		if v := verdict(res, "redis-fenced", "availability"); v.Valid != results.Invalid || !strings.Contains(v.Summary, "partition:redis-1") {
			t.Errorf("redis-fenced availability %s (%s), want the partition's failed acquires", v.Valid, v.Summary)
		}
		if n := res.Impl("redis-fenced").Counters["fenced"]; n < 1 {
			t.Errorf("redis-fenced: %d fenced writes, want the paused holder's write fenced", n)
		}
		kinds := map[string]int{}
		for _, w := range res.Faults {
			kinds[strings.SplitN(w.Fault, ":", 2)[0]]++
		}
		if kinds["latency"] != 2 || kinds["partition"] != 2 {
			t.Errorf("fault windows %v, want a latency and a partition per implementation", kinds)
		}
		c := res.Capabilities
		if c == nil || c.Refused["kill"] == "" || c.Refused["pause"] == "" || c.Refused["replication-lag"] == "" ||
			!slices.Contains(c.Possible, "partition") || slices.Contains(c.Possible, "kill") ||
			!strings.HasPrefix(c.KeyPrefix, "faultline:") || c.Schema == "" {
			t.Fatalf("capabilities %+v: want partition possible, kill, pause and replication faults refused, the key prefix and schema", c)
		}
		// redis-benchmark takes the password on its command line: not
		// with the user's password; the Go client's reference still runs.
		if cal := res.Calibration; cal == nil || cal.RedisBenchmarkRPS != 0 || !strings.Contains(cal.Note, "this server's password is yours") {
			t.Errorf("calibration %+v: want redis-benchmark skipped for the password's sake", cal)
		}
		checkNoSecrets(t, dir, targets)
		if got := leftovers(t, rc, pgs); len(got) > 0 {
			t.Errorf("left on the servers after the run: %v", got)
		}
	})

	t.Run("bank", func(t *testing.T) {
		// The other application has a transaction in doubt on pg-1:
		// faultline must neither roll it back nor report it as its own.
		ctx := context.Background()
		if _, err := pgs[0].Exec(ctx, `BEGIN; INSERT INTO public.app_keep VALUES (1); PREPARE TRANSACTION 'app:in-doubt'`); err != nil {
			t.Fatal(err)
		}
		defer pgs[0].Exec(ctx, `ROLLBACK PREPARED 'app:in-doubt'`)
		res, dir := runExternal(t, Config{External: targets,
			Impls: []string{"2pc", "outbox"}, Workload: "bank",
			Clients: 4, Duration: 4 * time.Second,
			Faults: []string{"latency:pg-1=50ms@500ms+700ms", "partition:pg-2@2s+700ms"},
		})
		bad := 0
		for _, v := range res.Verdicts {
			if v.Valid == results.Invalid {
				bad++
				t.Errorf("%s: %s invalid: %s", v.Impl, v.Checker, v.Summary)
				for _, x := range v.Violations {
					t.Logf("  %s: %s", x.Kind, x.Description)
				}
			}
		}
		if len(res.Verdicts) == 0 || bad > 0 {
			t.Errorf("%d verdicts, %d invalid", len(res.Verdicts), bad)
		}
		for _, impl := range []string{"2pc", "outbox"} {
			if ir := res.Impl(impl); ir.Ops["transfer"].Count == 0 {
				t.Errorf("%s: no transfer measured (%+v)", impl, ir.Ops)
			}
		}
		checkNoSecrets(t, dir, targets)
		if got := leftovers(t, rc, pgs); len(got) > 0 {
			t.Errorf("left on the servers after the run: %v", got)
		}
		var n int
		if err := pgs[0].QueryRow(ctx, `SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'app:in-doubt'`).Scan(&n); err != nil || n != 1 {
			t.Errorf("the other application's prepared transaction: %d left (%v), want it untouched", n, err)
		}
	})
}

// checkNoSecrets fails when a file of the run directory (results.json,
// history.jsonl) holds a password or a full DSN.
func checkNoSecrets(t *testing.T, dir string, targets []infra.ExternalTarget) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, done, err := history.Decompress(f)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	hist, err := io.ReadAll(rd)
	if err != nil || len(hist) == 0 {
		t.Fatalf("history: %d bytes, %v", len(hist), err)
	}
	raw = append(raw, hist...)
	for _, tg := range targets {
		for _, secret := range []string{tg.Password, tg.DSN} {
			if secret != "" && strings.Contains(string(raw), secret) {
				t.Errorf("results.json contains a secret of %s", tg.Name)
			}
		}
		if tg.Kind == infra.Postgres {
			if u := tg.DSN; strings.Contains(string(raw), u[strings.Index(u, ":")+3:strings.Index(u, "@")]) {
				t.Errorf("results.json contains %s's user:password", tg.Name)
			}
		}
	}
}
