package chaos

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzParse: whatever Parse accepts renders back to itself
// (Parse(s.String()) == s), is a spec CheckSchedule can judge without
// panicking, and builds on a fake environment without panicking.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"kill:redis-2@5s+3s", "latency:all=200ms±50ms@10s+5s", "latency:all=200ms+-50ms@10s+5s",
		"holder-pause:2xttl@3s", "holder-pause:k3=ttl@1.5s", "holder-pause@3s+1s", "partition:majority@4s+6s",
		"partition@0s", "one-way:redis-1,redis-3=up@1s+2s", "clock-drift:1.5@0s+2xttl", "delayed-write:resource@2s",
		"delayed-write:redis-1=1s@1s", "holder-crash:k1@0.5xttl", "KILL:redis-1@1s+1s", "bandwidth:pg=32KB/s@1s+1s",
		"reset-peer:redis-1=10ms@1s+1s", "slow-close@1s+1s", "partition-refuse:pg-1@1s+2s",
		"holder-pause:k1=ttl@NaNxttl", "kill:redis-1@1s+infxttl", "kill:redis-1@1e300xttl", "clock-drift=NaN@1s",
		"kill:a@b@1s", "latency:=@1s", "kill::@1s", " kill : x @ 1s ",
	} {
		f.Add(s)
	}
	env := newFakeEnv("redis-1", "redis-2", "redis-3", "pg-1", "resource")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := Parse(text)
		if err != nil {
			if !strings.Contains(err.Error(), "fault ") {
				t.Fatalf("error does not name the spec: %v", err)
			}
			return
		}
		again, err := Parse(s.String())
		if err != nil {
			t.Fatalf("Parse(%q) = %+v, whose String %q does not parse: %v", text, s, s.String(), err)
		}
		if !reflect.DeepEqual(again, s) {
			t.Fatalf("round trip: Parse(%q) = %+v, Parse(%q) = %+v", text, s, s.String(), again)
		}
		_ = CheckSchedule(Schedule{s}, 10*time.Second, time.Second)
		if p, err := Build(s, "f0", env, &fakeClients{}, time.Second); err == nil {
			if p.Start < 0 || p.Length < 0 {
				t.Fatalf("%s: negative start or length %v %v", s, p.Start, p.Length)
			}
		}
	})
}

// FuzzNemesis: for any options, Nemesis is deterministic, and every spec
// it draws parses back to itself, fits the phase, hits only the nodes it
// was given and builds.
func FuzzNemesis(f *testing.F) {
	f.Add(int64(1), uint16(0b111), int64(1000), int64(10_000), uint8(2), uint8(1), "2pc")
	f.Add(int64(7), uint16(0xffff), int64(2000), int64(30_000), uint8(5), uint8(1), "redlock")
	f.Add(int64(-3), uint16(0b1000000000), int64(10), int64(100), uint8(1), uint8(0), "")
	f.Add(int64(42), uint16(0b1111000000000), int64(500), int64(5_000), uint8(0), uint8(0), "pg-lease")
	all := Kinds()
	f.Fuzz(func(t *testing.T, seed int64, mask uint16, intervalMS, durationMS int64, redis, pg uint8, salt string) {
		var kinds []string
		for i, k := range all {
			if mask&(1<<i) != 0 {
				kinds = append(kinds, k.Name)
			}
		}
		var nodes []string
		for i := range int(redis % 8) {
			nodes = append(nodes, "redis-"+string(rune('1'+i)))
		}
		for i := range int(pg % 4) {
			nodes = append(nodes, "pg-"+string(rune('1'+i)))
		}
		interval := time.Duration(intervalMS%100_000) * time.Millisecond
		duration := time.Duration(durationMS%1_000_000) * time.Millisecond
		o := NemesisOptions{Kinds: kinds, Interval: interval, Duration: duration, Seed: seed, Salt: salt, Nodes: nodes, Resource: []string{"resource"}, TTL: time.Second}
		a, err := Nemesis(o)
		if err != nil {
			return
		}
		b, _ := Nemesis(o)
		if !reflect.DeepEqual(a, b) {
			t.Fatal("not deterministic")
		}
		if len(a) > NemesisFaults(interval, duration) {
			t.Fatalf("%d faults, NemesisFaults says %d", len(a), NemesisFaults(interval, duration))
		}
		if err := CheckSchedule(a, duration, time.Second); err != nil && len(a) < 50 {
			t.Fatalf("drawn schedule does not fit its phase: %v", err)
		}
		env := newFakeEnv(append(append([]string(nil), nodes...), "resource")...)
		for i, s := range a {
			if i == 50 {
				break
			}
			again, err := Parse(s.String())
			if err != nil || !reflect.DeepEqual(again, s) {
				t.Fatalf("%s does not round-trip: %+v %v", s, again, err)
			}
			var on Env = env
			if k, _ := LookupKind(s.Kind); k.Topology {
				on = &fakeTopo{fakeEnv: env, primary: "redis-1"}
			}
			p, err := Build(s, "f", on, &fakeClients{}, time.Second)
			if err != nil {
				t.Fatalf("%s does not build: %v", s, err)
			}
			if nf, ok := p.Fault.(NodeFault); ok {
				for _, n := range nf.Nodes() {
					if n.Name() == "resource" && s.Kind != "latency" {
						t.Fatalf("%s hits the resource", s)
					}
				}
			}
		}
	})
}
