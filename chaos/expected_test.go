package chaos

import (
	"slices"
	"strings"
	"testing"
)

// A row's fault kinds are what the CI gate matches against a run's faults:
// its specs' kinds, or a script's faults= declaration, validated.
func TestRowFaultKinds(t *testing.T) {
	const head = "| impl | fault | workload | expect | run | why |\n|---|---|---|---|---|---|\n"
	m, err := ParseExpected(strings.NewReader(head+
		"| a | none | counter | safe | - | x |\n"+
		"| a | two | counter | liveness availability | `kill:redis-1@0.4s+0.8s; latency:all=5ms@1s; ttl=1s` | x |\n"+
		"| a | cut | counter | violation mutual-exclusion | `script; faults=partition-pair,failover; provider=docker` | x |\n"+
		"| a | bare | counter | violation mutual-exclusion | script | x |\n"), "m.md")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"none": nil, "two": {"kill", "latency"}, "cut": {"failover", "partition-pair"}, "bare": nil}
	for _, r := range m.Rows {
		if got := r.FaultKinds(); !slices.Equal(got, want[r.Fault]) {
			t.Errorf("%s: FaultKinds = %q, want %q", r.Name(), got, want[r.Fault])
		}
	}
	for _, bad := range []struct{ run, err string }{
		{"`script; faults=failover,no-such-kind`", `unknown fault kind "no-such-kind"`},
		{"`kill:redis-1@1s; faults=kill`", "only a scripted row declares its fault kinds"},
	} {
		_, err := ParseExpected(strings.NewReader(head+"| a | f | counter | violation mutual-exclusion | "+bad.run+" | x |\n"), "m.md")
		if err == nil || !strings.Contains(err.Error(), bad.err) {
			t.Errorf("run %s: err = %v, want it to say %q", bad.run, err, bad.err)
		}
	}
	matrix, err := LoadExpected("expected.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := matrix.Lookup("redis-sentinel-wait", "failover-unacked")
	if len(rows) != 1 || !slices.Equal(rows[0].FaultKinds(), []string{"failover", "partition-pair"}) {
		t.Errorf("expected.md redis-sentinel-wait/failover-unacked: %+v, want faults failover and partition-pair", rows)
	}
}
