package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/impl/txn"
)

// bankClient is one coordinator process.
type bankClient struct {
	p       *bankSession
	tr      txn.Transferer
	own     bool // tr is this process's (not the shared service of Info.Services)
	process int
	rng     *rand.Rand
	seq     int
	w       *recorder.Worker // of the Step in progress (for fault events)
}

func (c *bankClient) Close() error {
	if c.own {
		return c.tr.Close()
	}
	return nil
}

// next draws the next transfer: a random account on one node to a random
// account on the other (or, for single-db, another on the same node).
func (c *bankClient) next() txn.Transfer {
	p := c.p
	n := p.prm.accounts
	from := txn.Account{Node: c.rng.IntN(2), ID: 1 + c.rng.IntN(n)}
	to := txn.Account{Node: 1 - from.Node, ID: 1 + c.rng.IntN(n)}
	if p.info.SingleNode {
		to.Node = from.Node
		for to.ID == from.ID {
			to.ID = 1 + c.rng.IntN(n)
		}
	}
	c.seq++
	return txn.Transfer{ID: fmt.Sprintf("p%d-%d", c.process, c.seq), From: from, To: to, Amount: 1 + c.rng.Int64N(p.prm.amountMax)}
}

// Step is one transfer, logged as f=transfer; its phases are timed under
// their kinds. Every read-every transfers it nudges a reader.
func (c *bankClient) Step(ctx context.Context, w *recorder.Worker) StepResult {
	p := c.p
	c.w = w
	p.readers.start(w)
	n := p.count.Add(1)
	if p.prm.readEvery > 0 && n%int64(p.prm.readEvery) == 0 {
		p.readers.poke()
	}
	t := c.next()
	attrs := map[string]string{"from": t.From.String(), "to": t.To.String()}
	if p.choose(n, c.rng) {
		if p.prm.faults.CrashAt == txn.CrashBeforeRollback || p.prm.faults.CrashAt == txn.CrashAfterRollback {
			t.Amount = 1 << 40 // more than any balance: the debit votes no, the abort path runs
		}
		if p.prm.failover != "" {
			// From B to A: crash-at=after-commit commits the source's
			// node first, so A's credit is what stays prepared across
			// the failover.
			t.From.Node, t.To.Node = 1, 0
			if p.info.SingleNode {
				t.From.Node = 0
			}
			if p.prm.failover == failoverLossy {
				p.cutReplication(ctx)
			}
		}
		if i := p.participantOf(p.prm.killNode); i >= 0 && !p.info.SingleNode && t.To.Node != i {
			// kill-after-prepare kills a prepared participant: the
			// credit's (2pc's debit, the last resource, is never
			// prepared: killing it aborts the transfer cleanly).
			t.From.Node, t.To.Node = t.To.Node, t.From.Node
		}
		attrs["from"], attrs["to"] = t.From.String(), t.To.String()
		attrs["inject"] = p.prm.describe()
		p.chosen.Store(t.ID, true)
		defer p.chosen.Delete(t.ID)
	}
	attrs["amount"] = strconv.FormatInt(t.Amount, 10)
	h := w.History()
	h.Log(history.Op{Type: history.Invoke, Process: w.Process, Impl: w.Impl, F: "transfer", Token: t.ID, Value: history.Int(t.Amount), Attrs: attrs})
	m := w.Mark()
	tctx, cancel := context.WithTimeout(ctx, p.prm.transferTimeout)
	out, err := c.tr.Transfer(tctx, t)
	cancel()
	var phases []string
	for _, ph := range out.Phases {
		if i := phaseKind(ph.Name); i >= 0 {
			w.Observe(i, m, ph.Duration)
		}
		phases = append(phases, ph.Name+"="+ph.Duration.Round(time.Microsecond).String())
	}
	typ := history.OK
	switch txn.Classify(err) {
	case txn.ClassFail:
		typ = history.Fail
	case txn.ClassInfo:
		typ = history.Info
	}
	kind := BankErrorKind(err)
	done := map[string]string{"phases": strings.Join(phases, " ")}
	if err != nil {
		msg := err.Error()
		if len(msg) > 300 {
			msg = msg[:300]
		}
		done["detail"] = msg
	}
	if out.Incomplete {
		done["incomplete"] = "true"
	}
	if out.Retries > 0 {
		done["retries"] = strconv.Itoa(out.Retries)
	}
	h.Log(history.Op{Type: typ, Process: w.Process, Impl: w.Impl, F: "transfer", Token: t.ID, Error: kind, Attrs: done})
	crashed := errors.Is(err, txn.ErrCrashed)
	if p.prm.failover != "" && p.isChosen(t) && (crashed || p.prm.faults.CrashAt == "") {
		p.failoverNow(ctx, w) // the injected transfer is in doubt now
	}
	_, hooked := p.hooked.Load(t.ID)
	missed := p.prm.faults.CrashAt != "" && !crashed || p.prm.killNode != "" && !hooked
	if p.isChosen(t) && missed && typ == history.Fail && p.prm.every == 0 && p.prm.prob == 0 {
		// Aborted before reaching the crash point (or the kill-after-prepare
		// hook): no crash happened, so the fault moves to the next transfer
		// (still exactly one crash).
		p.injected.Add(-1)
		p.rearm.Store(true)
	}
	return StepResult{Type: typ, Err: kind, Crashed: crashed}
}

// participantOf is the index of the participant on node name (-1: none,
// or name empty).
func (p *bankSession) participantOf(name string) int {
	for i, e := range p.ep.Participants {
		if name != "" && e.Name == name {
			return i
		}
	}
	return -1
}

func phaseKind(name string) int {
	for i := bkPhase0; i < len(bankKinds); i++ {
		if bankKinds[i] == name {
			return i
		}
	}
	return -1
}

// BankErrorKind names a transfer error for the history and the stats:
// crashed, insufficient-funds, no-account, lock-timeout (a row held by
// another, e.g. in-doubt, transaction past lock_timeout), timeout,
// aborted, indeterminate, error.
func BankErrorKind(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	switch {
	case errors.Is(err, txn.ErrCrashed):
		return "crashed"
	case errors.Is(err, txn.ErrInsufficientFunds):
		return "insufficient-funds"
	case errors.Is(err, txn.ErrNoAccount):
		return "no-account"
	case strings.Contains(msg, "lock timeout") || strings.Contains(msg, "55P03"):
		return "lock-timeout"
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "timeout") || strings.Contains(msg, "deadline exceeded"):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, txn.ErrAborted):
		return "aborted"
	case errors.Is(err, txn.ErrIndeterminate):
		return "indeterminate"
	}
	return "error"
}
