package checker

import (
	"testing"

	"github.com/faultline-dev/faultline/bench/results"
)

// TestVerdictCountsEveryViolation: a checker stores at most 20
// counterexamples but counts them all (issue 10: 1,669 overlaps showed as
// 21 in the summary).
func TestVerdictCountsEveryViolation(t *testing.T) {
	const overlaps = 1669
	h := &lockHist{}
	// Every write read 0 but found the previous write's value: each one
	// landed inside another holder's critical section.
	for i := int64(0); i < overlaps+1; i++ {
		h.resWrite("k0", int(i%3), i+1, 0, i, "t", 0)
	}
	h.final("k0", overlaps+1)
	v := MutualExclusion(h.build(), Options{})
	if v.Valid != results.Invalid || v.Count != overlaps || len(v.Violations) != 20 || v.Found() != overlaps {
		t.Fatalf("valid %s, count %d, stored %d, found %d: want false, %d, 20, %d", v.Valid, v.Count, len(v.Violations), v.Found(), overlaps, overlaps)
	}
	r := &results.Results{Verdicts: []results.Verdict{v, {Checker: "x", Valid: results.Invalid}}}
	if n := r.Violations(""); n != overlaps+1 {
		t.Errorf("Results.Violations = %d, want %d (every violation, and 1 for an invalid verdict that lists none)", n, overlaps+1)
	}
}

// TestFoundReadsOlderFiles: a verdict without Count (older results.json)
// counts its stored counterexamples.
func TestFoundReadsOlderFiles(t *testing.T) {
	for _, tc := range []struct {
		v    results.Verdict
		want int
	}{
		{results.Verdict{}, 0},
		{results.Verdict{Violations: make([]results.Violation, 3)}, 3},
		{results.Verdict{Count: 50, Violations: make([]results.Violation, 20)}, 50},
	} {
		if got := tc.v.Found(); got != tc.want {
			t.Errorf("Found() of count %d with %d stored = %d, want %d", tc.v.Count, len(tc.v.Violations), got, tc.want)
		}
	}
}
