package chaos

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/infra"
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
		{"bandwidth:all=-3@1s", "whole number of KB/s"},
		{"one-way:all=sideways@1s", "unknown direction"},
		{"holder-pause@3s", "needs a pause length"},
		{"holder-pause:k1=0s@3s", "a pause of 0 is no pause"},
		{"clock-drift=-1@1s", "want a rate between"},
		{"kill:@1s", "empty target"},
		{"kill:redis-1,,redis-2@1s", "empty name in target list"},
		{"holder-pause=0xttl@1s", "bad ttl multiple"},
		{"kill:redis-1@-1s", "must not be negative"},
		{"holder-pause:k1=ttl@NaNxttl", "bad ttl multiple"},
		{"kill:redis-1@1s+infxttl", "bad ttl multiple"},
		{"kill:redis-1@1s+Infxttl", "bad ttl multiple"},
		{"kill:redis-1@1e300xttl", "bad ttl multiple"},
		{"kill:redis-1@1s+99999h", "at most 24h"},
		{"clock-drift=NaN@1s", "want a rate"},
		{"clock-drift=+Inf@1s", "want a rate"},
		{"clock-drift=1e300@1s", "want a rate"},
		{"clock-drift:k1@1s", "takes no target"},
		{"latency:all=NaNxttl@1s", "bad ttl multiple"},
		{"bandwidth:all=99999999999999@1s", "whole number"},
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

func TestCheckSchedule(t *testing.T) {
	cases := []struct {
		spec string
		want string // "" = fits
	}{
		{"kill:redis-1@1s+2s", ""},
		{"kill:redis-1@8s+2s", ""},
		{"partition:redis-1@9s", ""},
		{"holder-pause:2xttl@3s", ""},
		{"kill:redis-1@10s+1s", "when the 10s phase is over"},
		{"kill:redis-1@11s", "when the 10s phase is over"},
		{"kill:redis-1@9s+2s", "past the end of the 10s phase"},
		{"holder-pause:2xttl@9.5s", "past the end"},
		{"delayed-write:redis-1=1s@9.5s", "past the end"},
		{"kill:redis-1@1s+1000000xttl", "longer than 24h"},
		{"kill:redis-1@20xttl", "when the 10s phase is over"},
	}
	for _, c := range cases {
		t.Run(c.spec, func(t *testing.T) {
			s := mustSchedule(t, c.spec)
			err := CheckSchedule(s, 10*time.Second, time.Second)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), s[0].String()) {
				t.Fatalf("CheckSchedule(%s): %v, want an error naming the spec and saying %q", c.spec, err, c.want)
			}
		})
	}
	if err := CheckSchedule(mustSchedule(t, "holder-pause:2xttl@1s"), 10*time.Second, 0); err == nil || !strings.Contains(err.Error(), "no lock ttl") {
		t.Errorf("xttl without a ttl: %v", err)
	}
}

// Every kind's entry is whole: documented, buildable on a fake environment
// from what it draws, and its path need matches KindsNeedProxy.
func TestKindRegistry(t *testing.T) {
	env := newFakeEnv("redis-1", "redis-2", "redis-3", "pg-1", "resource")
	names := []string{"redis-1", "redis-2", "redis-3", "pg-1", "resource"}
	if len(Kinds()) < 13 {
		t.Fatalf("%d kinds registered", len(Kinds()))
	}
	for _, k := range Kinds() {
		if k.Doc == "" || k.Class == "" {
			t.Errorf("%s: no doc or class", k.Name)
		}
		if (k.parse == nil) != (k.Params == "") {
			t.Errorf("%s: Params %q documented but parse is %v", k.Name, k.Params, k.parse != nil)
		}
		for seed := range int64(20) {
			s, err := Nemesis(NemesisOptions{Kinds: []string{k.Name}, Interval: time.Second, Duration: 4 * time.Second, Seed: seed,
				Salt: "x", Nodes: []string{"redis-1", "redis-2", "redis-3", "pg-1"}, Resource: []string{"resource"}})
			if err != nil || len(s) != 3 {
				t.Fatalf("%s: %d specs, %v", k.Name, len(s), err)
			}
			if got, want := NeedsProxy(s, names), KindsNeedProxy([]string{k.Name}); got != want {
				t.Errorf("%s: drawn %v needs the proxy %v, KindsNeedProxy says %v", k.Name, s.Strings(), got, want)
			}
			var on Env = env
			if k.Topology {
				on = &fakeTopo{fakeEnv: env, primary: "redis-1"}
			}
			if _, err := Plan(s, on, &fakeClients{}, time.Second); err != nil {
				t.Errorf("%s: drawn %v does not build: %v", k.Name, s.Strings(), err)
			}
		}
	}
}

// The delayed-write path bug: aimed at a node it is a network fault (the
// clients must go through Toxiproxy), aimed at a key it acts in the workers.
func TestNeedsProxy(t *testing.T) {
	nodes := []string{"redis-1", "resource"}
	cases := []struct {
		spec string
		want bool
	}{
		{"delayed-write:redis-1=1s@1s", true},
		{"delayed-write:resource=1s@1s", true},
		{"delayed-write:all@1s", true},
		{"delayed-write:k0=2xttl@1s", false},
		{"delayed-write@1s", false},
		{"holder-pause:2xttl@1s", false},
		{"clock-drift@1s+1s", false},
		{"kill:redis-1@1s+1s", true},
		{"latency@1s+1s", true},
	}
	for _, c := range cases {
		if got := NeedsProxy(mustSchedule(t, c.spec), nodes); got != c.want {
			t.Errorf("NeedsProxy(%s) = %v, want %v", c.spec, got, c.want)
		}
	}
	if !KindsNeedProxy([]string{"holder-pause", "pause"}) || KindsNeedProxy([]string{"holder-pause", "delayed-write", "clock-drift", "holder-crash"}) {
		t.Error("KindsNeedProxy: node kinds need the proxy, client kinds do not")
	}
}

func TestNemesisDeterministic(t *testing.T) {
	env := newFakeEnv("redis-1", "redis-2", "redis-3", "redis-4", "redis-5", "resource")
	kinds := []string{"partition", "kill", "pause", "latency", "holder-pause"}
	opt := NemesisOptions{Kinds: kinds, Interval: 2 * time.Second, Duration: 30 * time.Second, Seed: 7, Salt: "redlock",
		Nodes: []string{"redis-1", "redis-2", "redis-3", "redis-4", "redis-5"}, Resource: []string{"resource"}}
	a, err := Nemesis(opt)
	if err != nil {
		t.Fatal(err)
	}
	shuffled := opt
	shuffled.Nodes = []string{"redis-5", "redis-4", "redis-3", "redis-2", "redis-1"}
	b, err := Nemesis(shuffled)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Strings(), b.Strings()) {
		t.Fatalf("same seed, different schedules:\n%v\n%v", a.Strings(), b.Strings())
	}
	if len(a) != 14 || NemesisFaults(opt.Interval, opt.Duration) != 14 {
		t.Errorf("%d faults, want one per 2s interval that ends by 30s (14)", len(a))
	}
	for _, other := range []func(*NemesisOptions){
		func(o *NemesisOptions) { o.Seed = 8 },
		func(o *NemesisOptions) { o.Salt = "redsync" },
	} {
		o := opt
		other(&o)
		if c, _ := Nemesis(o); reflect.DeepEqual(a.Strings(), c.Strings()) {
			t.Errorf("%+v gave the same schedule as %+v", o, opt)
		}
	}
	// Every spec is valid, resolvable, only on the resource link for
	// latency, one at a time.
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
			if n == "resource" && s.Kind != "latency" {
				t.Errorf("nemesis hit the resource with more than latency: %s", s)
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

	if _, err := Nemesis(NemesisOptions{Kinds: []string{"kill", "meteor"}, Interval: time.Second, Duration: 10 * time.Second, Nodes: []string{"redis-1"}}); err == nil || !strings.Contains(err.Error(), "meteor") {
		t.Errorf("unknown kind: %v", err)
	}
	if _, err := Nemesis(NemesisOptions{Interval: time.Second, Duration: 10 * time.Second}); err == nil {
		t.Error("no kinds accepted")
	}
	if _, err := Nemesis(NemesisOptions{Kinds: []string{"kill"}, Interval: time.Second, Duration: 10 * time.Second}); err == nil {
		t.Error("node kinds without nodes accepted")
	}
}

// The nemesis covers an implementation's nodes: with at least as many node
// faults as nodes, every node is hit (the rotation), whatever the seed.
func TestNemesisCoversEveryNode(t *testing.T) {
	for _, nodes := range [][]string{{"pg-1", "pg-2"}, {"pg-1", "pg-2", "redis-1"}, {"redis-1", "redis-2", "redis-3", "redis-4", "redis-5"}} {
		for seed := range int64(50) {
			s, err := Nemesis(NemesisOptions{Kinds: []string{"partition", "kill", "pause"}, Interval: time.Second,
				Duration: time.Duration(len(nodes))*time.Second + 500*time.Millisecond, Seed: seed, Salt: "2pc", Nodes: nodes})
			if err != nil {
				t.Fatal(err)
			}
			hit := map[string]bool{}
			for _, spec := range s {
				for _, n := range strings.Split(spec.Target, ",") {
					hit[n] = true
				}
			}
			for _, n := range nodes {
				if !hit[n] {
					t.Errorf("nodes %v seed %d: %s never hit by %v", nodes, seed, n, s.Strings())
				}
			}
		}
	}
}

// Targets are checked before any server starts, on the node specs alone.
func TestCheckTargets(t *testing.T) {
	nodes := infra.Nodes(3, 1)
	nodes = append(nodes, infra.NodeSpec{Name: "resource", Kind: infra.Redis})
	ok := mustSchedule(t, "kill:redis-2@1s+1s", "partition:majority@1s+1s", "latency:pg=50ms@1s+1s", "delayed-write:resource@1s",
		"holder-pause:k0=2xttl@1s", "clock-drift@1s+1s")
	if err := CheckTargets(ok, nodes, time.Second); err != nil {
		t.Fatal(err)
	}
	bad := mustSchedule(t, "kill:redis-9@1s+1s", "pause:pg-1@1s+1s")
	err := CheckTargets(bad, nodes, time.Second)
	if err == nil || !strings.Contains(err.Error(), `"kill:redis-9@1s+1s"`) || strings.Contains(err.Error(), "pause:pg-1") {
		t.Fatalf("CheckTargets: %v, want only the redis-9 spec named", err)
	}
	if err := CheckTargets(mustSchedule(t, "partition:minority@1s+1s"), infra.Nodes(1, 0), time.Second); err == nil {
		t.Error("a minority of one node accepted")
	}
}
