package chaos

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want Spec
	}{
		{"kill:redis-2@5s+3s", Spec{Kind: "kill", Target: "redis-2", Start: Dur{D: 5 * time.Second}, Duration: Dur{D: 3 * time.Second}}},
		{"latency:all=200ms±50ms@10s+5s", Spec{Kind: "latency", Target: "all", Param: "200ms±50ms", Start: Dur{D: 10 * time.Second}, Duration: Dur{D: 5 * time.Second}}},
		{"latency:all=200ms+-50ms@10s+5s", Spec{Kind: "latency", Target: "all", Param: "200ms+-50ms", Start: Dur{D: 10 * time.Second}, Duration: Dur{D: 5 * time.Second}}},
		{"holder-pause:2xttl@3s", Spec{Kind: "holder-pause", Param: "2xttl", Start: Dur{D: 3 * time.Second}}},
		{"holder-pause:k3=ttl@1.5s", Spec{Kind: "holder-pause", Target: "k3", Param: "ttl", Start: Dur{D: 1500 * time.Millisecond}}},
		{"holder-pause@3s+1s", Spec{Kind: "holder-pause", Start: Dur{D: 3 * time.Second}, Duration: Dur{D: time.Second}}},
		{"partition:majority@4s+6s", Spec{Kind: "partition", Target: "majority", Start: Dur{D: 4 * time.Second}, Duration: Dur{D: 6 * time.Second}}},
		{"partition@0s", Spec{Kind: "partition", Start: Dur{}}},
		{"one-way:redis-1,redis-3=up@1s+2s", Spec{Kind: "one-way", Target: "redis-1,redis-3", Param: "up", Start: Dur{D: time.Second}, Duration: Dur{D: 2 * time.Second}}},
		{"clock-drift:1.5@0s+2xttl", Spec{Kind: "clock-drift", Param: "1.5", Duration: Dur{TTLs: 2}}},
		{"delayed-write:resource@2s", Spec{Kind: "delayed-write", Target: "resource", Start: Dur{D: 2 * time.Second}}},
		{"holder-crash:k1@0.5xttl", Spec{Kind: "holder-crash", Target: "k1", Start: Dur{TTLs: 0.5}}},
		{"KILL:redis-1@1s+1s", Spec{Kind: "kill", Target: "redis-1", Start: Dur{D: time.Second}, Duration: Dur{D: time.Second}}},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := Parse(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Parse(%q) = %+v, want %+v", c.in, got, c.want)
			}
			again, err := Parse(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip %q → %q → %+v (%v)", c.in, got.String(), again, err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{"kill:redis-2", "missing @start"},
		{"explode:redis-2@1s", "unknown fault kind \"explode\" (valid kinds: "},
		{"kill:redis-2@soon", "start: bad duration \"soon\""},
		{"kill:redis-2@1s+forever", "duration: bad duration \"forever\""},
		{"kill:redis-2@1s+0s", "+0 makes no window"},
		{"kill:redis-2=hard@1s", "kill takes no params"},
		{"latency:all=fast@1s", "params \"fast\" of latency"},
		{"latency:all=200ms±x@1s", "bad duration \"x\""},
		{"bandwidth:all=-3@1s", "positive whole number"},
		{"one-way:all=sideways@1s", "unknown direction"},
		{"holder-pause@3s", "needs a pause length"},
		{"holder-pause:k1=0s@3s", "a pause of 0 is no pause"},
		{"clock-drift=-1@1s", "positive rate"},
		{"kill:@1s", "empty target"},
		{"kill:redis-1,,redis-2@1s", "empty name in target list"},
		{"holder-pause=0xttl@1s", "bad ttl multiple"},
		{"kill:redis-1@-1s", "must not be negative"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			_, err := Parse(c.in)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", c.in)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.in) {
				t.Fatalf("Parse(%q) error %q, want it to quote the spec and say %q", c.in, err, c.want)
			}
		})
	}
	_, err := ParseSchedule([]string{"kill:redis-1@1s", "nope@1s", "pause@x"})
	if err == nil || !strings.Contains(err.Error(), "nope@1s") || !strings.Contains(err.Error(), "pause@x") {
		t.Fatalf("ParseSchedule should name every bad spec: %v", err)
	}
}

func TestResolveNodes(t *testing.T) {
	env := newFakeEnv("redis-1", "redis-2", "redis-3", "redis-4", "redis-5", "redis-10", "pg-1", "resource")
	cases := []struct {
		target string
		want   string
		err    string
	}{
		{"", "pg-1,redis-1,redis-2,redis-3,redis-4,redis-5,redis-10", ""},
		{"all", "pg-1,redis-1,redis-2,redis-3,redis-4,redis-5,redis-10", ""},
		{"resource", "resource", ""},
		{"minority", "redis-1,redis-2", ""},
		{"majority", "redis-1,redis-2,redis-3,redis-4", ""},
		{"redis", "redis-1,redis-2,redis-3,redis-4,redis-5,redis-10", ""},
		{"pg", "pg-1", ""},
		{"redis-3,redis-1,redis-3", "redis-1,redis-3", ""},
		{"redis-9", "", "unknown target \"redis-9\" (valid: node names pg-1, redis-1"},
	}
	for _, c := range cases {
		t.Run(c.target, func(t *testing.T) {
			nodes, err := ResolveNodes(env, c.target)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(names(nodes), ","); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
	// Designated resource; a set of 5 Redis nodes splits 2 / 3.
	five := WithResource(newFakeEnv("redis-1", "redis-2", "redis-3", "redis-4", "redis-5", "pg-1"), "pg-1")
	for target, want := range map[string]string{
		"minority": "redis-1,redis-2", "majority": "redis-1,redis-2,redis-3",
		"resource": "pg-1", "all": "redis-1,redis-2,redis-3,redis-4,redis-5",
	} {
		nodes, err := ResolveNodes(five, target)
		if err != nil || strings.Join(names(nodes), ",") != want {
			t.Errorf("%s: got %v (%v), want %s", target, names(nodes), err, want)
		}
	}
	if _, err := ResolveNodes(newFakeEnv("redis-1"), "minority"); err == nil {
		t.Error("a single node has no minority")
	}
	if _, err := ResolveNodes(newFakeEnv("redis-1"), "resource"); err == nil || !strings.Contains(err.Error(), "no resource node") {
		t.Errorf("resource without a resource node: %v", err)
	}
}

func TestPlan(t *testing.T) {
	env := newFakeEnv("redis-1", "redis-2", "redis-3", "resource")
	cl := &fakeClients{}
	sched, err := ParseSchedule([]string{
		"kill:redis-2@5s+3s", "latency:all=200ms±50ms@10s+5s", "holder-pause:2xttl@3s",
		"holder-crash@1s", "delayed-write@1s", "delayed-write:resource=300ms@1s", "clock-drift@0s",
	})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Plan(sched, env, cl, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range plan {
		got[p.Spec.String()] = p.Fault.Kind() + " " + strings.Join(p.Fault.Targets(), ",") + " " + p.Start.String() + "+" + p.Length.String()
	}
	want := map[string]string{
		"kill:redis-2@5s+3s":              "kill redis-2 5s+3s",
		"latency:all=200ms±50ms@10s+5s":   "latency redis-1,redis-2,redis-3 10s+5s",
		"holder-pause=2xttl@3s":           "holder-pause  3s+1s",
		"holder-crash@1s":                 "holder-crash  1s+0s",
		"delayed-write@1s":                "delayed-write  1s+1s",
		"delayed-write:resource=300ms@1s": "latency resource 1s+300ms",
		"clock-drift@0s":                  "clock-drift  0s+0s",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan:\n got %v\nwant %v", got, want)
	}
	lat := plan[1].Fault.(*ToxicFault).Toxics()[0]
	if lat.Attributes["latency"] != int64(200) || lat.Attributes["jitter"] != int64(50) || lat.Toxicity != 1 || lat.Stream != "downstream" {
		t.Errorf("latency toxic %+v", lat)
	}
	if dw := plan[5].Fault.(*ToxicFault).Toxics()[0]; dw.Stream != "upstream" {
		t.Errorf("delayed-write on the resource link must delay client→server: %+v", dw)
	}
	if !plan[3].Instant {
		t.Error("holder-crash without +duration is instantaneous")
	}

	_, err = Plan(Schedule{{Kind: "holder-pause", Param: "2xttl"}}, env, cl, 0)
	if err == nil || !strings.Contains(err.Error(), "no lock ttl") {
		t.Errorf("xttl without ttl: %v", err)
	}
	_, err = Plan(Schedule{{Kind: "holder-pause", Param: "1s"}}, env, nil, time.Second)
	if err == nil || !strings.Contains(err.Error(), "chaos.Clients") {
		t.Errorf("client fault without clients: %v", err)
	}
	_, err = Plan(Schedule{{Kind: "kill", Target: "redis-7"}}, env, nil, time.Second)
	if err == nil || !strings.Contains(err.Error(), "redis-7") {
		t.Errorf("unknown node: %v", err)
	}
}

func TestNemesisDeterministic(t *testing.T) {
	env := newFakeEnv("redis-1", "redis-2", "redis-3", "redis-4", "redis-5", "resource")
	kinds := []string{"partition", "kill", "pause", "latency", "holder-pause"}
	a, err := Nemesis(kinds, 2*time.Second, 30*time.Second, 7, env)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Nemesis(kinds, 2*time.Second, 30*time.Second, 7, newFakeEnv("resource", "redis-5", "redis-4", "redis-3", "redis-2", "redis-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Strings(), b.Strings()) {
		t.Fatalf("same seed, different schedules:\n%v\n%v", a.Strings(), b.Strings())
	}
	if len(a) != 14 {
		t.Errorf("%d faults, want one per 2s interval that ends by 30s (14)", len(a))
	}
	c, _ := Nemesis(kinds, 2*time.Second, 30*time.Second, 8, env)
	if reflect.DeepEqual(a.Strings(), c.Strings()) {
		t.Error("seeds 7 and 8 gave the same schedule")
	}
	// Every spec is valid, resolvable, never on the resource, one at a time.
	seen := map[string]bool{}
	var prevEnd time.Duration
	for _, s := range a {
		seen[s.Kind] = true
		if _, err := Parse(s.String()); err != nil {
			t.Errorf("nemesis spec does not parse: %v", err)
		}
		p, err := Build(s, "x", env, &fakeClients{}, time.Second)
		if err != nil {
			t.Errorf("nemesis spec does not build: %v", err)
			continue
		}
		for _, n := range p.Fault.Targets() {
			if n == "resource" {
				t.Errorf("nemesis hit the resource: %s", s)
			}
		}
		if p.Start < prevEnd {
			t.Errorf("%s overlaps the previous fault", s)
		}
		prevEnd = p.Start + p.Length
		if prevEnd > 30*time.Second {
			t.Errorf("%s runs past the run", s)
		}
	}
	if len(seen) < 3 {
		t.Errorf("only kinds %v in 14 draws", seen)
	}
	t.Log(strings.Join(a.Strings(), " "))

	if _, err := Nemesis([]string{"kill", "meteor"}, time.Second, 10*time.Second, 1, env); err == nil || !strings.Contains(err.Error(), "meteor") {
		t.Errorf("unknown kind: %v", err)
	}
	if _, err := Nemesis(nil, time.Second, 10*time.Second, 1, env); err == nil {
		t.Error("no kinds accepted")
	}
}
