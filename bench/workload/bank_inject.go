package workload

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/faultline-dev/faultline/infra"
)

// injectedCount is how many transfers got the injected fault.
func (p *bankSession) injectedCount() int64 {
	n := p.injected.Load()
	if p.prm.maxInject > 0 {
		n = min(n, p.prm.maxInject)
	}
	return n
}

func (p *bankSession) isChosen(t txn.Transfer) bool {
	_, ok := p.chosen.Load(t.ID)
	return ok
}

// choose says whether transfer number n gets the injected fault.
func (p *bankSession) choose(n int64, rng *rand.Rand) bool {
	prm := p.prm
	if !prm.injecting() {
		return false
	}
	var hit bool
	switch {
	case prm.every > 0:
		hit = n%prm.every == 0
	case prm.prob > 0:
		hit = rng.Float64() < prm.prob
	default:
		hit = n == prm.after || (n > prm.after && p.rearm.CompareAndSwap(true, false))
	}
	if !hit {
		return false
	}
	k := p.injected.Add(1)
	return prm.maxInject == 0 || k <= prm.maxInject
}

// killAfterPrepare kills the kill-after-prepare node (every participant
// is prepared, no decision yet) and restarts it after kill-for, logging
// the fault window as nemesis events.
func (p *bankSession) killAfterPrepare(ctx context.Context, w *recorder.Worker) {
	n, ok := p.t.Env.Node(p.prm.killNode)
	if !ok || w == nil {
		return
	}
	p.mu.Lock()
	p.killed++
	id := fmt.Sprintf("bank-kill-%d", p.killed)
	p.mu.Unlock()
	h := w.History()
	ev := func(f string, err error) {
		op := history.Op{Type: history.Info, Process: history.Nemesis, Impl: p.t.Impl, F: f, Fault: "kill:" + n.Name(),
			Nodes: []string{n.Name()}, Attrs: map[string]string{"kind": "kill", "id": id, "injected": "kill-after-prepare"}}
		if err != nil {
			op.Error = err.Error()
		}
		h.Log(op)
	}
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := n.Kill(kctx)
	cancel()
	ev(history.FaultStart, err)
	if err != nil {
		ev(history.FaultHeal, nil)
		return
	}
	p.restartLater(n, func(err error) { ev(history.FaultHeal, err) })
}

// cutReplication (inject-failover=lossy) cuts the current primary's peer
// link, pg-2's WAL stream, in both directions, once: from then on what the
// primary acknowledges (asynchronous standby) never reaches the standby.
// failoverNow restores it after the promotion.
func (p *bankSession) cutReplication(ctx context.Context) {
	se := bankStandby(p.t.Env)
	if se == nil || !p.cut.CompareAndSwap(false, true) {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	prim, err := se.Primary(cctx)
	if err != nil {
		p.log.Warn("bank: inject-failover: find the primary to cut its replication", "err", err)
		return
	}
	l, ok := se.Link(prim.Name())
	if !ok {
		return
	}
	for _, stream := range []string{"upstream", "downstream"} {
		tx := infra.Toxic{Name: "bank-cut-" + stream, Type: "timeout", Stream: stream, Toxicity: 1, Attributes: map[string]any{"timeout": 0}}
		if err := l.Proxy().AddToxic(cctx, tx); err != nil {
			p.log.Warn("bank: inject-failover: cut replication", "link", l.Name(), "err", err)
		}
	}
	p.mu.Lock()
	p.cutLink = l
	p.mu.Unlock()
}

// failoverNow (inject-failover) fails participant A's pair over once: the
// primary is SIGKILLed and the standby promoted (infra.Env.Failover), a cut
// replication link restored, and the fault logged as a failover window
// (nemesis events dated at the kill, with the old and the new primary and
// the promotion time); the old primary restarts, fenced, after kill-for.
func (p *bankSession) failoverNow(ctx context.Context, w *recorder.Worker) {
	se := bankStandby(p.t.Env)
	if se == nil || w == nil || !p.failedOver.CompareAndSwap(false, true) {
		return
	}
	fctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	res, err := se.Failover(fctx, infra.FailoverKill)
	cancel()
	p.mu.Lock()
	l := p.cutLink
	p.cutLink = nil
	p.mu.Unlock()
	if l != nil {
		hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		for _, stream := range []string{"upstream", "downstream"} {
			if rerr := l.Proxy().RemoveToxic(hctx, "bank-cut-"+stream); rerr != nil {
				p.log.Warn("bank: inject-failover: restore replication", "link", l.Name(), "err", rerr)
			}
		}
		hcancel()
	}
	h := w.History()
	ev := func(f string, at time.Time, err error) history.Op {
		op := history.Op{Type: history.Info, Process: history.Nemesis, Impl: p.t.Impl, F: f, Fault: "failover",
			Attrs: map[string]string{"kind": "failover", "id": "bank-failover", "injected": "inject-failover=" + p.prm.failover,
				"mode": p.prm.failover, "old": res.Old, "new": res.New}}
		if res.Old != "" {
			op.Nodes = []string{res.Old}
		}
		if !at.IsZero() {
			op.Time = max(h.Since(at), 1)
		}
		if err != nil {
			op.Error = err.Error()
		}
		return op
	}
	start := ev(history.FaultStart, res.Started, err)
	if !res.Promoted.IsZero() {
		start.Attrs["promoted_ns"] = strconv.FormatInt(h.Since(res.Promoted), 10)
	}
	h.Log(start)
	old, ok := p.t.Env.Node(res.Old)
	if err != nil || !ok {
		h.Log(ev(history.FaultHeal, time.Time{}, nil))
		return
	}
	// old comes back fenced: read-only, following nobody.
	p.restartLater(old, func(err error) { h.Log(ev(history.FaultHeal, time.Time{}, err)) })
}

// restartLater starts n again in the background after killFor (or at once
// when the session stops), within 60 s, and hands healed the outcome.
func (p *bankSession) restartLater(n interface{ Start(context.Context) error }, healed func(error)) {
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		tm := time.NewTimer(p.prm.killFor)
		select {
		case <-tm.C:
		case <-p.stop:
			tm.Stop()
		}
		sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := n.Start(sctx)
		cancel()
		healed(err)
	}()
}
