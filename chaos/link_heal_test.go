package chaos_test

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/infra"
)

// TestChaosLinkHealAfterFailover guards the heal of a replication-lag
// against Shopify/toxiproxy#558: WAL held by the latency toxic on
// peer:pg-1 for pg-2's WAL receiver, which exits when pg-2 is promoted;
// removing the toxic then can block for good. The heal must return (each
// removal has a deadline; a stuck proxy is replaced by a fresh one on the
// same address), report what happened, and leave the link forwarding.
func TestChaosLinkHealAfterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a replicated PostgreSQL (skipped with -short)")
	}
	provider := os.Getenv("FAULTLINE_PROVIDER")
	if provider == "" {
		provider = "local"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := infra.Up(ctx, infra.Spec{Topology: infra.TopologyPGStandby, Provider: provider})
	if err != nil {
		t.Fatalf("pg-standby did not start: %v", err)
	}
	defer func() {
		if err := env.Close(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	p1, _ := env.Node("pg-1")
	link, ok := env.Link("pg-1")
	if !ok {
		t.Fatal("no peer link to pg-1")
	}
	p, err := chaos.Build(chaos.Spec{Kind: "replication-lag", Param: "2s", Target: "primary"}, "t1", env, nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Fault.Start(ctx); err != nil {
		t.Fatalf("start replication-lag: %v", err)
	}
	// WAL for pg-2 that the latency toxic holds when pg-2 is promoted.
	c, err := pgx.Connect(ctx, p1.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE blob (v text); INSERT INTO blob SELECT repeat('x', 4000) FROM generate_series(1, 2000)"); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	res, err := env.Failover(ctx, infra.FailoverKill)
	if err != nil {
		t.Fatalf("failover: %v", err)
	}
	t.Logf("failover %s → %s in %v", res.Old, res.New, res.Promoted.Sub(res.Started).Round(time.Millisecond))

	hctx, hcancel := context.WithTimeout(ctx, time.Minute)
	start := time.Now()
	herr := p.Fault.Heal(hctx)
	late := hctx.Err()
	hcancel()
	took := time.Since(start)
	if late != nil {
		t.Fatalf("heal of replication-lag after the failover did not return within its caller's minute (%v): %v", took, herr)
	}
	switch {
	case herr == nil:
		t.Logf("heal: the toxic came off in %v (Toxiproxy #558 did not trigger this time)", took.Round(time.Millisecond))
	case strings.Contains(herr.Error(), "proxy reset instead"):
		t.Logf("heal: the removal was stuck (Toxiproxy #558); the proxy was reset, %v: %v", took.Round(time.Millisecond), herr)
	default:
		t.Fatalf("heal after %v: %v", took, herr)
	}

	// The link forwards again: the old primary, restarted (rewound into a
	// standby of pg-2), answers through it.
	if err := p1.Start(ctx); err != nil {
		t.Fatalf("restart pg-1: %v", err)
	}
	u, err := url.Parse(p1.DirectDSN())
	if err != nil {
		t.Fatal(err)
	}
	u.Host = link.Proxy().Listen()
	cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
	defer ccancel()
	lc, err := pgx.Connect(cctx, u.String())
	if err != nil {
		t.Fatalf("connect to pg-1 through %s after the heal: %v", link.Name(), err)
	}
	defer lc.Close(context.Background())
	var one int
	if err := lc.QueryRow(cctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 through %s after the heal: %d, %v", link.Name(), one, err)
	}
}
