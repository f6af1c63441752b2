package workload

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/impl/txn"
)

// SnapshotOps renders a bank snapshot as history entries (F bank-snapshot,
// then one entry per row: bank-account, bank-prepared, bank-journal,
// bank-outbox, bank-inbox, bank-global with the row's JSON in Attrs["v"]).
// The 2PC decision log is summarised (its size), as are finished global
// transactions: no checker reads them.
func SnapshotOps(s txn.Snapshot) []history.Op {
	var out []history.Op
	finished := 0
	var globals []txn.GlobalTxn
	for _, g := range s.Globals {
		switch g.State {
		case "confirmed", "cancelled", "done", "aborted":
			finished++
		default:
			globals = append(globals, g)
		}
	}
	out = append(out, history.Op{F: "bank-snapshot", Attrs: map[string]string{
		"taken_at": s.TakenAt.Format(time.RFC3339Nano), "decisions": strconv.Itoa(len(s.Decisions)),
		"globals_finished": strconv.Itoa(finished)}})
	add := func(f string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err) // plain structs: cannot fail
		}
		out = append(out, history.Op{F: f, Attrs: map[string]string{"v": string(b)}})
	}
	for _, a := range s.Accounts {
		add("bank-account", a)
	}
	for _, p := range s.Prepared {
		add("bank-prepared", p)
	}
	for _, j := range s.Journal {
		add("bank-journal", j)
	}
	for _, o := range s.Outbox {
		add("bank-outbox", o)
	}
	for _, i := range s.Inbox {
		add("bank-inbox", i)
	}
	for _, g := range globals {
		add("bank-global", g)
	}
	return out
}

// Check runs checker.BankCheck: the checker decodes the history itself.
func (w *bankWorkload) Check(ops []history.Op, c CheckConfig) Report {
	v, counters := checker.BankCheck(ops, c.Impl)
	return Report{Verdicts: v, Counters: counters}
}

// NewStreamCheck starts a bank check fed entry by entry (a
// checker.BankBuilder): the same verdicts as Check.
func (w *bankWorkload) NewStreamCheck() StreamCheck { return &bankStream{} }

// bankStream is the bank's StreamCheck.
type bankStream struct{ checker.BankBuilder }

func (b *bankStream) Report(c CheckConfig) Report {
	v, counters := b.Check(c.Impl)
	return Report{Verdicts: v, Counters: counters}
}
