package workload

// The bank workload: distributed transactions (impl/txn) moving money
// between accounts on two PostgreSQL servers, judged by bench/checker.Bank.
//
// History vocabulary (process = the worker; a crashed coordinator continues
// under a new process id):
//
//	f=transfer invoke{token=transfer id, value=amount, attrs from, to, amount[, inject]}
//	           ok | fail{error: insufficient-funds, lock-timeout, aborted…} | info{error: crashed, timeout, indeterminate…}
//	           completion attrs: detail (error text), incomplete, retries, phases ("prepare=812µs …")
//	f=read     invoke{key=bank} | ok{value=total seen, attrs A, B (per-node sums), negative} | info
//	           (readers are processes 100000+i; see bankReaders)
//
// The transfer is timed by the runner as the headline kind "transfer"; each
// protocol phase (txn.Outcome.Phases) is recorded under its own kind.
// Finish appends the ground truth as process history.Resource entries:
// bank-layout, bank-recover, in-doubt (one per in-doubt prepared
// transaction), bank-snapshot and one bank-account / bank-prepared /
// bank-journal / bank-outbox / bank-inbox / bank-global entry per row, each
// item's JSON in Attrs["v"]: Check needs nothing but the history.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/faultline-dev/faultline/infra"
)

func init() { Register(&bankWorkload{}) }

// BankName is the bank workload's name.
const BankName = "bank"

// Kinds of the bank workload; the index is the recorder's kind id.
const (
	bkTransfer = iota
	bkRead
	bkPhase0 // first protocol phase kind
)

var bankKinds = []string{"transfer", "read",
	txn.PhaseLocal, txn.PhasePrepare, txn.PhaseDecide, txn.PhaseCommit, txn.PhaseRollback,
	txn.PhaseTry, txn.PhaseConfirm, txn.PhaseCancel, txn.PhaseForward, txn.PhaseCompensate}

// ReaderProcess0 is the process id of the bank's first concurrent reader.
const ReaderProcess0 = 100000

// Baseliner is a workload whose implementations are measured against a
// baseline implementation (the bank: single-db, one local transaction).
// The runner adds the baseline to a run that lacks it and reports each
// implementation's ratios against it.
type Baseliner interface {
	// Baseline names impl's baseline ("" = none).
	Baseline(impl string) string
}

type bankWorkload struct{}

func (*bankWorkload) Name() string { return BankName }
func (*bankWorkload) Doc() string {
	return "each worker transfers a random amount between an account on pg-1 and one on pg-2 (both directions; single-db: within one node) " +
		"with a transaction protocol, while readers sum balances; after heal, Recover and a snapshot: conservation, no negative balance, " +
		"nothing left prepared or frozen, TCC anomalies, outbox delivery; in-doubt time and blocked transfers measured"
}
func (*bankWorkload) Kinds() []string { return bankKinds }

func (*bankWorkload) Impls() []ImplInfo {
	var out []ImplInfo
	for _, i := range txn.All() {
		out = append(out, ImplInfo{Name: i.Name, Doc: i.Doc, Mutant: i.Mutant})
	}
	return out
}

// Baseline is txn.Info.Baseline.
func (*bankWorkload) Baseline(impl string) string {
	info, err := txn.Lookup(impl)
	if err != nil {
		return ""
	}
	return info.Baseline
}

func (w *bankWorkload) Nodes(impls []string) ([]infra.NodeSpec, error) {
	if len(impls) == 0 {
		return nil, fmt.Errorf("workload bank: no implementation given (known: %s)", strings.Join(ImplNames(w), ", "))
	}
	r, p := 0, 2
	for _, name := range impls {
		info, err := txn.Lookup(name)
		if err != nil {
			return nil, err
		}
		r, p = max(r, info.RedisNodes), max(p, info.PostgresNodes)
	}
	return infra.Nodes(r, p), nil
}

// NodesFor is the transaction's own nodes (txn.Info): the accounts live
// on its PostgreSQL nodes.
func (w *bankWorkload) NodesFor(impl string) (PhaseNodes, error) {
	info, err := txn.Lookup(impl)
	if err != nil {
		return PhaseNodes{}, err
	}
	return PhaseNodes{Impl: specNames(infra.Nodes(info.RedisNodes, info.PostgresNodes))}, nil
}

// bankParams are the bank's settings, from Target.Params (--lock-opt k=v).
type bankParams struct {
	accounts                int   // per node
	balance                 int64 // initial, per account
	amountMax               int64
	readers, readEvery      int
	lockTimeout             time.Duration
	transferTimeout         time.Duration
	recoverEvery, minAge    time.Duration
	poll, blockedMin        time.Duration
	crashAt                 txn.CrashPoint
	lateTry                 string
	dupConfirm, dupCancel   bool
	lostReply               bool
	relayCrash              int
	killNode                string
	killFor                 time.Duration
	after, every, maxInject int64
	prob                    float64
}

// BankParams documents every bank parameter (--lock-opt key=value).
var BankParams = map[string]string{
	"accounts":           "accounts per node (default 100)",
	"balance":            "initial balance of every account (default 1000)",
	"amount-max":         "transfers move 1..amount-max (default 20)",
	"readers":            "concurrent reader processes (default 2; 0 = none)",
	"read-every":         "one reader snapshot per this many transfers (default 4)",
	"lock-timeout":       "PostgreSQL lock_timeout of transfers (default op-timeout/2): how long a transfer waits for a row an in-doubt transaction holds",
	"transfer-timeout":   "bound of one whole transfer, retries included (default 10×op-timeout)",
	"recover-every":      "background recovery period (a recovery cron, 2pc/tcc/saga; default 0 = recovery only after the load)",
	"recover-min-age":    "background recovery leaves younger in-doubt work alone (default 2×op-timeout)",
	"indoubt-poll":       "how often pg_prepared_xacts is polled to measure in-doubt time (default 50ms)",
	"blocked-min":        "a transfer on an in-doubt row that took this long or failed counts as blocked (default 100ms)",
	"crash-at":           "2pc coordinator crash point: " + crashPointNames(),
	"late-try":           "tcc: hold back the try of branch debit|credit past its cancel (hanging try)",
	"dup-confirm":        "tcc: send every confirm twice (true)",
	"dup-cancel":         "tcc: send every cancel twice (true)",
	"lost-confirm-reply": "tcc: lose the first confirm reply of each branch; the coordinator retries (true)",
	"relay-crash":        "outbox: the relay crashes N times between publish and mark",
	"kill-after-prepare": "2pc: kill this participant node (pg-2) after every participant prepared, before the decision; restarted after kill-for",
	"kill-for":           "how long kill-after-prepare keeps the node down (default 500ms)",
	"inject-after":       "the injected fault hits transfer number N of the phase (default 10; once)",
	"inject-every":       "the injected fault hits every Nth transfer (no cap unless inject-max)",
	"inject-prob":        "the injected fault hits each transfer with this probability (no cap unless inject-max)",
	"inject-max":         "at most this many injected faults (default 1 with inject-after, else unlimited)",
}

func crashPointNames() string {
	var s []string
	for _, p := range txn.CrashPoints {
		s = append(s, string(p))
	}
	return strings.Join(s, ", ")
}

func parseBankParams(t Target) (bankParams, error) {
	op := t.OpTimeout
	if op <= 0 {
		op = time.Second
	}
	p := bankParams{accounts: 100, balance: 1000, amountMax: 20, readers: 2, readEvery: 4,
		lockTimeout: max(op/2, 50*time.Millisecond), transferTimeout: 10 * op, minAge: 2 * op,
		poll: 50 * time.Millisecond, blockedMin: 100 * time.Millisecond, killFor: 500 * time.Millisecond, after: 10}
	maxSet := false
	var errs []error
	keys := make([]string, 0, len(t.Params))
	for k := range t.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := strings.TrimSpace(t.Params[k])
		bad := func(err error) { errs = append(errs, fmt.Errorf("bank param %s=%q: %v", k, v, err)) }
		num := func(dst *int64, min int64) {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < min {
				bad(fmt.Errorf("want a whole number >= %d", min))
				return
			}
			*dst = n
		}
		dur := func(dst *time.Duration) {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				bad(errors.New("want a duration such as 500ms"))
				return
			}
			*dst = d
		}
		flag := func(dst *bool) {
			b, err := strconv.ParseBool(v)
			if err != nil {
				bad(errors.New("want true or false"))
				return
			}
			*dst = b
		}
		var n int64
		switch k {
		case "accounts":
			num(&n, 2)
			p.accounts = int(n)
		case "balance":
			num(&p.balance, 1)
		case "amount-max":
			num(&p.amountMax, 1)
		case "readers":
			num(&n, 0)
			p.readers = int(n)
		case "read-every":
			num(&n, 0)
			p.readEvery = int(n)
		case "lock-timeout":
			dur(&p.lockTimeout)
		case "transfer-timeout":
			dur(&p.transferTimeout)
		case "recover-every":
			dur(&p.recoverEvery)
		case "recover-min-age":
			dur(&p.minAge)
		case "indoubt-poll":
			dur(&p.poll)
		case "blocked-min":
			dur(&p.blockedMin)
		case "crash-at":
			p.crashAt = txn.CrashPoint(v)
			valid := false
			for _, c := range txn.CrashPoints {
				valid = valid || c == p.crashAt
			}
			if !valid {
				bad(fmt.Errorf("unknown crash point (valid: %s)", crashPointNames()))
			}
		case "late-try":
			if v != txn.BranchDebit && v != txn.BranchCredit {
				bad(errors.New("want debit or credit"))
			}
			p.lateTry = v
		case "dup-confirm":
			flag(&p.dupConfirm)
		case "dup-cancel":
			flag(&p.dupCancel)
		case "lost-confirm-reply":
			flag(&p.lostReply)
		case "relay-crash":
			num(&n, 0)
			p.relayCrash = int(n)
		case "kill-after-prepare":
			if _, ok := t.Env.Node(v); !ok {
				bad(errors.New("no such node in the environment"))
			}
			p.killNode = v
		case "kill-for":
			dur(&p.killFor)
		case "inject-after":
			num(&p.after, 1)
		case "inject-every":
			num(&p.every, 1)
		case "inject-prob":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 1 {
				bad(errors.New("want a probability in [0, 1]"))
			}
			p.prob = f
		case "inject-max":
			num(&p.maxInject, 0)
			maxSet = true
		default:
			names := make([]string, 0, len(BankParams))
			for n := range BankParams {
				names = append(names, n)
			}
			sort.Strings(names)
			errs = append(errs, fmt.Errorf("unknown bank param %q (valid: %s)", k, strings.Join(names, ", ")))
		}
	}
	if !maxSet && p.every == 0 && p.prob == 0 {
		p.maxInject = 1
	}
	if p.lockTimeout <= 0 {
		p.lockTimeout = max(op/2, 50*time.Millisecond)
	}
	if p.transferTimeout <= 0 {
		p.transferTimeout = 10 * op
	}
	if p.poll <= 0 {
		p.poll = 50 * time.Millisecond
	}
	return p, errors.Join(errs...)
}

// injecting says whether some fault is injected into chosen transfers.
func (p bankParams) injecting() bool {
	return p.crashAt != "" || p.lateTry != "" || p.dupConfirm || p.dupCancel || p.lostReply || p.killNode != ""
}

// describe names the injected faults (for the invoke's "inject" attr).
func (p bankParams) describe() string {
	var s []string
	if p.crashAt != "" {
		s = append(s, "crash-at="+string(p.crashAt))
	}
	if p.lateTry != "" {
		s = append(s, "late-try="+p.lateTry)
	}
	if p.dupConfirm {
		s = append(s, "dup-confirm")
	}
	if p.dupCancel {
		s = append(s, "dup-cancel")
	}
	if p.lostReply {
		s = append(s, "lost-confirm-reply")
	}
	if p.killNode != "" {
		s = append(s, "kill-after-prepare="+p.killNode)
	}
	return strings.Join(s, ",")
}

// bankEndpoints are the implementation's servers pg-1 (A), pg-2 (B) and,
// for outbox, redis-1, by the clients' path (direct or proxied), resolved
// now (a restarted node may have a new direct address).
func bankEndpoints(env Env, info txn.Info, direct bool) (txn.Endpoints, error) {
	var ep txn.Endpoints
	for _, ns := range infra.Nodes(info.RedisNodes, max(info.PostgresNodes, 2)) {
		n, ok := env.Node(ns.Name)
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
	return ep, nil
}

func (w *bankWorkload) Start(ctx context.Context, t Target) (Session, error) {
	info, err := txn.Lookup(t.Impl)
	if err != nil {
		return nil, err
	}
	prm, err := parseBankParams(t)
	if err != nil {
		return nil, err
	}
	if t.OpTimeout <= 0 {
		t.OpTimeout = time.Second
	}
	ep, err := bankEndpoints(t.Env, info, t.Direct)
	if err != nil {
		return nil, err
	}
	direct, err := bankEndpoints(t.Env, info, true)
	if err != nil {
		return nil, err
	}
	lay, err := txn.Setup(ctx, direct, prm.accounts, prm.balance)
	if err != nil {
		return nil, fmt.Errorf("workload bank: reset the bank for %s: %w", t.Impl, err)
	}
	p := &bankSession{t: t, info: info, prm: prm, ep: ep, lay: lay, stop: make(chan struct{}),
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	p.mon = newInDoubtMonitor(t.Env, len(direct.Participants), prm.poll)
	p.readers = &bankReaders{p: p, nudge: make(chan struct{}, max(prm.readers, 1))}
	if prm.readers > 0 && prm.readEvery > 0 {
		if err := p.readers.open(ctx, ep); err != nil {
			p.Close()
			return nil, err
		}
	}
	if strings.HasPrefix(info.Name, "outbox") {
		// One relay and consumer service for every client: clients are
		// the application's processes, the relay is infrastructure.
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		p.shared, err = info.New(sctx, ep, p.options(nil))
		cancel()
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("txn %s: open the shared outbox service: %w", info.Name, err)
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
	shared txn.Transferer // outbox: one service for every client

	count    atomic.Int64 // transfers started
	injected atomic.Int64
	chosen   sync.Map // transfer id → the fault hits it
	// rearm: the chosen transfer ended before its crash point (e.g. a lock
	// timeout in prepare), so the next transfer takes the crash instead.
	rearm atomic.Bool

	mon     *inDoubtMonitor
	readers *bankReaders
	bg      sync.WaitGroup // node restarts, background recovery
	stop    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	killed  int // kill-after-prepare faults done
}

// options are the txn options of one client (c nil: the shared service).
func (p *bankSession) options(c *bankClient) txn.Options {
	prm := p.prm
	opt := txn.Options{
		OpTimeout: p.t.OpTimeout, LockTimeout: prm.lockTimeout, MaxConns: 4, Logger: p.log,
		CrashAt: prm.crashAt,
		TCC:     txn.TCCFaults{LateTry: prm.lateTry, DuplicateConfirm: prm.dupConfirm, DuplicateCancel: prm.dupCancel, LostConfirmReply: prm.lostReply},
		Outbox:  txn.OutboxFaults{CrashRelayAfterPublish: prm.relayCrash},
		Match:   p.isChosen,
		Params:  map[string]string{},
	}
	for k, v := range p.t.Params {
		opt.Params[k] = v
	}
	if prm.killNode != "" && c != nil {
		opt.AfterPrepare = func(ctx context.Context, t txn.Transfer) error {
			if p.isChosen(t) {
				p.killAfterPrepare(ctx, c.w)
			}
			return nil
		}
	}
	return opt
}

// recoveryOptions are a recovering coordinator's: no injected fault.
func (p *bankSession) recoveryOptions(minAge time.Duration) txn.Options {
	return txn.Options{OpTimeout: p.t.OpTimeout, LockTimeout: p.prm.lockTimeout, MaxConns: 4, Logger: p.log, RecoverMinAge: minAge}
}

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

// Finish recovers with a fresh coordinator (the faults are healed and the
// quiet period passed), measures what stayed in doubt, snapshots the bank
// and appends it all to the history. probe < 0 (interrupted) changes
// nothing: recovery is what makes the snapshot meaningful.
func (p *bankSession) Finish(ctx context.Context, h *recorder.History, _ int) error {
	p.stopBackground()
	var errs []error
	var drainErr error
	if p.shared != nil {
		// Let the running outbox service drain first (best effort: the
		// recovering coordinator below finishes what is left): closing it
		// in the middle of a credit would leave that message
		// unacknowledged and the next consumer would apply it again
		// (harmless with dedup, a false alarm without).
		dctx, cancel := budget(ctx, 0.6)
		drainErr = p.drainOutbox(dctx)
		cancel()
		errs = append(errs, p.shared.Close())
		p.shared = nil
	}
	p.mon.poll(ctx)
	p.mon.markOpen()

	ep, err := bankEndpoints(p.t.Env, p.info, p.t.Direct)
	if err != nil {
		return err
	}
	recStart := time.Now()
	rctx, cancel := budget(ctx, 0.7)
	var recErr error
	if tr, err := p.info.New(rctx, ep, p.recoveryOptions(0)); err != nil {
		recErr = fmt.Errorf("open a recovering coordinator: %w", err)
	} else {
		recErr = tr.Recover(rctx)
		tr.Close()
	}
	cancel()
	recEnd := time.Now()
	p.mon.poll(ctx)
	if recErr != nil {
		errs = append(errs, fmt.Errorf("txn %s: recover: %w", p.info.Name, recErr))
	}

	direct, err := bankEndpoints(p.t.Env, p.info, true)
	if err != nil {
		return err
	}
	snap, err := txn.TakeSnapshot(ctx, direct)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("txn %s: snapshot the bank: %w", p.info.Name, err))...)
	}
	res := func(f string, op history.Op) {
		op.Type, op.Process, op.Impl, op.F = history.OK, history.Resource, p.t.Impl, f
		h.Log(op)
	}
	res("bank-layout", history.Op{Attrs: map[string]string{
		"accounts": strconv.Itoa(p.prm.accounts), "balance": strconv.FormatInt(p.prm.balance, 10),
		"nodes": strconv.Itoa(len(direct.Participants)), "single_node": strconv.FormatBool(p.info.SingleNode),
		"blocked_min_ms":  strconv.FormatInt(p.prm.blockedMin.Milliseconds(), 10),
		"lock_timeout_ms": strconv.FormatInt(p.prm.lockTimeout.Milliseconds(), 10),
		"op_timeout_ms":   strconv.FormatInt(p.t.OpTimeout.Milliseconds(), 10),
		"inject":          p.prm.describe(), "injected": strconv.FormatInt(p.injectedCount(), 10),
	}})
	rec := history.Op{Value: history.Int(recEnd.Sub(recStart).Milliseconds()), Attrs: map[string]string{
		"start": strconv.FormatInt(h.Since(recStart), 10), "end": strconv.FormatInt(h.Since(recEnd), 10)}}
	if recErr != nil {
		rec.Error = recorder.ErrorKind(recErr)
	}
	if drainErr != nil {
		rec.Attrs["drain"] = recorder.ErrorKind(drainErr)
	}
	res("bank-recover", rec)
	// In doubt: still prepared when the final Recover started, or prepared
	// longer than a live coordinator holds a transaction (prepare answer to
	// decision and commit: two calls of op-timeout), or than the recovery
	// cron's minimum age when it runs.
	bound := 2 * p.t.OpTimeout
	if p.prm.recoverEvery > 0 && p.prm.minAge > 0 {
		bound = min(bound, p.prm.minAge)
	}
	for _, d := range p.mon.inDoubt(bound) {
		attrs := map[string]string{"node": strconv.Itoa(d.node), "transfer": transferOfGID(d.gid),
			"prepared": strconv.FormatInt(h.Since(d.prepared), 10), "by": d.by}
		if !d.gone.IsZero() {
			attrs["resolved"] = strconv.FormatInt(h.Since(d.gone), 10)
		}
		res("in-doubt", history.Op{Key: txn.NodeName(d.node), Token: d.gid, Value: history.Int(d.duration().Milliseconds()), Attrs: attrs})
	}
	for _, op := range SnapshotOps(snap) {
		res(op.F, op)
	}
	return errors.Join(errs...)
}

// budget bounds a step of Finish by a share of what is left of ctx's
// deadline (30s without one), so that the snapshot always gets its turn.
func budget(ctx context.Context, share float64) (context.Context, context.CancelFunc) {
	d := 30 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		d = time.Duration(float64(time.Until(dl)) * share)
	}
	return context.WithTimeout(ctx, d)
}

// drainOutbox waits (polling every 50ms, bounded by ctx) until the
// running outbox service has handled every committed message (as many
// distinct messages in the inboxes as rows in the outboxes) and
// acknowledged it (no pending entry in the consumer group), so that closing
// its consumer cannot make the next one re-apply a credit. It reads
// counts directly, never through a fault, and costs the service little.
func (p *bankSession) drainOutbox(ctx context.Context) error {
	rn, ok := p.t.Env.Node("redis-1")
	if !ok {
		return nil
	}
	rc := newRedis(rn.DirectAddr(), rn.Password(), 2*time.Second, 1)
	defer rc.Close()
	var conns []*pgx.Conn
	defer func() {
		for _, c := range conns {
			c.Close(context.Background())
		}
	}()
	for i := range 2 {
		n, ok := p.t.Env.Node(fmt.Sprintf("pg-%d", i+1))
		if !ok {
			return fmt.Errorf("no node pg-%d", i+1)
		}
		c, err := pgx.Connect(ctx, n.DirectDSN())
		if err != nil {
			return fmt.Errorf("connect %s: %w", n.Name(), err)
		}
		conns = append(conns, c)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var left int64
	var lastErr error
	for {
		var committed, handled int64
		lastErr = nil
		for _, c := range conns {
			var o, in int64
			if err := c.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox), (SELECT count(DISTINCT msg_id) FROM inbox)`).Scan(&o, &in); err != nil {
				lastErr = err
			}
			committed, handled = committed+o, handled+in
		}
		pend, err := rc.XPending(ctx, txn.OutboxStream, txn.OutboxGroup).Result()
		if err != nil {
			lastErr = err
		}
		if lastErr == nil && handled >= committed && pend.Count == 0 {
			return nil
		}
		left = committed - handled
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d messages not yet applied (last error %v): %w", left, lastErr, ctx.Err())
		case <-tick.C:
		}
	}
}

func (p *bankSession) Close() error {
	p.stopBackground()
	var errs []error
	if p.shared != nil {
		errs = append(errs, p.shared.Close())
		p.shared = nil
	}
	p.readers.close()
	p.mon.close()
	return errors.Join(errs...)
}

// transferOfGID is the transfer id inside a gid (fl:2pc:<id>).
func transferOfGID(gid string) string { return gid[strings.LastIndex(gid, ":")+1:] }

// bankClient is one coordinator process.
type bankClient struct {
	p       *bankSession
	tr      txn.Transferer
	own     bool // tr is this process's (not the shared outbox service)
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
		if p.prm.crashAt == txn.CrashBeforeRollback || p.prm.crashAt == txn.CrashAfterRollback {
			t.Amount = 1 << 40 // more than any balance: the debit votes no, the abort path runs
		}
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
	if p.isChosen(t) && p.prm.crashAt != "" && !crashed && typ == history.Fail && p.prm.every == 0 && p.prm.prob == 0 {
		// Aborted before reaching the crash point: no crash happened, so
		// the fault moves to the next transfer (still exactly one crash).
		p.injected.Add(-1)
		p.rearm.Store(true)
	}
	return StepResult{Type: typ, Err: kind, Crashed: crashed}
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

// bankReaders are concurrent reader processes: each read sums every
// account (balance + frozen, the owner's money) of each node in one
// statement per node — a consistent snapshot of that node — and counts
// negative amounts. The two nodes are read concurrently, not atomically:
// no protocol here gives a global snapshot, so a cross-node total that
// differs from the initial total is money in flight (measured), not a
// violation. Checked: no reader ever sees a negative amount, and where
// every transfer stays within one node (single-db) each node's sum is
// constant. Readers wake once per read-every transfers, so they run only
// while the load runs and in proportion to it.
type bankReaders struct {
	p     *bankSession
	nudge chan struct{}
	pools []*pgxpool.Pool
	once  sync.Once
	wg    sync.WaitGroup
	stop  chan struct{}
	mu    sync.Mutex
	done  bool
}

func (r *bankReaders) open(ctx context.Context, ep txn.Endpoints) error {
	for _, e := range ep.Participants {
		cfg, err := pgxpool.ParseConfig(e.DSN)
		if err != nil {
			return fmt.Errorf("bank readers: bad DSN of %s: %w", e.Name, err)
		}
		cfg.MaxConns = int32(max(r.p.prm.readers, 1))
		cfg.ConnConfig.ConnectTimeout = r.p.t.OpTimeout
		cfg.ConnConfig.RuntimeParams["application_name"] = "faultline-bank-reader"
		pl, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return fmt.Errorf("bank readers: pool on %s: %w", e.Name, err)
		}
		r.pools = append(r.pools, pl)
	}
	r.stop = make(chan struct{})
	return nil
}

// start launches the readers once, with recorders of w's Stats.
func (r *bankReaders) start(w *recorder.Worker) {
	if len(r.pools) == 0 {
		return
	}
	r.once.Do(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.done {
			return
		}
		for i := range r.p.prm.readers {
			rw := w.Sibling(ReaderProcess0 + i)
			r.wg.Add(1)
			go r.loop(rw)
		}
	})
}

func (r *bankReaders) poke() {
	select {
	case r.nudge <- struct{}{}:
	default: // every reader is busy: skip this one
	}
}

func (r *bankReaders) loop(w *recorder.Worker) {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case <-r.nudge:
		}
		r.read(w)
	}
}

func (r *bankReaders) read(w *recorder.Worker) {
	call := w.Invoke(bkRead, history.Op{F: "read", Key: "bank"})
	ctx, cancel := context.WithTimeout(context.Background(), r.p.t.OpTimeout)
	defer cancel()
	sums := make([]int64, len(r.pools))
	negs := make([]int64, len(r.pools))
	errs := make([]error, len(r.pools))
	var wg sync.WaitGroup
	for i, pl := range r.pools {
		wg.Go(func() {
			errs[i] = pl.QueryRow(ctx, `SELECT coalesce(sum(balance + frozen), 0)::bigint,
				count(*) FILTER (WHERE balance < 0 OR frozen < 0 OR pending < 0) FROM accounts`).Scan(&sums[i], &negs[i])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		w.Complete(call, history.Info, history.Op{Error: recorder.ErrorKind(err)})
		return
	}
	attrs := map[string]string{}
	var total, neg int64
	for i := range sums {
		attrs[txn.NodeName(i)] = strconv.FormatInt(sums[i], 10)
		total += sums[i]
		neg += negs[i]
	}
	attrs["negative"] = strconv.FormatInt(neg, 10)
	w.Complete(call, history.OK, history.Op{Value: history.Int(total), Attrs: attrs})
}

func (r *bankReaders) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return
	}
	r.done = true
	if r.stop != nil {
		close(r.stop)
	}
	r.wg.Wait()
}

func (r *bankReaders) close() {
	r.stopAll()
	for _, pl := range r.pools {
		pl.Close()
	}
	r.pools = nil
}

// inDoubtMonitor polls pg_prepared_xacts on every participant (directly,
// never through a fault) to measure how long each prepared transaction
// stays in doubt: from its PREPARE (the server's own timestamp) until it
// is first seen gone. A transaction still prepared when the final Recover
// starts, or prepared longer than a bound no live coordinator reaches, is
// in doubt.
type inDoubtMonitor struct {
	env      Env
	nodes    int
	interval time.Duration

	mu    sync.Mutex
	conns []*pgx.Conn
	seen  map[string]*prepSeen // node/gid

	stop, done chan struct{}
	stopOnce   sync.Once
	started    bool
}

type prepSeen struct {
	node     int
	gid      string
	prepared time.Time // local estimate: poll time − age
	gone     time.Time // first poll that did not see it (zero: still there)
	open     bool      // still prepared when the final Recover started
	by       string
}

func (d prepSeen) duration() time.Duration {
	if d.gone.IsZero() {
		return time.Since(d.prepared)
	}
	return d.gone.Sub(d.prepared)
}

func newInDoubtMonitor(env Env, nodes int, interval time.Duration) *inDoubtMonitor {
	return &inDoubtMonitor{env: env, nodes: nodes, interval: interval, conns: make([]*pgx.Conn, nodes),
		seen: map[string]*prepSeen{}, stop: make(chan struct{}), done: make(chan struct{})}
}

func (m *inDoubtMonitor) start() {
	m.started = true
	go func() {
		defer close(m.done)
		tick := time.NewTicker(m.interval)
		defer tick.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), max(m.interval, 500*time.Millisecond))
			m.poll(ctx)
			cancel()
		}
	}()
}

func (m *inDoubtMonitor) stopLoop() {
	m.stopOnce.Do(func() { close(m.stop) })
	if m.started {
		<-m.done
	}
}

// poll reads every node's prepared transactions once.
func (m *inDoubtMonitor) poll(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for node := range m.nodes {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		rows, err := m.query(qctx, node)
		cancel()
		if err != nil {
			continue // node down: nothing known
		}
		present := map[string]bool{}
		for _, r := range rows {
			k := strconv.Itoa(node) + "/" + r.gid
			present[k] = true
			if _, ok := m.seen[k]; !ok {
				m.seen[k] = &prepSeen{node: node, gid: r.gid, prepared: now.Add(-time.Duration(r.age * float64(time.Millisecond)))}
			}
		}
		for k, s := range m.seen {
			if s.node == node && !present[k] && s.gone.IsZero() {
				s.gone = now
				s.by = "live"
				if s.open {
					s.by = "recover"
				}
			}
		}
	}
}

type prepRow struct {
	gid string
	age float64 // ms
}

func (m *inDoubtMonitor) query(ctx context.Context, node int) ([]prepRow, error) {
	c := m.conns[node]
	if c == nil || c.IsClosed() {
		n, ok := m.env.Node(fmt.Sprintf("pg-%d", node+1))
		if !ok {
			return nil, errors.New("no such node")
		}
		cfg, err := pgx.ParseConfig(n.DirectDSN())
		if err != nil {
			return nil, err
		}
		cfg.ConnectTimeout = time.Second
		if c, err = pgx.ConnectConfig(ctx, cfg); err != nil {
			return nil, err
		}
		m.conns[node] = c
	}
	rows, _ := c.Query(ctx, `SELECT gid, extract(epoch FROM now() - prepared)::float8 * 1000 FROM pg_prepared_xacts
		WHERE database = current_database() AND left(gid, length($1)) = $1`, txn.GIDPrefix)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (prepRow, error) {
		var x prepRow
		return x, r.Scan(&x.gid, &x.age)
	})
	if err != nil {
		c.Close(context.Background())
		m.conns[node] = nil
	}
	return out, err
}

// markOpen marks every transaction still prepared: the final Recover
// resolves it.
func (m *inDoubtMonitor) markOpen() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.seen {
		if s.gone.IsZero() {
			s.open = true
		}
	}
}

// inDoubt returns the transactions that were in doubt: open at the final
// Recover, or prepared at least bound; by prepare time.
func (m *inDoubtMonitor) inDoubt(bound time.Duration) []prepSeen {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []prepSeen
	for _, s := range m.seen {
		if s.open || s.duration() >= bound {
			d := *s
			if d.gone.IsZero() {
				d.by = "never"
			}
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].prepared.Before(out[j].prepared) })
	return out
}

func (m *inDoubtMonitor) close() {
	m.stopLoop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, c := range m.conns {
		if c != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c.Close(ctx)
			cancel()
			m.conns[i] = nil
		}
	}
}
