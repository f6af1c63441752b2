package lock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faultline-dev/faultline/internal/blockconn"
)

// redlock is our own Redlock over 5 independent Redis masters: SET NX PX on
// every node in parallel (one command per node, each bounded by a per-node
// timeout), held when a quorum N/2+1 answered yes and the validity ttl −
// elapsed − drift (drift = ttl·1% + 2ms, elapsed from the start of the
// attempt) is still positive. It answers as soon as the outcome is decided —
// a quorum said yes, or too many said no for a quorum — while the remaining
// nodes complete in the background. A failed attempt deletes its token only
// where it may have landed (nodes that said yes or did not answer); a "no"
// needs no clean-up. Release deletes the token from every node and answers
// once a quorum of nodes replied, the rest again in the background. Each
// node is one pipelined connection (rnode): the caller writes its command
// to the socket itself and the connection's reader hands the reply back,
// so a command costs one write and one read, with no pool and no hand-off,
// and commands reach a node in the order this Locker sent them (a release
// never overtakes the acquire it undoes, even when that node answered after
// the quorum was reached). The connections' readers tally a round's
// replies themselves and wake the waiting caller once, when the round is
// decided, not at every reply; the release and refresh scripts go by hash
// (EVALSHA, in full once on a node that answers NOSCRIPT). Acquire retries
// with random back-off, and a
// retry asks the key's designated node (a hash of the key picks one of the
// five, passing over nodes that just failed to answer) first, fanning out to
// the other four only when it said yes (or did not answer): while the key
// is held a retry costs one command instead of five, and retrying
// contenders cannot split the nodes 2/2/1 between them, since only one can
// win that node. A failed round that won it retries after half the minimum
// back-off.
// Time is Options.Clock(). It promises one holder while clocks advance at
// about the same rate and holders finish within the validity; it breaks
// without fencing when a holder pauses past its validity, when a node's clock
// jumps, and when nodes holding the lock restart empty sooner than a ttl
// later (then another client reaches a quorum).
//
// Params: "node-timeout" (default ttl/4 clamped to 50ms..500ms),
// "retry-min", "retry-max", "dial-timeout" (1s), "write-timeout" (500ms).
func init() {
	Register(Info{
		Name:       "redlock",
		Doc:        "Redlock over 5 Redis masters (quorum 3, validity = ttl-elapsed-drift); unsafe on pauses past validity, clock jumps, fast empty restarts",
		RedisNodes: 5,
		Options:    redlockOptions,
		New:        redlockFactory("redlock", redlockConfig{quorum: func(n int) int { return n/2 + 1 }, checkValidity: true, gateContended: true}),
	})
}

// redlockConfig is what distinguishes redlock from its mutant.
type redlockConfig struct {
	quorum        func(nodes int) int
	checkValidity bool
	// gateContended: an Acquire of a key found contended asks the
	// designated node first from its first attempt on (isContended).
	gateContended bool
}

// redlockNodes is how many independent masters Redlock runs on.
const redlockNodes = 5

type redlock struct {
	name        string
	cfg         redlockConfig
	nodes       []*rnode
	all         []int   // 0..len(nodes)-1
	others      [][]int // others[i]: every node but i
	quorum      int
	clock       func() time.Time
	bo          backoff
	nodeTimeout time.Duration // 0: derived from the ttl

	downUntil []atomic.Int64               // per node: wall time (UnixNano) until which it counts as down
	contended [contendedSlots]atomic.Int64 // per slot of key hashes: wall time (UnixNano) until which its keys count as contended
	inflight  atomic.Int64                 // node commands sent, reply not yet handed over (Close waits for them)

	// polled (io=blocking): the nodes' connections have no reader
	// goroutines; a round's caller collects the replies itself (pump),
	// holding roundMu, so rounds of one Locker run one at a time.
	polled  bool
	roundMu sync.Mutex
}

func redlockFactory(name string, cfg redlockConfig) Factory {
	return func(ctx context.Context, ep Endpoints, opt Options) (Locker, error) {
		p := params(opt.Params)
		bo, err := backoffFrom(p, JitterFull)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		nt, err := p.duration("node-timeout", 0)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		dial, err := p.duration("dial-timeout", time.Second)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		write, err := p.duration("write-timeout", 500*time.Millisecond)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		var polled bool
		switch p[OptIO] {
		case "", IONetpoll:
		case IOBlocking:
			polled = true
		default:
			return nil, fmt.Errorf("lock %s: io %q: valid are %s, %s", name, p[OptIO], IONetpoll, IOBlocking)
		}
		if len(ep.Redis) != redlockNodes {
			return nil, fmt.Errorf("lock %s: needs exactly %d Redis endpoints (independent masters), got %d", name, redlockNodes, len(ep.Redis))
		}
		r := &redlock{name: name, cfg: cfg, quorum: cfg.quorum(len(ep.Redis)), clock: opt.Clock(), bo: bo, nodeTimeout: nt, polled: polled}
		for i, e := range ep.Redis {
			if e.Addr == "" {
				return nil, fmt.Errorf("lock %s: redis endpoint %q has no address: give the factory the nodes' proxied or direct host:port", name, e.Name)
			}
			r.nodes = append(r.nodes, &rnode{addr: e.Addr, password: e.Password, dialTimeout: dial, writeTimeout: write, inflight: &r.inflight, polled: polled})
			r.all = append(r.all, i)
		}
		for i := range r.nodes {
			r.others = append(r.others, append(append([]int(nil), r.all[:i]...), r.all[i+1:]...))
		}
		r.downUntil = make([]atomic.Int64, len(r.nodes))
		// Connect to every node at once; a node that does not answer now is
		// dialled again by the first command sent to it.
		var wg sync.WaitGroup
		for _, n := range r.nodes {
			wg.Go(func() {
				if c, err := n.connect(ctx); err == nil {
					n.start(c)
				}
			})
		}
		wg.Wait()
		return WithOptions(r, opt), nil
	}
}

func (r *redlock) perNode(ttl time.Duration) time.Duration {
	if r.nodeTimeout > 0 {
		return r.nodeTimeout
	}
	return min(max(ttl/4, 50*time.Millisecond), 500*time.Millisecond)
}

// drift is the clock-drift allowance of the Redlock algorithm.
func drift(ttl time.Duration) time.Duration { return ttl/100 + 2*time.Millisecond }

// errNotSent: a node command was never sent. Nothing happened.
var errNotSent = errors.New("lock: command not sent")

// Scripts sent by hash (EVALSHA, EVAL on NOSCRIPT), loaded on every new
// connection.
var (
	rsRelease = newRScript(luaRelease)
	rsRefresh = newRScript(luaRefresh)
	preloaded = []*rscript{rsRelease, rsRefresh}
)

// fanKind is what a fanout's commands are: it says how a reply reads and
// when the round is decided.
type fanKind uint8

const (
	fanAcquire fanKind = iota // SET NX PX: decided at a quorum of yes, or when one can no longer come
	fanRelease                // compare-and-delete: decided when a quorum answered and one said yes, or all answered
	fanRefresh                // compare-and-pexpire: decided when every node answered
)

// fanout is one round of commands sent to several nodes at once. The
// nodes' reader goroutines tally the replies as they arrive (handle) and
// wake the caller once, when the round is decided, instead of handing it
// every reply: the caller sleeps through the answers that decide nothing.
type fanout struct {
	r        *redlock
	kind     fanKind
	timeout  time.Duration // per node
	timer    *time.Timer   // the round's node timeout (netpoll)
	deadline time.Time     // when it passes (polled)
	wake     chan struct{} // one value when decided

	mu        sync.Mutex
	pending   [redlockNodes]bool   // sent, not answered
	conns     [redlockNodes]*rconn // the connection each command went out on
	answered  int
	yes, no   int     // definite answers
	errs      []error // node errors (not a definite "no")
	decided   bool    // the caller was woken (or is being)
	abandoned bool    // the caller read the tally: late answers change nothing (of a failed acquire: they clean up after themselves)

	// acquire only
	key, token      string
	des             int                // the key's designated node
	gate            bool               // only the designated node was asked so far
	desYes, desFail bool               // the designated node said yes; gave no answer (error)
	held            [redlockNodes]bool // nodes that may hold the token (yes, or no definite answer)
}

func (r *redlock) newFanout(kind fanKind, timeout time.Duration) *fanout {
	return &fanout{r: r, kind: kind, timeout: timeout, wake: make(chan struct{}, 1)}
}

// send sends a command to each node of nodes (args, or the script sc with
// args) with the round's node timeout, and (re)starts the round's timer.
// The caller does not hold f.mu.
func (f *fanout) send(nodes []int, sc *rscript, args ...string) {
	f.mu.Lock()
	for _, i := range nodes {
		f.pending[i] = true
	}
	f.decided = false
	f.mu.Unlock()
	deadline := time.Now().Add(f.timeout)
	switch {
	case f.r.polled:
		f.deadline = deadline
	case f.timer == nil:
		f.timer = time.NewTimer(f.timeout)
	default:
		f.timer.Reset(f.timeout)
	}
	var conns [redlockNodes]*rconn
	for _, i := range nodes {
		if sc != nil {
			conns[i] = f.r.nodes[i].sendScript(deadline, f, i, sc, args...)
		} else {
			conns[i] = f.r.nodes[i].send(deadline, f, i, args...)
		}
	}
	f.mu.Lock()
	for _, i := range nodes {
		f.conns[i] = conns[i]
	}
	f.mu.Unlock()
}

// handle tallies node i's reply (replyHandler); it wakes the caller when
// this reply decides the round.
func (f *fanout) handle(i int, rep reply, rerr error) {
	var err error
	if f.kind == fanAcquire {
		err = setNXResult(rep, rerr)
	} else {
		err = scriptResult(rep, rerr)
	}
	f.r.noteAnswer(i, err)
	f.mu.Lock()
	if f.abandoned {
		f.mu.Unlock()
		if f.kind == fanAcquire && mayHold(err) { // late answer of a failed acquire: delete it (after the SET, on the same connection)
			f.r.cleanup(i, f.key, f.token)
		}
		return
	}
	f.pending[i] = false
	f.answered++
	switch {
	case err == nil:
		f.yes++
	case errors.Is(err, ErrNotAcquired), errors.Is(err, ErrNotHeld):
		f.no++
	default:
		f.errs = append(f.errs, err)
	}
	if f.kind == fanAcquire {
		f.held[i] = mayHold(err)
		if i == f.des {
			f.desYes = err == nil
			f.desFail = err != nil && !errors.Is(err, ErrNotAcquired)
		}
	}
	if !f.decided && f.isDecided() {
		f.decided = true
		f.wake <- struct{}{}
	}
	f.mu.Unlock()
}

// isDecided: the round's outcome no longer depends on the pending nodes.
// f.mu is held.
func (f *fanout) isDecided() bool {
	n, q := len(f.r.nodes), f.r.quorum
	switch f.kind {
	case fanAcquire:
		if f.gate {
			return !f.pending[f.des]
		}
		// A pending node that just failed to answer (down, stopped, cut
		// off) is not waited for (should it say yes after all, it is
		// deleted: handle, abandoned).
		now, hopeful := time.Now().UnixNano(), 0
		for i, p := range f.pending {
			if p && f.r.downUntil[i].Load() <= now {
				hopeful++
			}
		}
		return f.yes >= q || f.yes+hopeful < q
	case fanRelease:
		return f.answered == n || f.yes > 0 && f.answered >= q
	}
	return f.answered == n
}

// wait waits until the round is decided (true) or ctx ends (false). Nodes
// past the node timeout have their connection closed, which makes them
// answer with an error.
func (f *fanout) wait(ctx context.Context) bool {
	if f.r.polled {
		return f.pump(ctx)
	}
	for {
		select {
		case <-f.wake:
			return true
		case <-f.timer.C:
			f.expireLate()
		case <-ctx.Done():
			return false
		}
	}
}

// expireLate closes the connections of the nodes that have not answered
// by the node timeout: their commands fail, which decides the round.
func (f *fanout) expireLate() {
	f.mu.Lock()
	var late [redlockNodes]*rconn
	for i, p := range f.pending {
		if p {
			late[i] = f.conns[i]
		}
	}
	f.mu.Unlock()
	for i, c := range late {
		if c != nil {
			f.r.nodes[i].expire(c, fmt.Errorf("no reply within the node timeout %v", f.timeout))
		}
	}
}

// pump is wait for a polled Locker: the caller collects the replies
// itself. It waits on the sockets of every node owing a reply (this
// round's, or an earlier round's still owed on that connection, which is
// read first and goes to that round's handler) with one ppoll
// (blockconn.PollRead), reads the ready ones (rnode.readReady: the
// handlers tally as the reader goroutines would) and stops as soon as the
// round is decided, at its deadline (the connections of the nodes still
// pending are closed: their commands fail, so the round is decided), or
// when ctx ends (its deadline bounds every wait; a ctx cancelled without
// a deadline is noticed when a reply comes or at the round's deadline).
// Replies not needed for the decision stay in their sockets until the next
// round on that node (or Close) reads them: no goroutine is woken for
// them. The caller holds r.roundMu.
func (f *fanout) pump(ctx context.Context) bool {
	r := f.r
	var conns [redlockNodes]*blockconn.Conn
	var rcs [redlockNodes]*rconn
	var idx [redlockNodes]int
	var ready [redlockNodes]bool
	expired := false
	for {
		select {
		case <-f.wake:
			return true
		default:
		}
		if ctx.Err() != nil {
			return false
		}
		now := time.Now()
		if !now.Before(f.deadline) {
			if expired { // every pending node was failed: decided (see isDecided)
				return true
			}
			expired = true
			f.expireLate()
			continue
		}
		until := f.deadline
		if dl, ok := ctx.Deadline(); ok && dl.Before(until) {
			until = dl
		}
		k := 0
		for i, n := range r.nodes {
			if c := n.owed(); c != nil {
				conns[k], rcs[k], idx[k] = c.bc, c, i
				k++
			}
		}
		if k == 0 {
			// Nothing to read on a polled connection, yet undecided: the
			// pending commands are on a connection with a reader goroutine
			// (a platform without blocking sockets); wait for its wake-up.
			t := time.NewTimer(until.Sub(now))
			select {
			case <-f.wake:
				t.Stop()
				return true
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return false
			}
			continue
		}
		if err := blockconn.PollRead(conns[:k], ready[:k], until.Sub(now)); err != nil {
			for j := range k { // cannot wait on them: fail them
				r.nodes[idx[j]].expire(rcs[j], err)
			}
			continue
		}
		for j := range k {
			if ready[j] {
				r.nodes[idx[j]].readReady(rcs[j], f.deadline)
			}
		}
	}
}

// lockRound and unlockRound bracket a round of a polled Locker (its
// caller reads the connections: one round at a time).
func (r *redlock) lockRound() {
	if r.polled {
		r.roundMu.Lock()
	}
}

func (r *redlock) unlockRound() {
	if r.polled {
		r.roundMu.Unlock()
	}
}

func (f *fanout) stop() {
	if f.timer != nil {
		f.timer.Stop()
	}
}

// cleanup deletes token from node i in the background (after the
// commands sent there before it).
func (r *redlock) cleanup(i int, key, token string) {
	r.nodes[i].sendScript(time.Now().Add(cleanupTimeout), ignoreReply{}, i, rsRelease, "1", key, token)
}

// nodeDownFor is how long a node that failed to answer is passed over as
// the designated node of retries.
const nodeDownFor = time.Second

// keyHash is the FNV-1a hash of key.
func keyHash(key string) uint32 {
	h := uint32(2166136261)
	for i := range len(key) {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return h
}

// contendedFor is how long a key that another owner held (a node said
// "no") counts as contended for this Locker, and contendedSlots how many
// slots of key hashes it remembers that in (keys sharing a slot share it).
const (
	contendedFor   = time.Second
	contendedSlots = 64
)

// isContended: key (hash h) was found held by another owner within
// contendedFor.
func (r *redlock) isContended(h uint32) bool {
	return r.contended[h%contendedSlots].Load() > time.Now().UnixNano()
}

// designated is the node retries of key (hash h) ask first: the first
// node, from the hash on, that has not failed to answer within nodeDownFor
// — the same for every client that sees the same nodes down.
func (r *redlock) designated(h uint32) int {
	n := len(r.nodes)
	first := int(h % uint32(n))
	now := time.Now().UnixNano()
	for k := range n {
		if i := (first + k) % n; r.downUntil[i].Load() <= now {
			return i
		}
	}
	return first
}

// noteAnswer records whether node i answered (any definite reply) or
// failed to (an error other than a refused "no").
func (r *redlock) noteAnswer(i int, err error) {
	switch {
	case err == nil, errors.Is(err, ErrNotAcquired), errors.Is(err, ErrNotHeld):
		if r.downUntil[i].Load() != 0 {
			r.downUntil[i].Store(0)
		}
	case errors.Is(err, errNoConn):
		r.downUntil[i].Store(time.Now().Add(nodeDownFor).UnixNano())
	case errors.Is(err, errNotSent):
	default:
		r.downUntil[i].Store(time.Now().Add(nodeDownFor).UnixNano())
	}
}

func (r *redlock) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	var timer *time.Timer
	// A key another owner held a moment ago is asked at its designated
	// node first from the first attempt on.
	gate := r.cfg.gateContended && r.isContended(keyHash(key))
	for n := 0; ; n++ {
		o := r.attempt(ctx, key, ttl, gate)
		if o.err == nil || !errors.Is(o.err, ErrNotAcquired) {
			return o.lease, o.err
		}
		if ctx.Err() != nil {
			return Lease{}, fmt.Errorf("%w: %w", ErrNotAcquired, context.Cause(ctx))
		}
		// Retries ask the designated node first, unless it just failed to
		// answer (down or stopped: then the next retry fans out).
		gate = !o.designatedFailed
		d := r.bo.delay(n)
		if o.designatedYes {
			d = r.bo.min / 2
		}
		if timer == nil {
			timer = time.NewTimer(d)
			defer timer.Stop()
		} else {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			return Lease{}, fmt.Errorf("%w: %w", ErrNotAcquired, context.Cause(ctx))
		case <-timer.C:
		}
	}
}

func (r *redlock) TryAcquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	o := r.attempt(ctx, key, ttl, false)
	return o.lease, o.err
}

// outcome is the result of one Redlock round.
type outcome struct {
	lease Lease
	err   error
	// designatedYes: the round failed although the key's designated node
	// said yes; designatedFailed: that node gave no answer (an error).
	designatedYes, designatedFailed bool
}

// attempt is one Redlock round: SET NX PX on every node at once or, when
// gate is set (a retry, or a key found contended), on the key's designated
// node first and on the other nodes only if it said yes or did not answer:
// while the key is held an attempt costs one command instead of five, and
// contenders cannot split the nodes, since only one of them can win that
// node. Either way the validity counts from before the first SET. A round
// in which a node said "no" marks the key contended (isContended).
func (r *redlock) attempt(ctx context.Context, key string, ttl time.Duration, gate bool) outcome {
	if err := checkTTL(ttl); err != nil {
		return outcome{err: err}
	}
	r.lockRound()
	defer r.unlockRound()
	f := r.newFanout(fanAcquire, r.perNode(ttl))
	defer f.stop()
	h := keyHash(key)
	f.key, f.token, f.des, f.gate = key, newToken(), r.designated(h), gate
	px := strconv.FormatInt(ttl.Milliseconds(), 10)
	start := r.clock()
	wave := r.all
	decided := true
	if gate {
		f.send(r.all[f.des:f.des+1], nil, "SET", key, f.token, "NX", "PX", px)
		decided = f.wait(ctx)
		f.mu.Lock()
		f.gate = false
		if !decided || ctx.Err() != nil || !f.desYes && !f.desFail {
			wave = nil
		} else {
			wave = r.others[f.des]
		}
		f.mu.Unlock()
	}
	if len(wave) > 0 {
		f.send(wave, nil, "SET", key, f.token, "NX", "PX", px)
		decided = f.wait(ctx)
	}
	f.mu.Lock()
	yes := f.yes
	if f.no > 0 {
		r.contended[h%contendedSlots].Store(time.Now().Add(contendedFor).UnixNano())
	}
	validity := ttl - r.clock().Sub(start) - drift(ttl)
	o := outcome{designatedYes: f.desYes, designatedFailed: f.desFail}
	if yes >= r.quorum && (validity > 0 || !r.cfg.checkValidity) {
		f.mu.Unlock()
		o.lease = Lease{Key: key, Token: f.token, Expiry: start.Add(ttl - drift(ttl))}
		return o
	}
	// Failed: delete our token where it may have landed; nodes that answer
	// from now on clean up after themselves (handle).
	f.abandoned = true
	held := f.held
	errs := f.errs
	f.mu.Unlock()
	if !decided {
		errs = append(errs, context.Cause(ctx))
	}
	for i, h := range held {
		if h {
			r.cleanup(i, key, f.token)
		}
	}
	o.err = fmt.Errorf("%w: %s %q: %d of %d nodes (quorum %d), validity %v, node errors %v",
		ErrNotAcquired, r.name, key, yes, len(r.nodes), r.quorum, validity, errors.Join(errs...))
	return o
}

// readOwed waits up to d for replies owed on the polled connections and
// reads those that came (Close; the caller holds roundMu).
func (r *redlock) readOwed(d time.Duration) {
	var conns []*blockconn.Conn
	var rcs []*rconn
	var idx []int
	for i, n := range r.nodes {
		if c := n.owed(); c != nil {
			conns, rcs, idx = append(conns, c.bc), append(rcs, c), append(idx, i)
		}
	}
	if len(conns) == 0 {
		time.Sleep(d) // commands on a reader goroutine's connection
		return
	}
	ready := make([]bool, len(conns))
	if err := blockconn.PollRead(conns, ready, d); err != nil {
		time.Sleep(d)
		return
	}
	for j, ok := range ready {
		if ok {
			r.nodes[idx[j]].readReady(rcs[j], time.Now().Add(d))
		}
	}
}

// mayHold: after this answer to SET NX the node may hold the token (yes, or
// no definite answer).
func mayHold(err error) bool {
	return err == nil || !errors.Is(err, ErrNotAcquired) && !errors.Is(err, errNotSent)
}

// Release deletes the token from every node (each after this Locker's
// earlier commands on that node, so a late acquire answer is deleted too).
// It answers once a quorum of nodes replied and one of them still held the
// token (nil), or when every node replied: nil when at least one node held
// it, ErrNotHeld when none did, and the node errors otherwise (outcome
// unknown). The other nodes' deletes complete in the background.
func (r *redlock) Release(ctx context.Context, l Lease) error {
	r.lockRound()
	defer r.unlockRound()
	f := r.newFanout(fanRelease, r.perNode(time.Hour))
	defer f.stop()
	f.send(r.all, rsRelease, "1", l.Key, l.Token)
	decided := f.wait(ctx)
	f.mu.Lock()
	yes, errs := f.yes, f.errs
	f.abandoned = true // the tally is read: later answers change nothing
	f.mu.Unlock()
	switch {
	case yes > 0:
		return nil
	case decided && len(errs) == 0:
		return ErrNotHeld
	case !decided:
		errs = append(errs, context.Cause(ctx))
	}
	return fmt.Errorf("lock %s: release %q: no node confirmed: %w", r.name, l.Key, errors.Join(errs...))
}

// Refresh extends the token on every node and waits for all of them; held
// again when a quorum extended it within the new validity.
func (r *redlock) Refresh(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	if err := checkTTL(ttl); err != nil {
		return Lease{}, err
	}
	r.lockRound()
	defer r.unlockRound()
	f := r.newFanout(fanRefresh, r.perNode(ttl))
	defer f.stop()
	start := r.clock()
	f.send(r.all, rsRefresh, "1", l.Key, l.Token, strconv.FormatInt(ttl.Milliseconds(), 10))
	decided := f.wait(ctx)
	f.mu.Lock()
	yes, errs := f.yes, f.errs
	f.abandoned = true
	f.mu.Unlock()
	if !decided {
		errs = append(errs, context.Cause(ctx))
	}
	validity := ttl - r.clock().Sub(start) - drift(ttl)
	if yes >= r.quorum && (validity > 0 || !r.cfg.checkValidity) {
		l.Expiry = start.Add(ttl - drift(ttl))
		return l, nil
	}
	return Lease{}, fmt.Errorf("%w: %s refresh %q: %d of %d nodes (quorum %d), validity %v, node errors %v",
		ErrNotHeld, r.name, l.Key, yes, len(r.nodes), r.quorum, validity, errors.Join(errs...))
}

// Close lets the node commands still in flight finish (each bounded by its
// deadline: overdue ones have their connection closed), then closes the
// connections.
func (r *redlock) Close() error {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(r.perNode(time.Hour) + cleanupTimeout)
	r.lockRound()
	defer r.unlockRound()
	for r.inflight.Load() > 0 && time.Now().Before(deadline) {
		for _, n := range r.nodes {
			n.expireOverdue()
		}
		if r.polled {
			r.readOwed(2 * time.Millisecond) // nobody else reads them
			continue
		}
		<-tick.C
	}
	for _, n := range r.nodes {
		n.close()
	}
	return nil
}
