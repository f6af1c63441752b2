package workload

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/impl/txn"
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
		ev(history.FaultHeal, err)
	}()
}
