package workload

import (
	"slices"
	"testing"

	"github.com/faultline-dev/faultline/bench/results"
)

// Every registered workload describes itself for results.json: a kind, its
// operation kinds headline first, transaction phases that are among its
// kinds (the bank's include local, forward and compensate), and every
// charted measure in milliseconds.
func TestDescribeWorkload(t *testing.T) {
	for _, w := range All() {
		t.Run(w.Name(), func(t *testing.T) {
			info := DescribeWorkload(w)
			if info.Kind != results.KindLock && info.Kind != results.KindTxn {
				t.Errorf("kind %q", info.Kind)
			}
			if !slices.Equal(info.Ops, w.Kinds()) || info.Headline != w.Kinds()[0] {
				t.Errorf("ops %v headline %q, want %v", info.Ops, info.Headline, w.Kinds())
			}
			for _, p := range info.Phases {
				if !slices.Contains(info.Ops, p) {
					t.Errorf("phase %q is not an operation kind", p)
				}
			}
			seen := map[[2]string]bool{}
			for _, m := range info.Measures {
				if m.Chart != "" && m.Unit != results.UnitMS {
					t.Errorf("measure %s/%s is charted but in %q", m.Checker, m.Name, m.Unit)
				}
				if k := [2]string{m.Checker, m.Name}; seen[k] {
					t.Errorf("measure %s/%s declared twice", m.Checker, m.Name)
				} else {
					seen[k] = true
				}
			}
		})
	}
	bank, err := Lookup(BankName)
	if err != nil {
		t.Fatal(err)
	}
	info := DescribeWorkload(bank)
	for _, p := range []string{"local", "prepare", "try", "forward", "compensate"} {
		if !slices.Contains(info.Phases, p) {
			t.Errorf("bank phases %v lack %q", info.Phases, p)
		}
	}
	if info.Kind != results.KindTxn || info.Measure("no-prepared-left", "in_doubt_ms_max") == nil {
		t.Errorf("bank description %+v", info)
	}
	counter, err := Lookup("counter")
	if err != nil {
		t.Fatal(err)
	}
	if info := DescribeWorkload(counter); info.Kind != results.KindLock || info.Measure("liveness", "recovery_ms_p50").Chart != results.ChartRecovery {
		t.Errorf("counter description %+v", info)
	}
}
