package bench

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/faultline-dev/faultline/bench/results"
)

// TestSummaryCountsViolationsNotExamples: the violations column shows how
// many violations the checkers found, not the 20 counterexamples stored.
func TestSummaryCountsViolationsNotExamples(t *testing.T) {
	r := &results.Results{
		Workload: "counter",
		Impls:    []results.ImplResult{{Name: "redis-release-unchecked", Mutant: true, Ops: map[string]results.OpStats{}}},
		Verdicts: []results.Verdict{{
			Checker: "mutual-exclusion", Impl: "redis-release-unchecked", Valid: results.Invalid,
			Count: 1669, Violations: make([]results.Violation, 20),
		}},
	}
	var b bytes.Buffer
	WriteSummary(&b, r, "")
	out := b.String()
	if !regexp.MustCompile(`redis-release-unchecked \(mutant\).*\s1669\s`).MatchString(out) {
		t.Errorf("summary row does not show 1669 violations:\n%s", out)
	}
	if !regexp.MustCompile(`… 1666 more \(17 of them in results.json\)`).MatchString(out) {
		t.Errorf("summary does not say how many more were found and stored:\n%s", out)
	}
}
