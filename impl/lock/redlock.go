package lock

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
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
// the quorum was reached). Acquire retries with random back-off, and a
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
		New:        redlockFactory("redlock", redlockConfig{quorum: func(n int) int { return n/2 + 1 }, checkValidity: true}),
	})
}

// redlockConfig is what distinguishes redlock from its mutant.
type redlockConfig struct {
	quorum        func(nodes int) int
	checkValidity bool
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

	downUntil []atomic.Int64 // per node: wall time (UnixNano) until which it counts as down
	inflight  atomic.Int64   // node commands sent, reply not yet handed over (Close waits for them)
}

func redlockFactory(name string, cfg redlockConfig) Factory {
	return func(ctx context.Context, ep Endpoints, opt Options) (Locker, error) {
		p := params(opt.Params)
		bo, err := backoffFrom(p)
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
		if len(ep.Redis) != redlockNodes {
			return nil, fmt.Errorf("lock %s: needs exactly %d Redis endpoints (independent masters), got %d", name, redlockNodes, len(ep.Redis))
		}
		r := &redlock{name: name, cfg: cfg, quorum: cfg.quorum(len(ep.Redis)), clock: opt.Clock(), bo: bo, nodeTimeout: nt}
		for i, e := range ep.Redis {
			if e.Addr == "" {
				return nil, fmt.Errorf("lock %s: redis endpoint %q has no address: give the factory the nodes' proxied or direct host:port", name, e.Name)
			}
			r.nodes = append(r.nodes, &rnode{addr: e.Addr, password: e.Password, dialTimeout: dial, writeTimeout: write, inflight: &r.inflight})
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

// round is the bookkeeping of commands sent to several nodes at once:
// which are still pending and on which connection each went out.
type round struct {
	pending []bool
	conns   []*rconn
	timer   *time.Timer
}

func (r *redlock) newRound() *round {
	return &round{pending: make([]bool, len(r.nodes)), conns: make([]*rconn, len(r.nodes))}
}

// send sends args to node i with a reply deadline d from now; done gets
// the node's reply.
func (r *redlock) send(rd *round, i int, d time.Duration, done func(reply, error), args ...string) {
	rd.pending[i] = true
	rd.conns[i] = r.nodes[i].send(time.Now().Add(d), done, args...)
}

// arm (re)starts the round's timer for d.
func (rd *round) arm(d time.Duration) {
	if rd.timer == nil {
		rd.timer = time.NewTimer(d)
	} else {
		rd.timer.Reset(d)
	}
}

func (rd *round) stop() {
	if rd.timer != nil {
		rd.timer.Stop()
	}
}

// expire closes the connections of the round's pending nodes (their
// timeout passed): each then answers with an error, outcome unknown.
func (r *redlock) expire(rd *round, d time.Duration) {
	for i, p := range rd.pending {
		if p && rd.conns[i] != nil {
			r.nodes[i].expire(rd.conns[i], fmt.Errorf("no reply within the node timeout %v", d))
		}
	}
}

// cleanup deletes token from node i in the background (after the
// commands sent there before it).
func (r *redlock) cleanup(i int, key, token string) {
	r.nodes[i].send(time.Now().Add(cleanupTimeout), func(reply, error) {}, "EVAL", luaRelease, "1", key, token)
}

// nodeResult is one node's answer to a command.
type nodeResult struct {
	node int
	err  error
}

// nodeDownFor is how long a node that failed to answer is passed over as
// the designated node of retries.
const nodeDownFor = time.Second

// designated is the node retries of key ask first: the first node, from a
// hash of the key on, that has not failed to answer within nodeDownFor —
// the same for every client that sees the same nodes down.
func (r *redlock) designated(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	n := len(r.nodes)
	first := int(h.Sum32() % uint32(n))
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
	gate := false
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
// gate is set (a retry), on the key's designated node first and on the
// other nodes only if it said yes or did not answer: while the key is held
// a retry costs one command instead of five, and contenders that retry
// cannot split the nodes, since only one of them can win that node. Either
// way the validity counts from before the first SET.
func (r *redlock) attempt(ctx context.Context, key string, ttl time.Duration, gate bool) (o outcome) {
	if err := checkTTL(ttl); err != nil {
		return outcome{err: err}
	}
	token := newToken()
	n := len(r.nodes)
	des := r.designated(key)
	results := make(chan nodeResult, n)
	var mu sync.Mutex // guards lost; a node's result is sent under it
	lost := false
	report := func(i int, err error) {
		mu.Lock()
		defer mu.Unlock()
		if !lost {
			results <- nodeResult{i, err}
			return
		}
		if mayHold(err) { // late answer of a failed round: delete it (after the SET, on the same connection)
			r.cleanup(i, key, token)
		}
	}
	px := strconv.FormatInt(ttl.Milliseconds(), 10)
	nodeTimeout := r.perNode(ttl)
	rd := r.newRound()
	defer rd.stop()
	set := func(i int) {
		r.send(rd, i, nodeTimeout, func(rep reply, rerr error) { report(i, setNXResult(rep, rerr)) },
			"SET", key, token, "NX", "PX", px)
	}
	var yes, got int
	var errs []error
	held := make([]int, 0, n) // nodes that may hold our token
	tally := func(res nodeResult) {
		got++
		rd.pending[res.node] = false
		r.noteAnswer(res.node, res.err)
		if mayHold(res.err) {
			held = append(held, res.node)
		}
		if res.node == des {
			o.designatedYes = res.err == nil
			o.designatedFailed = res.err != nil && !errors.Is(res.err, ErrNotAcquired)
		}
		switch {
		case res.err == nil:
			yes++
		case errors.Is(res.err, ErrNotAcquired):
		default:
			errs = append(errs, res.err)
		}
	}
	// next waits for one node's result; false when ctx ended.
	next := func() bool {
		for {
			select {
			case res := <-results:
				tally(res)
				return true
			case <-rd.timer.C:
				r.expire(rd, nodeTimeout) // the expired nodes answer with an error
			case <-ctx.Done():
				errs = append(errs, context.Cause(ctx))
				return false
			}
		}
	}
	start := r.clock()
	wave := r.all
	if gate {
		rd.arm(nodeTimeout)
		set(des)
		wave = nil
		if next() && (yes == 1 || o.designatedFailed) && ctx.Err() == nil {
			wave = r.others[des]
		}
	}
	if len(wave) > 0 {
		rd.arm(nodeTimeout)
		for _, i := range wave {
			set(i)
		}
	}
	// hopeful: how many pending nodes may still say yes in time; a node
	// that just failed to answer (down, stopped, cut off) is not waited for
	// (should it say yes after all, report deletes it).
	hopeful := func() int {
		now, k := time.Now().UnixNano(), 0
		for i, p := range rd.pending {
			if p && r.downUntil[i].Load() <= now {
				k++
			}
		}
		return k
	}
	for yes < r.quorum && yes+hopeful() >= r.quorum && next() {
	}
	validity := ttl - r.clock().Sub(start) - drift(ttl)
	if yes >= r.quorum && (validity > 0 || !r.cfg.checkValidity) {
		return outcome{lease: Lease{Key: key, Token: token, Expiry: start.Add(ttl - drift(ttl))}}
	}
	// Failed: delete our token where it may have landed; nodes that answer
	// from now on clean up after themselves (report, above).
	mu.Lock()
	lost = true
	for drained := false; !drained; {
		select {
		case res := <-results:
			tally(res)
		default:
			drained = true
		}
	}
	mu.Unlock()
	for _, i := range held {
		r.cleanup(i, key, token)
	}
	o.err = fmt.Errorf("%w: %s %q: %d of %d nodes (quorum %d), validity %v, node errors %v",
		ErrNotAcquired, r.name, key, yes, n, r.quorum, validity, errors.Join(errs...))
	return o
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
	n := len(r.nodes)
	results := make(chan nodeResult, n)
	nodeTimeout := r.perNode(time.Hour)
	rd := r.newRound()
	defer rd.stop()
	rd.arm(nodeTimeout)
	for _, i := range r.all {
		r.send(rd, i, nodeTimeout, func(rep reply, rerr error) { results <- nodeResult{i, scriptResult(rep, rerr)} },
			"EVAL", luaRelease, "1", l.Key, l.Token)
	}
	var yes, got int
	var errs []error
	for got < n && (yes == 0 || got < r.quorum) {
		select {
		case res := <-results:
			got++
			rd.pending[res.node] = false
			r.noteAnswer(res.node, res.err)
			switch {
			case res.err == nil:
				yes++
			case errors.Is(res.err, ErrNotHeld):
			default:
				errs = append(errs, res.err)
			}
		case <-rd.timer.C:
			r.expire(rd, nodeTimeout)
		case <-ctx.Done():
			if yes > 0 {
				return nil
			}
			errs = append(errs, context.Cause(ctx))
			return fmt.Errorf("lock %s: release %q: no node confirmed: %w", r.name, l.Key, errors.Join(errs...))
		}
	}
	switch {
	case yes > 0:
		return nil
	case len(errs) == 0:
		return ErrNotHeld
	}
	return fmt.Errorf("lock %s: release %q: no node confirmed: %w", r.name, l.Key, errors.Join(errs...))
}

// Refresh extends the token on every node and waits for all of them; held
// again when a quorum extended it within the new validity.
func (r *redlock) Refresh(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	if err := checkTTL(ttl); err != nil {
		return Lease{}, err
	}
	n := len(r.nodes)
	results := make(chan nodeResult, n)
	start := r.clock()
	nodeTimeout := r.perNode(ttl)
	px := strconv.FormatInt(ttl.Milliseconds(), 10)
	rd := r.newRound()
	defer rd.stop()
	rd.arm(nodeTimeout)
	for _, i := range r.all {
		r.send(rd, i, nodeTimeout, func(rep reply, rerr error) { results <- nodeResult{i, scriptResult(rep, rerr)} },
			"EVAL", luaRefresh, "1", l.Key, l.Token, px)
	}
	var yes int
	var errs []error
wait:
	for got := 0; got < n; {
		select {
		case res := <-results:
			got++
			rd.pending[res.node] = false
			switch {
			case res.err == nil:
				yes++
			case errors.Is(res.err, ErrNotHeld):
			default:
				errs = append(errs, res.err)
			}
		case <-rd.timer.C:
			r.expire(rd, nodeTimeout)
		case <-ctx.Done():
			errs = append(errs, context.Cause(ctx))
			break wait
		}
	}
	validity := ttl - r.clock().Sub(start) - drift(ttl)
	if yes >= r.quorum && (validity > 0 || !r.cfg.checkValidity) {
		l.Expiry = start.Add(ttl - drift(ttl))
		return l, nil
	}
	return Lease{}, fmt.Errorf("%w: %s refresh %q: %d of %d nodes (quorum %d), validity %v, node errors %v",
		ErrNotHeld, r.name, l.Key, yes, n, r.quorum, validity, errors.Join(errs...))
}

// Close lets the node commands still in flight finish (each bounded by its
// deadline: overdue ones have their connection closed), then closes the
// connections.
func (r *redlock) Close() error {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(r.perNode(time.Hour) + cleanupTimeout)
	for r.inflight.Load() > 0 && time.Now().Before(deadline) {
		for _, n := range r.nodes {
			n.expireOverdue()
		}
		<-tick.C
	}
	for _, n := range r.nodes {
		n.close()
	}
	return nil
}
