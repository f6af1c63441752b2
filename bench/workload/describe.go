package workload

import (
	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/results"
)

// Describer is a workload that says what it is for results.json: its kind,
// its transaction phases, the measures its checks write. The report reads
// this instead of guessing from names.
type Describer interface {
	Describe() results.WorkloadInfo
}

// DescribeWorkload returns w's description for results.json: w.Describe()
// when w is a Describer, else only what every workload knows (its
// operation kinds, no kind, no measures). Headline and Ops always come
// from w.Kinds().
func DescribeWorkload(w Workload) results.WorkloadInfo {
	var info results.WorkloadInfo
	if d, ok := w.(Describer); ok {
		info = d.Describe()
	}
	info.Ops = append([]string(nil), w.Kinds()...)
	if len(info.Ops) > 0 {
		info.Headline = info.Ops[0]
	}
	return info
}

// Describe is the lock workloads' description.
func (w *lockWorkload) Describe() results.WorkloadInfo {
	ms := func(c, n, chart string) results.MeasureInfo {
		return results.MeasureInfo{Checker: c, Name: n, Unit: results.UnitMS, Chart: chart}
	}
	n := func(c, n string) results.MeasureInfo {
		return results.MeasureInfo{Checker: c, Name: n, Unit: results.UnitCount}
	}
	return results.WorkloadInfo{Kind: results.KindLock, Measures: []results.MeasureInfo{
		ms(checker.LivenessName, "recovery_ms_p50", results.ChartRecovery),
		ms(checker.LivenessName, "recovery_ms_max", results.ChartRecovery),
		n(checker.LivenessName, "crashes"), n(checker.LivenessName, "recovered"),
		n(checker.MutualExclusionName, "critical_sections"), n(checker.MutualExclusionName, "overlaps"),
		n(checker.MutualExclusionName, "possible_overlaps"), n(checker.MutualExclusionName, "resource_writes"),
		n(checker.LostUpdateName, "acked"), n(checker.LostUpdateName, "indeterminate"),
		n(checker.LostUpdateName, "final"), n(checker.LostUpdateName, "lost"),
		n(checker.FencingName, "fenced"), n(checker.FencingName, "accepted_fenced_writes"), n(checker.FencingName, "stale_accepted"),
		n(checker.LeakedLocksName, "keys"), n(checker.LeakedLocksName, "leaked"), n(checker.LeakedLocksName, "leaked_forever"),
	}}
}

// Describe is the bank's description: its protocol phases and the
// in-doubt, blocking and delivery times its checks measure.
func (*bankWorkload) Describe() results.WorkloadInfo {
	ms := func(c, n, chart string) results.MeasureInfo {
		return results.MeasureInfo{Checker: c, Name: n, Unit: results.UnitMS, Chart: chart}
	}
	n := func(c, n string) results.MeasureInfo {
		return results.MeasureInfo{Checker: c, Name: n, Unit: results.UnitCount}
	}
	return results.WorkloadInfo{Kind: results.KindTxn, Phases: append([]string(nil), bankKinds[bkPhase0:]...), Measures: []results.MeasureInfo{
		ms(checker.NoPreparedLeftName, "in_doubt_ms_p50", results.ChartInDoubt),
		ms(checker.NoPreparedLeftName, "in_doubt_ms_max", results.ChartInDoubt),
		ms(checker.NoPreparedLeftName, "prepared_max_age_ms", results.ChartInDoubt),
		n(checker.NoPreparedLeftName, "in_doubt"), n(checker.NoPreparedLeftName, "blocked_transfers"),
		n(checker.NoPreparedLeftName, "prepared_left"), n(checker.NoPreparedLeftName, "unfinished_globals"),
		ms(checker.OutboxDeliveryName, "delay_ms_p50", results.ChartDelivery),
		ms(checker.OutboxDeliveryName, "delay_ms_p90", results.ChartDelivery),
		ms(checker.OutboxDeliveryName, "delay_ms_p99", results.ChartDelivery),
		ms(checker.OutboxDeliveryName, "delay_ms_max", results.ChartDelivery),
		n(checker.OutboxDeliveryName, "messages"), n(checker.OutboxDeliveryName, "duplicates_published"),
		n(checker.OutboxDeliveryName, "duplicates_skipped"),
		n(checker.ConservationName, "total"), n(checker.ConservationName, "initial_total"),
		n(checker.ConservationName, "transfers_ok"), n(checker.ConservationName, "transfers_fail"), n(checker.ConservationName, "transfers_info"),
		n(checker.BankReadsName, "reads"), n(checker.BankReadsName, "skewed_reads"), n(checker.BankReadsName, "skew_max"),
		{Checker: checker.BankReadsName, Name: "skewed_fraction", Unit: results.UnitRatio},
	}}
}
