package lock

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
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
// once a quorum of nodes replied, the rest again in the background. Every
// command this Locker sends for a key to a node waits for the previous one
// it sent there (so a release never overtakes the acquire it undoes, even
// when that node answered after the quorum was reached). Acquire retries
// with random back-off, and a retry asks the key's designated node (a hash
// of the key picks one of the five, passing over nodes that just failed to
// answer) first, fanning out to the other four
// only when it said yes (or did not answer): while the key is held a retry
// costs one command instead of five, and retrying contenders cannot split
// the nodes 2/2/1 between them, since only one can win that node. A failed
// round that won it retries after half the minimum back-off.
// Time is Options.Clock(). It promises one holder while clocks advance at
// about the same rate and holders finish within the validity; it breaks
// without fencing when a holder pauses past its validity, when a node's clock
// jumps, and when nodes holding the lock restart empty sooner than a ttl
// later (then another client reaches a quorum).
//
// Params: "node-timeout" (default ttl/4 clamped to 50ms..500ms),
// "retry-min", "retry-max", and the Redis client timeouts.
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
	nodes       []*redis.Client
	all         []int   // 0..len(nodes)-1
	others      [][]int // others[i]: every node but i
	quorum      int
	clock       func() time.Time
	bo          backoff
	nodeTimeout time.Duration // 0: derived from the ttl

	downUntil []atomic.Int64 // per node: wall time (UnixNano) until which it counts as down

	mu    sync.Mutex
	tails map[string][]chan struct{} // per key, per node: closed when the last command sent there is done
	bg    sync.WaitGroup             // node commands in flight (Close waits for them)

	work     chan func()   // idle workers take node commands here (run)
	quit     chan struct{} // closed by Close: idle workers exit
	quitOnce sync.Once
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
		cs, err := newRedisClients(ep, p, redlockNodes, name)
		if err != nil {
			return nil, err
		}
		r := &redlock{name: name, cfg: cfg, nodes: cs, quorum: cfg.quorum(len(cs)), clock: opt.Clock(), bo: bo, nodeTimeout: nt,
			tails: map[string][]chan struct{}{}, work: make(chan func()), quit: make(chan struct{})}
		r.downUntil = make([]atomic.Int64, len(cs))
		for i := range cs {
			r.all = append(r.all, i)
		}
		for i := range cs {
			r.others = append(r.others, append(append([]int(nil), r.all[:i]...), r.all[i+1:]...))
		}
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

// errNotSent: a node command was never sent (the previous command for the
// key on that node did not finish within the timeout). Nothing happened.
var errNotSent = errors.New("lock: command not sent: the previous one on this node is still in flight")

// dispatch runs fn for key on each of the given nodes in the background,
// each after the previous command this Locker sent for key to that node is
// done, all bounded by one timeout from now (independent of ctx's
// cancellation: a command outlives the call that started it). done gets
// every node's result, from that node's goroutine, before the next command
// for key on that node may start.
func (r *redlock) dispatch(ctx context.Context, key string, nodes []int, timeout time.Duration,
	fn func(ctx context.Context, c *redis.Client) error, done func(node int, err error)) {
	if len(nodes) == 0 {
		return
	}
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	prev := make([]chan struct{}, len(nodes))
	mine := make([]chan struct{}, len(nodes))
	r.mu.Lock()
	t := r.tails[key]
	if t == nil {
		t = make([]chan struct{}, len(r.nodes))
		r.tails[key] = t
	}
	for j, i := range nodes {
		prev[j], mine[j] = t[i], make(chan struct{})
		t[i] = mine[j]
	}
	r.mu.Unlock()
	var left atomic.Int32 // the last node to finish cancels nctx
	left.Store(int32(len(nodes)))
	release := cancel
	r.bg.Add(len(nodes))
	for j, i := range nodes {
		r.run(func() {
			defer r.bg.Done()
			var err error
			if p := prev[j]; p != nil {
				select {
				case <-p:
				case <-nctx.Done():
					err = errNotSent
				}
			}
			if err == nil {
				err = fn(nctx, r.nodes[i])
			}
			done(i, err)
			r.mu.Lock()
			close(mine[j])
			if t[i] == mine[j] {
				t[i] = nil
				if !anyOpen(t) {
					delete(r.tails, key)
				}
			}
			r.mu.Unlock()
			if left.Add(-1) == 0 {
				release()
			}
		})
	}
}

// workerIdle is how long a worker waits for its next node command before
// it exits.
const workerIdle = time.Second

// run runs job on its own goroutine: an idle worker's if one is waiting,
// else a new worker's. Workers outlive their job (up to workerIdle) so that
// a node command does not pay for a goroutine start and for growing a fresh
// stack to go-redis's depth: in the contended benchmark stack growth was
// about a tenth of the client's CPU.
func (r *redlock) run(job func()) {
	select {
	case r.work <- job:
	default:
		go r.worker(job)
	}
}

func (r *redlock) worker(job func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		job()
		idle.Reset(workerIdle)
		select {
		case job = <-r.work:
		case <-idle.C:
			return
		case <-r.quit:
			return
		}
	}
}

func anyOpen(t []chan struct{}) bool {
	for _, c := range t {
		if c != nil {
			return true
		}
	}
	return false
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
	cleanup := func(ctx context.Context, c *redis.Client) error { return casRelease(ctx, c, key, token) }
	set := func(ctx context.Context, c *redis.Client) error {
		_, err := obtainSetNX(ctx, c, key, token, ttl, redisHooks{})
		return err
	}
	report := func(i int, err error) {
		mu.Lock()
		defer mu.Unlock()
		if !lost {
			results <- nodeResult{i, err}
			return
		}
		if mayHold(err) { // late answer of a failed round: delete it here, before the node's next command
			cctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
			_ = cleanup(cctx, r.nodes[i])
			cancel()
		}
	}
	var yes, got int
	var errs []error
	held := make([]int, 0, n)  // nodes that may hold our token
	pending := make([]bool, n) // sent, not yet answered
	tally := func(res nodeResult) {
		got++
		pending[res.node] = false
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
		case errors.Is(res.err, ErrNotAcquired), errors.Is(res.err, errNotSent):
		default:
			errs = append(errs, res.err)
		}
	}
	start := r.clock()
	wave := r.all
	if gate {
		pending[des] = true
		r.dispatch(ctx, key, []int{des}, r.perNode(ttl), set, report)
		select {
		case res := <-results:
			tally(res)
		case <-ctx.Done():
			errs = append(errs, context.Cause(ctx))
		}
		wave = nil
		if got == 1 && (yes == 1 || o.designatedFailed) && ctx.Err() == nil {
			wave = r.others[des]
		}
	}
	if len(wave) > 0 {
		r.dispatch(ctx, key, wave, r.perNode(ttl), set, report)
	}
	for _, i := range wave {
		pending[i] = true
	}
	// hopeful: how many pending nodes may still say yes in time; a node
	// that just failed to answer (down, stopped, cut off) is not waited for
	// (should it say yes after all, report deletes it).
	hopeful := func() int {
		now, k := time.Now().UnixNano(), 0
		for i, p := range pending {
			if p && r.downUntil[i].Load() <= now {
				k++
			}
		}
		return k
	}
wait:
	for yes < r.quorum && yes+hopeful() >= r.quorum {
		select {
		case res := <-results:
			tally(res)
		case <-ctx.Done():
			errs = append(errs, context.Cause(ctx))
			break wait
		}
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
	if len(held) > 0 {
		r.dispatch(ctx, key, held, cleanupTimeout, cleanup, func(int, error) {})
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
// earlier commands for the key on that node, so a late acquire answer is
// deleted too). It answers once a quorum of nodes replied and one of them
// still held the token (nil), or when every node replied: nil when at least
// one node held it, ErrNotHeld when none did, and the node errors otherwise
// (outcome unknown). The other nodes' deletes complete in the background.
func (r *redlock) Release(ctx context.Context, l Lease) error {
	n := len(r.nodes)
	results := make(chan nodeResult, n)
	r.dispatch(ctx, l.Key, r.all, r.perNode(time.Hour), func(ctx context.Context, c *redis.Client) error {
		return casRelease(ctx, c, l.Key, l.Token)
	}, func(i int, err error) { results <- nodeResult{i, err} })
	var yes, got int
	var errs []error
	for got < n && (yes == 0 || got < r.quorum) {
		select {
		case res := <-results:
			got++
			r.noteAnswer(res.node, res.err)
			switch {
			case res.err == nil:
				yes++
			case errors.Is(res.err, ErrNotHeld):
			default:
				errs = append(errs, res.err)
			}
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
	r.dispatch(ctx, l.Key, r.all, r.perNode(ttl), func(ctx context.Context, c *redis.Client) error {
		return casRefresh(ctx, c, l.Key, l.Token, ttl)
	}, func(i int, err error) { results <- nodeResult{i, err} })
	var yes int
	var errs []error
wait:
	for got := 0; got < n; got++ {
		select {
		case res := <-results:
			switch {
			case res.err == nil:
				yes++
			case errors.Is(res.err, ErrNotHeld):
			default:
				errs = append(errs, res.err)
			}
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

// Close waits for the node commands still in flight (each bounded by its
// timeout), then closes the connections.
func (r *redlock) Close() error {
	r.bg.Wait()
	r.quitOnce.Do(func() { close(r.quit) })
	return closeRedis(r.nodes)
}
