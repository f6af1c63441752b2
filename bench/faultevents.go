package bench

import (
	"strconv"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/chaos"
)

// recordFault turns the fault runner's events into history entries
// (process Nemesis, type info, F fault-start or fault-heal, attrs id/kind,
// the holder a client fault hit) and hands them to log.
func recordFault(log func(history.Op)) func(chaos.Event) {
	return func(ev chaos.Event) { log(FaultOp(ev)) }
}

// FaultOp is the history entry of one fault event.
func FaultOp(ev chaos.Event) history.Op {
	f := history.FaultStart
	if ev.Heal {
		f = history.FaultHeal
	}
	op := history.Op{
		Time: ev.Time, Type: history.Info, Process: history.Nemesis, Impl: ev.Impl,
		F: f, Fault: ev.Fault, Nodes: ev.Nodes, Error: ev.Error,
		Attrs: map[string]string{"id": ev.ID, "kind": ev.Kind},
	}
	if ev.HolderHit {
		op.Key, op.Token, op.Fence = ev.Holder.Key, ev.Holder.Token, ev.Holder.Fence
		op.Attrs["process"] = strconv.Itoa(ev.Holder.Process)
		if ev.Holder.OSPid > 0 {
			op.Attrs["os_pid"] = strconv.Itoa(ev.Holder.OSPid)
		}
	}
	for k, v := range ev.Attrs {
		if _, taken := op.Attrs[k]; !taken {
			op.Attrs[k] = v
		}
	}
	if ev.Length > 0 {
		op.Attrs["length_ms"] = strconv.FormatInt(ev.Length/1e6, 10)
	}
	return op
}

// FaultWindows converts the fault runner's windows for results.json.
func FaultWindows(ws []chaos.Window) []results.FaultWindow {
	out := make([]results.FaultWindow, 0, len(ws))
	for _, w := range ws {
		out = append(out, results.FaultWindow{ID: w.ID, Fault: w.Fault, Kind: w.Kind, Nodes: w.Nodes, Impl: w.Impl, Start: w.Start, End: w.End})
	}
	return out
}
