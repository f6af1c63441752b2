package chaos

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/infra"
)

// The fake topology cuts pairs on paper (the real cut is infra's,
// TestPairCutDocker); cutRecorder records them.
func (f *fakeTopo) CutPairs(_ context.Context, pairs ...[2]string) (*infra.Cut, error) {
	return &infra.Cut{}, nil
}
func (f *fakeTopo) CanCutPairs() (bool, string) { return true, "" }

type cutRecorder struct {
	*fakeTopo
	cuts [][][2]string
}

func (c *cutRecorder) CutPairs(_ context.Context, pairs ...[2]string) (*infra.Cut, error) {
	c.cuts = append(c.cuts, pairs)
	return &infra.Cut{}, nil
}

// noCut is a topology whose provider cannot cut pairs (local).
type noCut struct{ *fakeTopo }

func (noCut) CanCutPairs() (bool, string) { return false, infra.ErrPairCutUnsupported.Error() }

func TestPairCutGrammar(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"partition-pair:redis-3|redis-1@2s", "partition-pair:redis-3|redis-1@2s"},
		{"partition-pair:redis-3|primary,sentinel-1|redis-2@2s+3s", "partition-pair:redis-3|primary,sentinel-1|redis-2@2s+3s"},
		{"isolate:sentinel-1@2s", "isolate:sentinel-1@2s"},
		{"isolate@1s+1s", "isolate@1s+1s"},
		{"partition-pair@2s", "error: needs a target A|B"},
		{"partition-pair:redis-3@2s", "error: want A|B"},
		{"partition-pair:redis-3|redis-3@2s", "error: names one node twice"},
		{"partition-pair:a|b|c@2s", "error: want A|B"},
		{"partition-pair:redis-3|redis-1=x@2s", "error: takes no params"},
	} {
		s, err := Parse(tc.spec)
		if want, isErr := strings.CutPrefix(tc.want, "error: "); isErr {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want an error with %q", tc.spec, err, want)
			}
			continue
		}
		if err != nil || s.String() != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.spec, s.String(), err, tc.want)
		}
	}
	sched, _ := ParseSchedule([]string{"isolate:sentinel-1@1s", "kill:redis-1@1s", "partition-pair:redis-3|redis-1@1s", "isolate@2s"})
	if got := NeedsPairCut(sched); strings.Join(got, ",") != "isolate,partition-pair" {
		t.Errorf("NeedsPairCut = %v", got)
	}
	if got := NeedsTopology(sched); strings.Join(got, ",") != "isolate,partition-pair" {
		t.Errorf("NeedsTopology = %v", got)
	}
	nodes, _ := infra.TopologyNodes(infra.TopologyRedisSentinel)
	if err := CheckTargets(sched, nodes, time.Second); err != nil {
		t.Errorf("CheckTargets: %v", err)
	}
	for _, bad := range []string{"partition-pair:redis-9|redis-1@1s", "isolate:redis-9@1s", "partition-pair:redis|redis-1@1s"} {
		b, _ := ParseSchedule([]string{bad})
		if err := CheckTargets(b, nodes, time.Second); err == nil {
			t.Errorf("CheckTargets(%s) passed", bad)
		}
	}
}

// Targets resolve to node pairs when the fault starts: primary is the
// primary then; isolate pairs the node with every other node of the
// topology once; a provider that cannot cut refuses at build time.
func TestPairCutResolve(t *testing.T) {
	for _, tc := range []struct{ spec, want, nodes string }{
		{"partition-pair:redis-3|primary@0s", "[[redis-3 redis-2]]", "redis-2,redis-3"},
		{"partition-pair:redis-3|redis-1,sentinel-1|redis-2@0s", "[[redis-3 redis-1] [sentinel-1 redis-2]]", "redis-1,redis-2,redis-3,sentinel-1"},
		{"isolate:sentinel-1@0s", "[[sentinel-1 redis-1] [sentinel-1 redis-2] [sentinel-1 redis-3] [sentinel-1 sentinel-2]]", "redis-1,redis-2,redis-3,sentinel-1,sentinel-2"},
		{"isolate@0s", "[[redis-2 redis-1] [redis-2 redis-3] [redis-2 sentinel-1] [redis-2 sentinel-2]]", "redis-1,redis-2,redis-3,sentinel-1,sentinel-2"},
		{"isolate:redis-1,redis-2@0s", "[[redis-1 redis-2] [redis-1 redis-3] [redis-1 sentinel-1] [redis-1 sentinel-2] [redis-2 redis-3] [redis-2 sentinel-1] [redis-2 sentinel-2]]", "redis-1,redis-2,redis-3,sentinel-1,sentinel-2"},
	} {
		env := &cutRecorder{fakeTopo: &fakeTopo{fakeEnv: newFakeEnv("redis-1", "redis-2", "redis-3", "sentinel-1", "sentinel-2"), primary: "redis-2"}}
		s, err := Parse(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Build(s, "f0", env, nil, time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tc.spec, err)
		}
		if err := p.Fault.Start(context.Background()); err != nil {
			t.Fatalf("%s: Start: %v", tc.spec, err)
		}
		if len(env.cuts) != 1 || fmt.Sprint(env.cuts[0]) != tc.want {
			t.Errorf("%s: cut %v, want %s", tc.spec, env.cuts, tc.want)
		}
		if got := strings.Join(p.Fault.Targets(), ","); got != tc.nodes {
			t.Errorf("%s: Targets %s, want %s", tc.spec, got, tc.nodes)
		}
		if r := p.Fault.(Reporter).Report(); r.Attrs["pairs"] == "" {
			t.Errorf("%s: report %v names no pairs", tc.spec, r.Attrs)
		}
		if err := p.Fault.Heal(context.Background()); err != nil {
			t.Errorf("%s: Heal: %v", tc.spec, err)
		}
	}
	// The nemesis draws a buildable pair from one node too (FuzzNemesis).
	for _, nodes := range [][]string{{"redis-1"}, {"redis-1", "redis-2", "redis-3"}} {
		sched, err := Nemesis(NemesisOptions{Kinds: []string{"partition-pair", "isolate"}, Interval: time.Second, Duration: 5 * time.Second,
			Seed: 3, Salt: "x", Nodes: nodes, TTL: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		topo := &fakeTopo{fakeEnv: newFakeEnv(nodes...), primary: "redis-1"}
		if _, err := Plan(sched, topo, nil, time.Second); err != nil {
			t.Errorf("nemesis on %v drew %v: %v", nodes, sched.Strings(), err)
		}
	}
	s, _ := Parse("isolate:redis-1@0s")
	local := noCut{&fakeTopo{fakeEnv: newFakeEnv("redis-1", "redis-2"), primary: "redis-1"}}
	if _, err := Build(s, "f0", local, nil, time.Second); err == nil || !strings.Contains(err.Error(), "docker") {
		t.Errorf("isolate on a provider that cannot cut: %v", err)
	}
	if _, err := Build(s, "f0", newFakeEnv("redis-1", "redis-2"), nil, time.Second); err == nil || !strings.Contains(err.Error(), "needs a replicated topology") {
		t.Errorf("isolate without a topology: %v", err)
	}
}
