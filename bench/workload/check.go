package workload

import (
	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/history"
)

// Check runs the lock checkers (bench/checker: mutual exclusion, lost
// updates, liveness, leaked locks, and fencing where the resource fences)
// on one implementation's history
// and counts what the workload counts: "fenced" writes the resource
// rejected, "crashed" processes, and "resource-writes" applied.
func (w *lockWorkload) Check(ops []history.Op, c CheckConfig) Report {
	rep := Report{Counters: map[string]int64{}}
	for _, v := range checker.Locks(ops, checker.Options{TTL: c.TTL, Impl: c.Impl}) {
		// Fencing-token order at the resource only means something where
		// the resource enforces it; the counter's resource does not fence.
		if v.Checker == checker.FencingName && !w.fences {
			continue
		}
		rep.Verdicts = append(rep.Verdicts, v)
	}
	for _, op := range ops {
		switch {
		case op.F == "write" && op.Type == history.Fail && op.Error == "fenced":
			rep.Counters["fenced"]++
		case op.Error == "crashed" || (op.Process == history.Nemesis && op.F == history.FaultStart && op.Attrs["kind"] == "holder-crash"):
			rep.Counters["crashed"]++
		case op.Process == history.Resource && op.F == "resource-write":
			rep.Counters["resource-writes"]++
		}
	}
	return dropZero(rep)
}

// CheckPhase is Check of one implementation's history read as a Phase
// (what the runner streams from the file: the entries are never all held).
func (w *lockWorkload) CheckPhase(p *checker.Phase, c CheckConfig) Report {
	rep := Report{Counters: map[string]int64{}}
	for _, v := range checker.LocksOf(p, checker.Options{TTL: c.TTL, Impl: c.Impl}) {
		if v.Checker == checker.FencingName && !w.fences {
			continue
		}
		rep.Verdicts = append(rep.Verdicts, v)
	}
	for i := range p.Ops {
		o := &p.Ops[i]
		switch {
		case o.F() == "write" && o.Failed() && o.Error() == "fenced":
			rep.Counters["fenced"]++
		case o.Error() == "crashed":
			rep.Counters["crashed"]++
		}
	}
	for _, op := range p.Events {
		if op.Error == "crashed" || (op.Process == history.Nemesis && op.F == history.FaultStart && op.Attrs["kind"] == "holder-crash") {
			rep.Counters["crashed"]++
		}
	}
	rep.Counters["resource-writes"] += int64(len(p.Writes))
	return dropZero(rep)
}

func dropZero(rep Report) Report {
	for k, v := range rep.Counters {
		if v == 0 {
			delete(rep.Counters, k)
		}
	}
	return rep
}
