// Package layers holds the test that keeps faultline's imports running one
// way (docs/ARCHITECTURE.md): cmd → reports, bench → chaos, impl → infra,
// with the history/results vocabulary a leaf every layer may read and the
// checkers importing nothing but that vocabulary.
package layers

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/faultline-dev/faultline/"

// allowed maps a package (relative to the module; a trailing "/" covers the
// folder below it) to the packages of ours it may import directly. A
// package not listed may import nothing of ours.
var allowed = map[string][]string{
	"infra":          {},
	"impl/":          {"impl/internal/"},
	"chaos":          {"infra"},
	"bench/history":  {},
	"bench/results":  {},
	"bench/checker":  {"bench/history", "bench/results"},
	"bench/recorder": {"bench/history", "bench/results"},
	"bench/workload": {"bench/history", "bench/results", "bench/recorder", "bench/checker", "chaos", "impl/", "infra"},
	"bench":          {"bench/", "chaos", "impl/", "infra"},
	"reports/gate":   {"bench/history", "bench/results"},
	"reports":        {"bench/history", "bench/results", "reports/"},
	"cmd/":           {"bench", "bench/", "reports", "reports/", "chaos", "impl/", "infra"},
	"internal/":      {},
	"examples/":      {"impl/"},
}

// everywhere are the packages every package may import: internal/* are
// small leaves (clock, shell, registry) that import nothing of ours.
var everywhere = []string{"internal/"}

// rule returns the allowed list of the most specific entry matching pkg.
func rule(pkg string) ([]string, string, bool) {
	best, found := "", false
	for k := range allowed {
		if match(k, pkg) && len(k) >= len(best) {
			best, found = k, true
		}
	}
	return allowed[best], best, found
}

func match(pattern, pkg string) bool {
	if strings.HasSuffix(pattern, "/") {
		return strings.HasPrefix(pkg, pattern)
	}
	return pkg == pattern
}

// backEdges returns every import in graph (package → its direct imports,
// both relative to the module) that its rule does not allow.
func backEdges(graph map[string][]string) []string {
	var bad []string
	for pkg, imports := range graph {
		allow, ruleName, ok := rule(pkg)
		if !ok {
			bad = append(bad, fmt.Sprintf("%s has no layer rule: add it to allowed in internal/layers", pkg))
			continue
		}
		for _, imp := range imports {
			permitted := false
			for _, a := range append(allow[:len(allow):len(allow)], everywhere...) {
				if match(a, imp) {
					permitted = true
					break
				}
			}
			if !permitted {
				bad = append(bad, fmt.Sprintf("%s imports %s (rule %q allows %v)", pkg, imp, ruleName, allow))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// moduleGraph lists every non-test package of the module with its direct
// imports of the module's own packages.
func moduleGraph(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	graph := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		rel := strings.TrimPrefix(p.ImportPath, module)
		graph[rel] = nil
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module) {
				graph[rel] = append(graph[rel], strings.TrimPrefix(imp, module))
			}
		}
	}
	if len(graph) < 5 {
		t.Fatalf("go list found only %d packages", len(graph))
	}
	return graph
}

// pending are back edges being removed right now; each must go.
var pending = map[string]bool{}

func TestImportsRunOneWay(t *testing.T) {
	for _, e := range backEdges(moduleGraph(t)) {
		if pending[e[:strings.Index(e, " (")]] {
			t.Log("pending: " + e)
			continue
		}
		t.Error(e)
	}
}

// TestBackEdgeIsCaught proves the rule can fail: the real graph plus one
// deliberately added back edge per layer boundary.
func TestBackEdgeIsCaught(t *testing.T) {
	for _, edge := range [][2]string{
		{"chaos", "bench/history"},
		{"bench/checker", "impl/txn"},
		{"bench/checker", "infra"},
		{"infra", "chaos"},
		{"impl/lock", "bench/results"},
		{"reports", "bench"},
		{"bench/results", "bench/history"},
		{"internal/clock", "infra"},
	} {
		graph := moduleGraph(t)
		graph[edge[0]] = append(graph[edge[0]], edge[1])
		found := false
		for _, e := range backEdges(graph) {
			found = found || strings.HasPrefix(e, edge[0]+" imports "+edge[1]+" ")
		}
		if !found {
			t.Errorf("back edge %s → %s is not caught", edge[0], edge[1])
		}
	}
}
