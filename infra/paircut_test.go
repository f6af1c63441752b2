package infra

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestPairCutDocker: cutting redis-3|redis-1 stops redis-3's replication
// while redis-2 still replicates (WAIT counts one acknowledging replica),
// four tagged rules sit in the peer proxy's namespace, Heal removes exactly
// them and replication resumes; an isolated Sentinel loses the primary
// while the others keep it; the close path removes a cut left in place.
func TestPairCutDocker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 7 containers")
	}
	requireDocker(t)
	requireToxiproxyImage(t)
	env := upTopology(t, "docker", TopologyRedisSentinel)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := func(name string) *redis.Client {
		n := mustNode(t, env, name)
		return redisClient(t, n.Addr(), n.Password(), 3*time.Second)
	}
	primary, r2, r3 := client("redis-1"), client("redis-2"), client("redis-3")
	if ok, why := env.CanCutPairs(); !ok {
		t.Fatalf("CanCutPairs on docker = false: %s", why)
	}
	if n, err := primary.Do(ctx, "WAIT", 2, 2000).Int(); err != nil || n != 2 {
		t.Fatalf("WAIT 2 before the cut = %d, %v; want 2", n, err)
	}

	cut, err := env.CutPairs(ctx, [2]string{"redis-3", "redis-1"})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := env.CutRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rules of %s:\n%s", cut.Tag(), strings.Join(rules, "\n"))
	if len(rules) != 4 {
		t.Fatalf("CutRules = %d rules, want 4 (2 pairs of directions)", len(rules))
	}
	for _, r := range rules {
		if !strings.Contains(r, cut.Tag()) || !strings.Contains(r, "-j DROP") {
			t.Fatalf("rule %q lacks the cut's tag %s or DROP", r, cut.Tag())
		}
	}

	t0 := time.Now()
	if err := primary.Set(ctx, "cut", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := primary.Do(ctx, "WAIT", 2, 1000).Int()
	if err != nil || n != 1 {
		t.Fatalf("WAIT 2 1000 during the cut = %d, %v; want 1 (redis-2 only)", n, err)
	}
	if got, err := r2.Get(ctx, "cut").Result(); err != nil || got != "v1" {
		t.Fatalf("redis-2 (not cut) lacks the write: %q, %v", got, err)
	}
	if got, err := r3.Get(ctx, "cut").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("the write reached redis-3 across the cut: %q, %v", got, err)
	}
	// The Sentinels still reach both (their links are other pairs).
	roles, err := env.Roles(ctx)
	if err != nil || roles["redis-3"] != RoleReplica {
		t.Fatalf("Roles during the cut = %v, %v", roles, err)
	}

	if err := cut.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cut.Heal(ctx); err != nil { // twice is harmless
		t.Fatalf("second Heal: %v", err)
	}
	if rules, err := env.CutRules(ctx); err != nil || len(rules) != 0 {
		t.Fatalf("after Heal CutRules = %q, %v; want none", rules, err)
	}
	eventually(t, 20*time.Second, "redis-3 catches up after the heal", func(ctx context.Context) error {
		got, err := r3.Get(ctx, "cut").Result()
		if err != nil || got != "v1" {
			return fmt.Errorf("GET cut on redis-3 = %q, %v", got, err)
		}
		return nil
	})
	t.Logf("WAIT 2 counted 1 replica during the cut; healed, redis-3 had the write %v after it", time.Since(t0).Round(time.Millisecond))
	if n, err := primary.Do(ctx, "WAIT", 2, 2000).Int(); err != nil || n != 2 {
		t.Fatalf("WAIT 2 after the heal = %d, %v; want 2", n, err)
	}

	// sentinel-1 cut from every other node (isolate): it calls the primary
	// subjectively down, the other Sentinels do not. The cut is left in
	// place for the close path (Env.Close runs healCuts before it destroys
	// the proxy container), which removes it.
	var isolate [][2]string
	for _, n := range []string{"redis-1", "redis-2", "redis-3", "sentinel-2", "sentinel-3"} {
		isolate = append(isolate, [2]string{"sentinel-1", n})
	}
	if _, err := env.CutPairs(ctx, isolate...); err != nil {
		t.Fatal(err)
	}
	if rules, err := env.CutRules(ctx); err != nil || len(rules) != 20 {
		t.Fatalf("CutRules with sentinel-1 isolated = %d rules, %v; want 20", len(rules), err)
	}
	masterFlags := func(name string) (string, error) {
		c := client(name)
		m, err := c.Do(ctx, "SENTINEL", "MASTER", SentinelMaster).Result()
		if err != nil {
			return "", err
		}
		return Pairs(m)["flags"], nil
	}
	eventually(t, 10*time.Second, "isolated sentinel-1 calls the primary down", func(ctx context.Context) error {
		f, err := masterFlags("sentinel-1")
		if err != nil || !strings.Contains(f, "s_down") {
			return fmt.Errorf("sentinel-1 flags %q, %v", f, err)
		}
		return nil
	})
	if f, err := masterFlags("sentinel-2"); err != nil || f != "master" {
		t.Fatalf("sentinel-2 (not isolated) flags %q, %v; want master", f, err)
	}
	pn := env.peers.(*dockerPeerNet)
	if err := pn.healCuts(ctx); err != nil {
		t.Fatal(err)
	}
	if rules, err := env.CutRules(ctx); err != nil || len(rules) != 0 {
		t.Fatalf("after healCuts CutRules = %q, %v; want none", rules, err)
	}
	eventually(t, 10*time.Second, "sentinel-1 sees the primary again", func(ctx context.Context) error {
		f, err := masterFlags("sentinel-1")
		if err != nil || f != "master" {
			return fmt.Errorf("sentinel-1 flags %q, %v", f, err)
		}
		return nil
	})

	// Bad pairs are refused before any rule is made.
	for _, p := range [][2]string{{"redis-1", "redis-1"}, {"redis-1", "nope"}} {
		if _, err := env.CutPairs(ctx, p); err == nil {
			t.Errorf("CutPairs(%v) succeeded", p)
		}
	}
}

// TestPairCutLocalRefused: the local provider says why it cannot cut a pair.
func TestPairCutLocalRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 real servers")
	}
	env := upTopology(t, "local", TopologyRedisSentinel)
	if ok, why := env.CanCutPairs(); ok || !strings.Contains(why, "docker") {
		t.Fatalf("CanCutPairs on local = %v, %q", ok, why)
	}
	_, err := env.CutPairs(context.Background(), [2]string{"redis-3", "redis-1"})
	if !errors.Is(err, ErrPairCutUnsupported) {
		t.Fatalf("CutPairs on local: %v, want ErrPairCutUnsupported", err)
	}
}
