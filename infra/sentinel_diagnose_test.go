package infra

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// A failover the Sentinels cannot carry out explains itself: with both
// replicas at replica-priority 0 no replica may be promoted, and the error
// quotes each Sentinel's view (the replicas' priority 0) and its log
// (-failover-abort-no-good-slave), addresses named after their nodes.
func TestSentinelFailoverDiagnosis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 real servers")
	}
	env := upTopology(t, "local", TopologyRedisSentinel)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, r := range []string{"redis-2", "redis-3"} {
		n := mustNode(t, env, r)
		if err := redisClient(t, n.Addr(), n.Password(), 2*time.Second).ConfigSet(ctx, "replica-priority", "0").Err(); err != nil {
			t.Fatalf("CONFIG SET replica-priority 0 on %s: %v", r, err)
		}
	}
	// Each Sentinel reads a replica's priority from its INFO (every 10 s).
	eventually(t, 30*time.Second, "every Sentinel sees both replicas at priority 0", func(ctx context.Context) error {
		for _, s := range env.ByKind(Sentinel) {
			c := directClient(s.(*node))
			rs, err := c.Do(ctx, "SENTINEL", "REPLICAS", SentinelMaster).Slice()
			c.Close()
			if err != nil {
				return err
			}
			for _, r := range rs {
				if f := Pairs(r); f["slave-priority"] != "0" {
					return fmt.Errorf("%s: replica %s:%s at priority %s", s.Name(), f["ip"], f["port"], f["slave-priority"])
				}
			}
		}
		return nil
	})
	fctx, fcancel := context.WithTimeout(ctx, 8*time.Second)
	res, err := env.Failover(fctx, FailoverKill)
	fcancel()
	if err == nil {
		t.Fatalf("Failover with no promotable replica = %+v, want an error", res)
	}
	msg := err.Error()
	t.Logf("the error:\n%s", msg)
	for _, want := range []string{
		"no new primary", "what the Sentinels think:",
		"\n  sentinel-1: tilt 0;", "\n  sentinel-2: tilt 0;", "\n  sentinel-3: tilt 0;",
		"master redis-1 flags ", "s_down",
		"redis-2 flags slave master-link", "redis-3 flags slave master-link", "priority 0 ",
		"# -failover-abort-no-good-slave master faultline redis-1",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the failover error does not say %q", want)
		}
	}
	if !regexp.MustCompile(`\n      \d\d:\d\d:\d\d\.\d{3} # \+sdown master faultline redis-1\n`).MatchString(msg) {
		t.Errorf("the failover error quotes no +sdown of redis-1 as a log line that starts with its time")
	}
}

func TestAnnounceNamer(t *testing.T) {
	e := &Env{nodes: []*node{
		{name: "redis-1", announce: "127.0.0.1:40569"},
		{name: "redis-2", announce: "127.0.0.1:4056"},
		{name: "sentinel-1", announce: "10.0.3.7:7003"},
	}}
	name := e.announceNamer()
	for in, want := range map[string]string{
		"# +switch-master faultline 127.0.0.1 40569 127.0.0.1 4056":                "# +switch-master faultline redis-1 redis-2",
		"* +slave slave 127.0.0.1:4056 127.0.0.1 4056 @ faultline 127.0.0.1 40569": "* +slave slave redis-2 redis-2 @ faultline redis-1",
		"# +odown master faultline 10.0.3.7 7003 #quorum 3/2":                      "# +odown master faultline sentinel-1 #quorum 3/2",
		"127.0.0.1 405690 and 127.0.0.1:1234 stay":                                 "127.0.0.1 405690 and 127.0.0.1:1234 stay",
	} {
		if got := name(in); got != want {
			t.Errorf("name(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSentinelEvents(t *testing.T) {
	log := "a\n* Sentinel new configuration saved on disk\nb\n\nc\nd\n"
	if got := strings.Join(sentinelEvents(log, 3), ","); got != "b,c,d" {
		t.Errorf("sentinelEvents = %q, want b,c,d", got)
	}
	if got := sentinelEvents("", 3); len(got) != 0 {
		t.Errorf("sentinelEvents of an empty log = %q", got)
	}
}
