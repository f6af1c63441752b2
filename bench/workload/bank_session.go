package workload

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/faultline-dev/faultline/infra"
)

// bankEndpoints are the implementation's servers pg-1 (A), pg-2 (B) and
// the Redis nodes its Info asks for, by the clients' path (direct or proxied), resolved
// now (a restarted node may have a new direct address). With a key prefix
// (external targets) the Redis keys carry it and the coordinator's tables
// live in participant A's database (its DSN's search_path is the run's
// schema) instead of a database faultline would have to create. Prepared
// transactions carry the run's gid prefix (t.RunToken).
func bankEndpoints(t Target, info txn.Info, direct bool) (txn.Endpoints, error) {
	prefix := t.KeyPrefix
	ep := txn.Endpoints{KeyPrefix: prefix}
	if t.RunToken != "" {
		ep.GIDPrefix = txn.RunGIDPrefix(t.RunToken)
	}
	if se := bankStandby(t.Env); se != nil {
		var err error
		ep.Participants, err = standbyParticipants(se, direct)
		return ep, err
	}
	for _, ns := range infra.Nodes(info.RedisNodes, max(info.PostgresNodes, 2)) {
		n, ok := t.Env.Node(ns.Name)
		if !ok {
			return ep, fmt.Errorf("txn %s needs node %s, which the environment lacks (start it with the workload's Nodes)", info.Name, ns.Name)
		}
		switch n.Kind() {
		case infra.Postgres:
			dsn := n.DSN()
			if direct {
				dsn = n.DirectDSN()
			}
			ep.Participants = append(ep.Participants, txn.PostgresEndpoint{Name: n.Name(), DSN: dsn})
		case infra.Redis:
			addr := n.Addr()
			if direct {
				addr = n.DirectAddr()
			}
			ep.Redis = append(ep.Redis, txn.RedisEndpoint{Name: n.Name(), Addr: addr, Password: n.Password()})
		}
	}
	if prefix != "" && len(ep.Participants) > 0 {
		ep.Coordinator = txn.PostgresEndpoint{Name: "coordinator", DSN: ep.Participants[0].DSN}
	}
	return ep, nil
}

func (w *bankWorkload) Start(ctx context.Context, t Target) (Session, error) {
	info, err := txn.Lookup(t.Impl)
	if err != nil {
		return nil, err
	}
	prm, err := parseBankParams(t, info)
	if err != nil {
		return nil, err
	}
	if t.OpTimeout <= 0 {
		t.OpTimeout = time.Second
	}
	ep, err := bankEndpoints(t, info, t.Direct)
	if err != nil {
		return nil, err
	}
	direct, err := bankEndpoints(t, info, true)
	if err != nil {
		return nil, err
	}
	lay, err := txn.Setup(ctx, direct, prm.accounts, prm.balance)
	if err != nil {
		return nil, fmt.Errorf("workload bank: reset the bank for %s: %w", t.Impl, err)
	}
	if se := bankStandby(t.Env); se != nil {
		// The bank as set up must be on the standby before the load: a
		// failover must not lose the accounts themselves.
		if err := se.WaitReplayed(ctx); err != nil {
			return nil, fmt.Errorf("workload bank: the standby did not replay the bank's set-up: %w", err)
		}
	}
	p := &bankSession{t: t, info: info, prm: prm, ep: ep, lay: lay, stop: make(chan struct{}),
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	p.mon = newInDoubtMonitor(func() (txn.Endpoints, error) { return bankEndpoints(t, info, true) }, direct, prm.poll)
	p.readers = &bankReaders{p: p, nudge: make(chan struct{}, max(prm.readers, 1))}
	if prm.readers > 0 && prm.readEvery > 0 {
		if err := p.readers.open(ctx, ep); err != nil {
			p.Close()
			return nil, err
		}
	}
	if len(info.Services) > 0 {
		// One service (relay, consumer…) for every client: clients are
		// the application's processes, the services infrastructure.
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		p.shared, err = info.New(sctx, ep, p.options(nil))
		cancel()
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("txn %s: open its shared services (%s): %w", info.Name, strings.Join(info.Services, ", "), err)
		}
	}
	p.mon.start()
	if prm.recoverEvery > 0 && p.shared == nil {
		p.bg.Add(1)
		go p.recoverLoop()
	}
	return p, nil
}

// bankSession is one implementation's run of the bank.
type bankSession struct {
	t      Target
	info   txn.Info
	prm    bankParams
	ep     txn.Endpoints
	lay    txn.Layout
	log    *slog.Logger
	shared txn.Transferer // info.Services: one service for every client

	count    atomic.Int64 // transfers started
	injected atomic.Int64
	chosen   sync.Map // transfer id → the fault hits it
	// rearm: the chosen transfer ended before its crash point (e.g. a lock
	// timeout in prepare), so the next transfer takes the crash instead.
	rearm atomic.Bool
	// hooked: the chosen transfers whose kill-after-prepare hook ran (one
	// that failed before it, e.g. on a lock timeout, killed nothing).
	hooked sync.Map

	mon     *inDoubtMonitor
	readers *bankReaders
	bg      sync.WaitGroup // node restarts, background recovery
	stop    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	killed  int // kill-after-prepare faults done
	// inject-failover: the replication link cut (lossy) and not yet
	// restored; whether the cut and the failover happened.
	cutLink         infra.Link
	cut, failedOver atomic.Bool
}

// options are the txn options of one client (c nil: the shared service).
func (p *bankSession) options(c *bankClient) txn.Options {
	prm := p.prm
	opt := txn.Options{
		OpTimeout: p.t.OpTimeout, LockTimeout: prm.lockTimeout, MaxConns: 4, Logger: p.log,
		CrashAt: prm.faults.CrashAt, TCC: prm.faults.TCC, Outbox: prm.faults.Outbox,
		Match:  p.isChosen,
		Params: map[string]string{},
		LogDir: p.t.LogDir,
	}
	_, params := splitBankParams(p.t)
	for k, v := range params {
		opt.Params[k] = v
	}
	if prm.killNode != "" && c != nil {
		opt.AfterPrepare = func(ctx context.Context, t txn.Transfer) error {
			if p.isChosen(t) {
				p.hooked.Store(t.ID, true)
				p.killAfterPrepare(ctx, c.w)
			}
			return nil
		}
	}
	return opt
}

// recoveryOptions are a recovering coordinator's: no injected fault.
func (p *bankSession) recoveryOptions(minAge time.Duration) txn.Options {
	return txn.Options{OpTimeout: p.t.OpTimeout, LockTimeout: p.prm.lockTimeout, MaxConns: 4, Logger: p.log, RecoverMinAge: minAge,
		LogDir: p.t.LogDir}
}

// recoverLoop is the recovery cron (recover-every): a coordinator that
// resolves in-doubt work older than recover-min-age.
func (p *bankSession) recoverLoop() {
	defer p.bg.Done()
	tick := time.NewTicker(p.prm.recoverEvery)
	defer tick.Stop()
	var tr txn.Transferer
	defer func() {
		if tr != nil {
			tr.Close()
		}
	}()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), p.prm.recoverEvery+p.t.OpTimeout*4)
		if tr == nil {
			var err error
			if tr, err = p.info.New(ctx, p.ep, p.recoveryOptions(p.prm.minAge)); err != nil {
				tr = nil
				cancel()
				continue
			}
		}
		_ = tr.Recover(ctx) // what it cannot resolve now, the next pass (or Finish) does
		cancel()
	}
}

func (p *bankSession) Client(ctx context.Context, process int, seed int64) (Client, error) {
	c := &bankClient{p: p, process: process, rng: rand.New(rand.NewPCG(uint64(seed), uint64(process)))}
	if p.shared != nil {
		c.tr = p.shared
		return c, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tr, err := p.info.New(cctx, p.ep, p.options(c))
	if err != nil {
		return nil, fmt.Errorf("txn %s: new coordinator for process %d: %w", p.info.Name, process, err)
	}
	c.tr, c.own = tr, true
	return c, nil
}

// stopBackground stops the readers, the recovery cron and the monitor's
// loop, and waits for node restarts.
func (p *bankSession) stopBackground() {
	p.once.Do(func() { close(p.stop) })
	p.readers.stopAll()
	p.bg.Wait()
	p.mon.stopLoop()
}
