package reports

import (
	"bytes"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/bench/results"
)

// The report shows a topology run's roles over time and its failovers;
// a run on independent nodes shows no such section.
func TestRenderFailovers(t *testing.T) {
	res, _ := buildFixture(lockFixture())
	run := &Run{Results: res}
	var plain bytes.Buffer
	if err := Render(&plain, run); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plain.String(), `id="failovers"`) {
		t.Fatal("a run on independent nodes shows a failover section")
	}
	ir := &res.Impls[0]
	ir.Topology = "redis-sentinel"
	ir.Roles = []results.RoleSample{
		{Time: 0, Why: "phase start", Roles: map[string]string{"redis-1": "primary", "redis-2": "replica"}},
		{Time: 4.6e9, Why: "after failover (f0) started", Roles: map[string]string{"redis-1": "down", "redis-2": "primary"}},
	}
	ir.Failovers = []results.Failover{{Fault: "failover", Old: "redis-1", New: "redis-2", Lost: 2.3e9, Promoted: 4.6e9, FirstWrite: 4.7e9, PromotionMs: 2300, FailoverMs: 2400}}
	var page bytes.Buffer
	if err := Render(&page, run); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="failovers"`, "redis-1 primary, redis-2 replica", "redis-1 down, redis-2 primary", "redis-1 → redis-2", "2300 ms", "2400 ms", "after failover (f0) started"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
