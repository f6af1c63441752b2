package gate

import (
	"slices"

	"github.com/faultline-dev/faultline/bench/results"
)

// Expectation is one row of the expected-verdict matrix (chaos/expected.md)
// as the gate reads it; the CLI converts chaos.Row values, so that this
// package depends on saved results only.
type Expectation struct {
	Impl, Workload string
	// NoFault: the row runs the workload without any fault.
	NoFault bool
	// Faults are the fault kinds the row injects (chaos.Row.FaultKinds):
	// in a faulted run the row applies only if every one of them ran in
	// the implementation's phase. A row that is neither NoFault nor has
	// Faults (a script that declares none) applies to no faulted run.
	Faults []string
	// Failing are the checkers the row expects to fail (a violation or
	// liveness row); empty for a safe row.
	Failing []string
	// Topology is the replicated topology the row runs on ("" = the
	// implementation's own nodes): a row on pg-standby allows nothing in a
	// run on independent nodes (an asynchronous standby loses leases a
	// single server keeps).
	Topology string
}

// MatrixAllowed returns the allowed function of Gate for the matrix rows
// and the run cur:
//   - a run in which faults hit impl's phase (fault windows of impl, or of
//     no implementation) may fail checker c on impl when some row of impl
//     expects c to fail under faults that ran: every fault kind of the row
//     (Faults) is among the kinds of those windows, or the row is a
//     no-fault row (what breaks without a fault breaks with one). A
//     violation under some other fault fails the gate: redis-sentinel-wait
//     loses mutual exclusion when a partition-pair cut and a failover
//     meet, so a run with only a latency fault must not;
//   - a run without any fault is judged by impl's no-fault rows of the
//     run's workload (else of any workload) only: a safe implementation
//     that fails with nothing broken is a regression even if some fault
//     is expected to break it. An implementation without such a row
//     falls back to every row if it is a mutant, else nothing is
//     allowed.
//
// Implementations absent from the matrix are allowed nothing, mutants
// included: the matrix, once given, is the whole rule.
func MatrixAllowed(rows []Expectation, cur *results.Results) func(impl, checker string) bool {
	mutant := map[string]bool{}
	topology := map[string]string{}
	for _, ir := range cur.Impls {
		mutant[ir.Name] = ir.Mutant
		topology[ir.Name] = ir.Topology
	}
	ran := map[string]map[string]bool{} // impl ("" = every phase) → fault kinds
	for _, w := range cur.Faults {
		if ran[w.Impl] == nil {
			ran[w.Impl] = map[string]bool{}
		}
		ran[w.Impl][w.Kind] = true
	}
	expects := func(impl, checker string, keep func(Expectation) bool) (allowed, any bool) {
		for _, r := range rows {
			if r.Impl != impl || !keep(r) || (r.Topology != "" && r.Topology != topology[impl]) {
				continue
			}
			any = true
			if slices.Contains(r.Failing, checker) {
				allowed = true
			}
		}
		return allowed, any
	}
	all := func(Expectation) bool { return true }
	return func(impl, checker string) bool {
		kinds := func(k string) bool { return ran[impl][k] || ran[""][k] }
		if len(ran[impl])+len(ran[""]) > 0 {
			ok, _ := expects(impl, checker, func(r Expectation) bool {
				return r.NoFault || (len(r.Faults) > 0 && !slices.ContainsFunc(r.Faults, func(k string) bool { return !kinds(k) }))
			})
			return ok
		}
		if ok, any := expects(impl, checker, func(r Expectation) bool { return r.NoFault && r.Workload == cur.Workload }); any {
			return ok
		}
		if ok, any := expects(impl, checker, func(r Expectation) bool { return r.NoFault }); any {
			return ok
		}
		if mutant[impl] {
			ok, _ := expects(impl, checker, all)
			return ok
		}
		return false
	}
}
