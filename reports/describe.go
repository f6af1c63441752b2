package reports

import (
	"slices"
	"strings"

	"github.com/faultline-dev/faultline/bench/results"
)

// describe returns what results.json says about its workload
// (r.WorkloadInfo, written by the runner). Files written before that field
// existed fall back to legacyInfo; nothing else in the report reads names.
func describe(r *results.Results) *results.WorkloadInfo {
	if r.WorkloadInfo != nil {
		return r.WorkloadInfo
	}
	return legacyInfo(r)
}

// Operation kinds and measures of the faultline versions that wrote no
// workload_info (results schema 1 before it): the only place the report
// knows names.
var (
	legacyOps    = []string{"cycle", "acquire", "read", "write", "release", "transfer", "local", "prepare", "decide", "commit", "rollback", "try", "confirm", "cancel", "forward", "compensate"}
	legacyPhases = []string{"local", "prepare", "decide", "commit", "rollback", "try", "confirm", "cancel", "forward", "compensate"}
	legacyCharts = map[string]string{
		"liveness":         results.ChartRecovery,
		"no-prepared-left": results.ChartInDoubt,
		"outbox-delivery":  results.ChartDelivery,
	}
)

// legacyInfo describes a results.json written without workload_info: the
// bank (its headline kind "transfer" in some implementation) is a
// transaction workload, anything else a lock workload; its phases are the
// known phase kinds present; a measure whose name has an "_ms" part is in
// milliseconds, charted by its checker's chart.
func legacyInfo(r *results.Results) *results.WorkloadInfo {
	info := &results.WorkloadInfo{Kind: results.KindLock}
	present := map[string]bool{}
	for _, ir := range r.Impls {
		for k := range ir.Ops {
			present[k] = true
		}
	}
	if present["transfer"] {
		info.Kind = results.KindTxn
	}
	for _, k := range legacyOps {
		if present[k] {
			info.Ops = append(info.Ops, k)
			delete(present, k)
		}
	}
	info.Ops = append(info.Ops, sortedKeys(present)...)
	if len(info.Ops) > 0 {
		info.Headline = info.Ops[0]
	}
	if info.Kind == results.KindTxn {
		for _, k := range legacyPhases {
			if slices.Contains(info.Ops, k) {
				info.Phases = append(info.Phases, k)
			}
		}
	}
	seen := map[[2]string]bool{}
	for _, v := range r.Verdicts {
		for _, name := range sortedKeys(v.Measures) {
			if seen[[2]string{v.Checker, name}] {
				continue
			}
			seen[[2]string{v.Checker, name}] = true
			m := results.MeasureInfo{Checker: v.Checker, Name: name, Unit: results.UnitCount}
			if strings.Contains(name+"_", "_ms_") {
				m.Unit, m.Chart = results.UnitMS, legacyCharts[v.Checker]
			}
			info.Measures = append(info.Measures, m)
		}
	}
	return info
}

// opKinds lists the operation kinds of rs in a stable order: each run's
// workload order (WorkloadInfo.Ops), then any kind recorded but not
// declared, alphabetically.
func opKinds(rs ...*results.Results) []string {
	set := map[string]bool{}
	for _, r := range rs {
		for _, ir := range r.Impls {
			for k := range ir.Ops {
				set[k] = true
			}
		}
	}
	var out []string
	for _, r := range rs {
		for _, k := range describe(r).Ops {
			if set[k] {
				out = append(out, k)
				delete(set, k)
			}
		}
	}
	return append(out, sortedKeys(set)...)
}
