package workload

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/infra"
	"github.com/faultline-dev/faultline/internal/clock"
	"github.com/faultline-dev/faultline/internal/option"
)

// Operation kinds of the lock workloads; the index is the recorder's kind
// id. The history F of acquire/read/write/release is the kind's name.
const (
	kCycle = iota
	kAcquire
	kRead
	kWrite
	kRelease
)

var lockKinds = []string{"cycle", "acquire", "read", "write", "release"}

// errFenced is a write the resource rejected for its stale fencing token.
var errFenced = errors.New("write rejected: stale fencing token")

// resource is the protected counter store of a lock workload: the oracle.
type resource interface {
	// reset empties the store and sets every key's counter to 0.
	reset(ctx context.Context, keys []string) error
	// read returns key's counter; fence registers the reader's fencing
	// token where the store fences (0 = none).
	read(ctx context.Context, key string, fence uint64) (int64, error)
	// write sets key to w.new unless fenced (errFenced), appending the
	// write to the store's own log.
	write(ctx context.Context, key string, w logEntry) error
	// dump returns the log in apply order and every key's final counter.
	dump(ctx context.Context, keys []string) ([]logEntry, map[string]int64, error)
	close()
}

// logEntry is one applied write in the resource's log.
type logEntry struct {
	Seq      int64  `json:"seq,string"`
	Key      string `json:"key"`
	Process  int    `json:"process,string"`
	Token    string `json:"token"`
	Fence    uint64 `json:"fence,string"`
	Expected int64  `json:"expected,string"`
	Current  int64  `json:"current,string"`
	New      int64  `json:"new,string"`
}

// lockWorkload is a counter protected by a lock, with its resource on a
// node of its own.
type lockWorkload struct {
	name, doc string
	node      infra.NodeSpec
	fences    bool // the resource rejects stale fencing tokens
	open      func(ctx context.Context, n infra.Node, direct bool, t Target) (resource, error)
}

// lockOptions are the lock workloads' settings (--opt k=v).
var lockOptions = option.Set{
	{Name: "hold", Kind: option.Duration, Max: float64(time.Hour), Default: "0s",
		Doc: "how long a holder works inside its critical section, between its read and its write (0 = at once): real jobs hold a lock for seconds, and a lock lost in a failover shows only while someone still holds it"},
	{Name: "failover-holder", Kind: option.Bool, Default: "true",
		Doc: "a lossy failover keeps the first holder granted inside its window (on a key nobody held when the link was cut) working across it, until another client wrote that key or just before its lease expires: false turns that off"},
}

// Options are the lock workloads' own options (--opt k=v).
func (*lockWorkload) Options() option.Set { return lockOptions }

func (w *lockWorkload) Name() string    { return w.name }
func (w *lockWorkload) Doc() string     { return w.doc }
func (w *lockWorkload) Kinds() []string { return lockKinds }

func (w *lockWorkload) Impls() []ImplInfo {
	var out []ImplInfo
	for _, i := range lock.All() {
		opts := append(append(option.Set{}, lock.CommonOptions...), i.Options...)
		out = append(out, ImplInfo{Name: i.Name, Doc: i.Doc, Mutant: i.Mutant, Options: opts})
	}
	return out
}

func (w *lockWorkload) Nodes(impls []string) ([]infra.NodeSpec, error) {
	if len(impls) == 0 {
		return nil, fmt.Errorf("workload %s: no implementation given (known: %s)", w.name, strings.Join(ImplNames(w), ", "))
	}
	var r, p int
	for _, name := range impls {
		info, err := lock.Lookup(name)
		if err != nil {
			return nil, err
		}
		if info.Topology != "" {
			return nil, checkOn(info, infra.TopologyNone)
		}
		r, p = max(r, info.RedisNodes), max(p, info.PostgresNodes)
	}
	return append(infra.Nodes(r, p), w.node), nil
}

// NodesFor is the lock's own nodes (lock.Info; the topology's for an
// implementation that needs one) and the resource node.
func (w *lockWorkload) NodesFor(impl string) (PhaseNodes, error) {
	info, err := lock.Lookup(impl)
	if err != nil {
		return PhaseNodes{}, err
	}
	if info.Topology != "" {
		return w.NodesForOn(impl, infra.Topology(info.Topology))
	}
	return PhaseNodes{Impl: specNames(infra.Nodes(info.RedisNodes, info.PostgresNodes)), Resource: []string{w.node.Name}}, nil
}

// ImplNames lists the implementations w can drive.
func ImplNames(w Workload) []string {
	var out []string
	for _, i := range w.Impls() {
		out = append(out, i.Name)
	}
	return out
}

// Keys returns the lock/counter key names of a run with n keys.
func Keys(n int) []string {
	out := make([]string, max(n, 1))
	for i := range out {
		out[i] = "k" + strconv.Itoa(i)
	}
	return out
}

func (w *lockWorkload) Start(ctx context.Context, t Target) (Session, error) {
	info, err := lock.Lookup(t.Impl)
	if err != nil {
		return nil, err
	}
	if err := lockOptions.Check("workload "+w.name, t.Opts); err != nil {
		return nil, err
	}
	var hold time.Duration
	if v, ok := t.Opts["hold"]; ok {
		if hold, err = time.ParseDuration(strings.TrimSpace(v)); err != nil {
			return nil, fmt.Errorf("workload %s: hold %q: %w", w.name, v, err)
		}
	}
	keepHolder := true
	if v, ok := t.Opts["failover-holder"]; ok {
		if keepHolder, err = strconv.ParseBool(strings.TrimSpace(v)); err != nil {
			return nil, fmt.Errorf("workload %s: failover-holder %q: %w", w.name, v, err)
		}
	}
	ep, err := endpoints(t, info)
	if err != nil {
		return nil, err
	}
	if te, topo := envTopology(t.Env); topo != infra.TopologyNone {
		err = flushPrimary(ctx, te)
	} else {
		err = flushRedis(ctx, t, info.RedisNodes)
	}
	if err != nil {
		return nil, err
	}
	n, ok := t.Env.Node(w.node.Name)
	if !ok {
		return nil, fmt.Errorf("workload %s: the environment has no %q node (start it with the workload's Nodes)", w.name, w.node.Name)
	}
	res, err := w.open(ctx, n, t.Direct, t)
	if err != nil {
		return nil, err
	}
	if t.Faults == nil {
		t.Faults = NewFaults()
	}
	keys := Keys(t.Keys)
	for i := range keys {
		keys[i] = t.KeyPrefix + keys[i]
	}
	t.Faults.keyPrefix = t.KeyPrefix
	t.Faults.noKeep = !keepHolder
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := res.reset(rctx, keys); err != nil {
		res.close()
		return nil, fmt.Errorf("workload %s: reset resource on %s: %w", w.name, w.node.Name, err)
	}
	return &lockSession{t: t, info: info, ep: ep, res: res, keys: keys, hold: hold}, nil
}

// endpoints are the implementation's servers: redis-1..N and pg-1..M.
func endpoints(t Target, info lock.Info) (lock.Endpoints, error) {
	if te, topo := envTopology(t.Env); topo != infra.TopologyNone {
		return topologyEndpoints(te, info, t.Direct)
	}
	if info.Topology != "" {
		return lock.Endpoints{}, checkOn(info, infra.TopologyNone)
	}
	ep := lock.Endpoints{KeyPrefix: t.KeyPrefix}
	for _, ns := range infra.Nodes(info.RedisNodes, info.PostgresNodes) {
		n, ok := t.Env.Node(ns.Name)
		if !ok {
			return ep, fmt.Errorf("lock %s needs node %s, which the environment lacks", info.Name, ns.Name)
		}
		switch n.Kind() {
		case infra.Redis:
			addr := n.Addr()
			if t.Direct {
				addr = n.DirectAddr()
			}
			ep.Redis = append(ep.Redis, lock.RedisEndpoint{Name: n.Name(), Addr: addr, Password: n.Password()})
		case infra.Postgres:
			dsn := n.DSN()
			if t.Direct {
				dsn = n.DirectDSN()
			}
			ep.Postgres = append(ep.Postgres, lock.PostgresEndpoint{Name: n.Name(), DSN: dsn})
		}
	}
	return ep, nil
}

// flushRedis empties the implementation's Redis nodes (directly, not
// through the proxy), so no key of an earlier phase survives: FLUSHALL on
// faultline's own servers, only the keys under t.KeyPrefix on external ones.
func flushRedis(ctx context.Context, t Target, n int) error {
	for _, ns := range infra.RedisNodes(n) {
		node, ok := t.Env.Node(ns.Name)
		if !ok {
			continue
		}
		c := newRedis(node.DirectAddr(), node.Password(), 5*time.Second, 2)
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := clearRedis(fctx, c, t.KeyPrefix)
		cancel()
		c.Close()
		if err != nil {
			return fmt.Errorf("reset lock node %s: %w", ns.Name, err)
		}
	}
	return nil
}

// clearRedis removes every key under prefix; "" means the whole server
// (FLUSHALL), for servers faultline started itself.
func clearRedis(ctx context.Context, c *redis.Client, prefix string) error {
	if prefix == "" {
		if err := c.FlushAll(ctx).Err(); err != nil {
			return fmt.Errorf("FLUSHALL: %w", err)
		}
		return nil
	}
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return fmt.Errorf("SCAN %s*: %w", prefix, err)
		}
		if len(keys) > 0 {
			if err := c.Del(ctx, keys...).Err(); err != nil {
				return fmt.Errorf("DEL keys under %s: %w", prefix, err)
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// newRedis is a go-redis client that never retries (MaxRetries -1: a
// retried write breaks at-most-once) with explicit timeouts.
func newRedis(addr, password string, timeout time.Duration, pool int) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, Password: password,
		MaxRetries:  -1,
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		ContextTimeoutEnabled: true,
		PoolSize:              pool,
		PoolTimeout:           timeout,
	})
}

type lockSession struct {
	t    Target
	info lock.Info
	ep   lock.Endpoints
	res  resource
	keys []string
	hold time.Duration // a holder's work between its read and its write (--opt hold)
}

func (p *lockSession) options() lock.Options {
	opt := lock.Options{Now: p.t.Faults.Now, Params: map[string]string{}, LogDir: p.t.LogDir}
	for k, v := range p.t.Params {
		opt.Params[k] = v
		b, _ := strconv.ParseBool(v)
		switch k {
		case "reentrant":
			opt.Reentrant = b
		case "watchdog":
			opt.Watchdog = b
		}
	}
	return opt
}

func (p *lockSession) Client(ctx context.Context, process int, seed int64) (Client, error) {
	l, err := p.locker(ctx, process, fmt.Sprintf("process %d", process))
	if err != nil {
		return nil, err
	}
	return p.client(l, process, seed), nil
}

func (p *lockSession) client(l lock.Locker, process int, seed int64) *lockClient {
	return &lockClient{p: p, l: l, process: process, rng: rand.New(rand.NewPCG(uint64(seed), uint64(process)))}
}

// locker opens one implementation client for process (the first of its
// sharers).
func (p *lockSession) locker(ctx context.Context, process int, what string) (lock.Locker, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	opt := p.options()
	opt.Process = process
	l, err := p.info.New(cctx, p.ep, opt)
	if err != nil {
		return nil, fmt.Errorf("lock %s: new client for %s: %w", p.info.Name, what, err)
	}
	return l, nil
}

// SharedClients opens one Locker driven by every process of processes,
// each with its own random keys; the Locker closes with the last of them.
func (p *lockSession) SharedClients(ctx context.Context, processes []int, seed int64) ([]Client, error) {
	if len(processes) == 0 {
		return nil, nil
	}
	l, err := p.locker(ctx, processes[0], fmt.Sprintf("processes %v (shared)", processes))
	if err != nil {
		return nil, err
	}
	sl := &sharedLocker{Locker: l}
	sl.refs.Store(int32(len(processes)))
	out := make([]Client, len(processes))
	for i, proc := range processes {
		out[i] = p.client(&sharerHandle{sharedLocker: sl}, proc, seed)
	}
	return out, nil
}

// sharedLocker is a Locker several processes drive; Close of the last
// sharer closes it.
type sharedLocker struct {
	lock.Locker
	refs atomic.Int32
}

// sharerHandle is one sharer's view: its Close happens once.
type sharerHandle struct {
	*sharedLocker
	closed atomic.Bool
}

func (h *sharerHandle) Close() error {
	if h.closed.Swap(true) || h.refs.Add(-1) > 0 {
		return nil
	}
	return h.Locker.Close()
}

func (w *lockWorkload) SharesClients() bool { return true }

func (p *lockSession) Close() error {
	p.res.close()
	return nil
}

// ProbeLive probes every key with the workers' clients still open (see
// LiveProber).
func (p *lockSession) ProbeLive(ctx context.Context, h *recorder.History, probe int) error {
	return p.probeAll(ctx, h, probe, "live")
}

// probeAll has a fresh process TryAcquire (and release) every key once,
// its entries marked Attrs {"probe": label}.
func (p *lockSession) probeAll(ctx context.Context, h *recorder.History, probe int, label string) error {
	w := recorder.NewStats(h, lockKinds, time.Now().Add(24*time.Hour)).Worker(probe, p.t.Impl)
	c, err := p.Client(ctx, probe, 0)
	if err != nil {
		return fmt.Errorf("%s probe client: %w", label, err)
	}
	defer c.Close()
	lc := c.(*lockClient)
	// Warm the fresh client's connections first (one unlogged acquire and
	// release of another key): a cold dial must not race a per-node timeout
	// (redsync's is 0.05×ttl), or a probe that timed out would read as a key
	// still held.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if l, err := lc.l.Acquire(wctx, "faultline-probe-warmup", p.t.TTL); err == nil {
		_ = lc.l.Release(wctx, l)
	}
	cancel()
	for _, k := range p.keys {
		lc.probe(ctx, w, k, label)
	}
	return nil
}

// Finish probes every key (can a fresh process take it now?) and appends
// the resource's log and final counters to the history.
func (p *lockSession) Finish(ctx context.Context, h *recorder.History, probe int) error {
	var errs []error
	if probe >= 0 {
		if err := p.probeAll(ctx, h, probe, "final"); err != nil {
			errs = append(errs, err)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	log, finals, err := p.res.dump(dctx, p.keys)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("dump resource: %w", err))...)
	}
	for _, e := range log {
		h.LogPaced(history.Op{
			Type: history.OK, Process: history.Resource, Impl: p.t.Impl, F: "resource-write",
			Key: e.Key, Value: history.Int(e.New), Token: e.Token, Fence: e.Fence,
			Attrs: map[string]string{
				"seq":      strconv.FormatInt(e.Seq, 10),
				"expected": strconv.FormatInt(e.Expected, 10),
				"current":  strconv.FormatInt(e.Current, 10),
				"writer":   strconv.Itoa(e.Process),
			},
		})
	}
	for _, k := range p.keys {
		h.Log(history.Op{Type: history.OK, Process: history.Resource, Impl: p.t.Impl, F: "final", Key: k, Value: history.Int(finals[k])})
	}
	return errors.Join(errs...)
}

// lockClient is one process: its own lock client, its own random keys.
type lockClient struct {
	p       *lockSession
	l       lock.Locker
	process int
	rng     *rand.Rand
}

func (c *lockClient) Close() error { return c.l.Close() }

// call gives one operation its deadline.
func (c *lockClient) call(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// Step is one cycle: acquire a random key, read the counter, write it +1,
// release — each logged with the COMMON.md lock vocabulary. Client faults
// strike between the read and the write.
func (c *lockClient) Step(ctx context.Context, w *recorder.Worker) StepResult {
	t := c.p.t
	key := c.p.keys[c.rng.IntN(len(c.p.keys))]
	if k := t.Faults.steerKey(); k != "" { // a failover's kept holder waits for a contender
		key = k
	}
	osp, real := lock.ProcessOf(c.l)
	// A holder crash armed for this key, on an implementation with a
	// process of its own: its next acquire asks the process to die at its
	// own crash point inside the operation (e.g. between SETNX and EXPIRE).
	cr, inOp := c.l.(lock.InOpCrasher)
	inOp = inOp && cr.CrashesInAcquire()
	var reserved *faultReq
	if inOp {
		if reserved = t.Faults.reserve(crashHolder, key); reserved != nil {
			cr.CrashInNextAcquire()
		}
	}
	t.Faults.waitOpen(ctx)                                  // a keep's link being cut: hold this acquire
	epoch, invoked := t.Faults.keepEpoch.Load(), time.Now() // a failover's holder keep (KeepHolder)
	lease, out, _ := c.acquire(ctx, w, key, t.AcquireTimeout, false, nil)
	if reserved != nil {
		if out.Crashed {
			t.Faults.takeReserved(reserved, chaos.Holder{Process: c.process, Key: key, OSPid: osp.Pid()})
		} else {
			t.Faults.unreserve(reserved) // not acquired, or no crash: the next acquire tries again
		}
	}
	if out.Type != history.OK {
		return out
	}
	holder := chaos.Holder{Process: c.process, Key: key, Token: lease.Token, Fence: lease.Fence}
	if real {
		holder.OSPid = osp.Pid()
	}
	v, out, _ := c.read(ctx, w, lease)
	if out.Type == history.OK {
		crash := false
		if !inOp { // an adapter with a crash point inside acquire was crashed there (above)
			_, crash = t.Faults.take(crashHolder, holder)
		}
		if crash {
			if real { // a process of its own: SIGKILL it for real
				_ = osp.Kill()
			}
			return StepResult{Type: history.Info, Err: "crashed", Crashed: true}
		}
		if d, pause := t.Faults.take(pauseHolder, holder); pause {
			if err := c.pause(ctx, osp, d); err != nil {
				return StepResult{Type: history.Info, Err: "canceled"} // hard stop: the lease expires by itself
			}
		}
		if k := t.Faults.takeKeep(holder, epoch); k != nil {
			// Kept working across a failover (chaos.HolderKeeper).
			if _, err := k.wait(ctx, invoked, t.TTL); err != nil {
				return StepResult{Type: history.Info, Err: "canceled"}
			}
		} else if c.p.hold > 0 { // the holder's work (--opt hold)
			if err := clock.Sleep(ctx, c.p.hold); err != nil {
				return StepResult{Type: history.Info, Err: "canceled"}
			}
		}
		out = c.write(ctx, w, holder, v)
		if out.Type == history.OK {
			t.Faults.noteWrite(key, c.process)
		}
	}
	t.Faults.noteRelease(key, epoch)
	if rel, _ := c.release(ctx, w, lease, nil); out.Type == history.OK {
		out = rel
	}
	return out
}

// pause is a holder pause of d: the worker waits, and an implementation
// with a process of its own (osp non-nil) is stopped for real (SIGSTOP,
// SIGCONT after d), so nothing inside it — a watchdog thread, a timer —
// runs meanwhile.
func (c *lockClient) pause(ctx context.Context, osp lock.OSProcess, d time.Duration) error {
	if osp != nil {
		if err := osp.Stop(); err == nil {
			defer func() { _ = osp.Continue() }()
		}
	}
	return clock.Sleep(ctx, d)
}

// outcome classifies a lock call's error: nil is ok, definite is a Fail
// ("no effect") with errKind, a simulated crash kills the process, anything
// else is indeterminate.
func outcome(err, definite error, errKind string) StepResult {
	switch {
	case err == nil:
		return StepResult{Type: history.OK}
	case errors.Is(err, lock.ErrSimulatedCrash):
		return StepResult{Type: history.Info, Err: "crashed", Crashed: true}
	case errors.As(err, new(*lock.ProcessError)):
		// The implementation's process died, missed a deadline or broke the
		// protocol: unknown outcome, and the worker goes on as a new process.
		var pe *lock.ProcessError
		errors.As(err, &pe)
		return StepResult{Type: history.Info, Err: pe.Kind, Crashed: true}
	case errors.Is(err, definite):
		return StepResult{Type: history.Fail, Err: errKind}
	}
	return StepResult{Type: history.Info, Err: recorder.ErrorKind(err)}
}

// acquire logs and runs one acquire of key bounded by timeout (TryAcquire
// when try); attrs mark the entries (e.g. probes).
func (c *lockClient) acquire(ctx context.Context, w *recorder.Worker, key string, timeout time.Duration, try bool,
	attrs map[string]string) (lock.Lease, StepResult, error) {
	call := w.Invoke(kAcquire, history.Op{F: "acquire", Key: key, Attrs: attrs})
	actx, cancel := c.call(ctx, timeout)
	get := c.l.Acquire
	if try {
		get = c.l.TryAcquire
	}
	lease, err := get(actx, key, c.p.t.TTL)
	cancel()
	out := outcome(err, lock.ErrNotAcquired, "not-acquired")
	done := attrs
	if out.Type != history.OK {
		// What the availability checker needs to judge a failed acquire.
		done = map[string]string{checker.AttrTimeoutMs: strconv.FormatInt(timeout.Milliseconds(), 10)}
		if try {
			done[checker.AttrTry] = "true"
		}
		maps.Copy(done, attrs)
	}
	w.Complete(call, out.Type, history.Op{Token: lease.Token, Fence: lease.Fence, Error: out.Err, Attrs: done})
	return lease, out, err
}

// read logs and runs the critical section's read of l.Key (registering
// l's fence where the resource fences). A failed read is indeterminate.
func (c *lockClient) read(ctx context.Context, w *recorder.Worker, l lock.Lease) (int64, StepResult, error) {
	call := w.Invoke(kRead, history.Op{F: "read", Key: l.Key})
	rctx, cancel := c.call(ctx, c.p.t.OpTimeout)
	v, err := c.p.res.read(rctx, l.Key, l.Fence)
	cancel()
	if err != nil {
		out := StepResult{Type: history.Info, Err: recorder.ErrorKind(err)}
		w.Complete(call, history.Info, history.Op{Error: out.Err})
		return 0, out, err
	}
	w.Complete(call, history.OK, history.Op{Value: history.Int(v)})
	return v, StepResult{Type: history.OK}, nil
}

// write is the critical section's write of v+1, possibly held back by a
// delayed-write fault after its invocation is logged.
func (c *lockClient) write(ctx context.Context, w *recorder.Worker, h chaos.Holder, v int64) StepResult {
	call := w.Invoke(kWrite, history.Op{F: "write", Key: h.Key, Value: history.Int(v + 1), Token: h.Token, Fence: h.Fence})
	if d, delay := c.p.t.Faults.take(delayWrite, h); delay {
		if err := clock.Sleep(ctx, d); err != nil {
			w.Complete(call, history.Info, history.Op{Error: "canceled"}) // never sent
			return StepResult{Type: history.Info, Err: "canceled"}
		}
	}
	wctx, cancel := c.call(ctx, c.p.t.OpTimeout)
	err := c.p.res.write(wctx, h.Key, logEntry{Process: c.process, Token: h.Token, Fence: h.Fence, Expected: v, New: v + 1})
	cancel()
	out := outcome(err, errFenced, "fenced")
	w.Complete(call, out.Type, history.Op{Token: h.Token, Fence: h.Fence, Error: out.Err})
	return out
}

// release logs and runs the release of l.
func (c *lockClient) release(ctx context.Context, w *recorder.Worker, l lock.Lease, attrs map[string]string) (StepResult, error) {
	call := w.Invoke(kRelease, history.Op{F: "release", Key: l.Key, Token: l.Token, Attrs: attrs})
	rctx, cancel := c.call(ctx, c.p.t.OpTimeout)
	err := c.l.Release(rctx, l)
	cancel()
	out := outcome(err, lock.ErrNotHeld, "not-held")
	w.Complete(call, out.Type, history.Op{Token: l.Token, Error: out.Err, Attrs: attrs})
	return out, err
}

// probe tries key once with TryAcquire (and releases it): after the quiet
// period every key must be free, else a lock leaked. Probe entries carry
// attrs {"probe": label} (final, or live before the workers' clients close).
//
// A probe whose outcome is unknown (timed out: a loaded machine, a slow
// node) is tried once more after one ttl, when whatever that attempt may
// have taken has expired; the checker judges a key by its last probe.
func (c *lockClient) probe(ctx context.Context, w *recorder.Worker, key, label string) {
	attrs := map[string]string{"probe": label}
	lease, out, _ := c.acquire(ctx, w, key, c.p.t.OpTimeout, true, attrs)
	if out.Type == history.Info {
		if clock.Sleep(ctx, c.p.t.TTL) != nil {
			return
		}
		lease, out, _ = c.acquire(ctx, w, key, c.p.t.OpTimeout, true, attrs)
	}
	if out.Type == history.OK {
		c.release(ctx, w, lease, attrs)
	}
}

// sortLog orders log entries by the resource's apply order.
func sortLog(log []logEntry) {
	sort.Slice(log, func(i, j int) bool { return log[i].Seq < log[j].Seq })
}
