package lock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// NewBareFanout is the floor of a Redlock cycle, for the benchmarks: the
// commands of redlock's uncontended acquire and release (SET NX PX, then
// the release script by hash, sent to the five nodes at once and answered
// when three replied) on the same pipelined connections (rnode), with no
// lock logic at all: replies are counted, not read (no quorum of yes, no
// validity, no per-node timeout, no retry, no clean-up). It is a Locker
// only so that the benchmarks can time it as they time the locks; it
// promises nothing.
func NewBareFanout(ctx context.Context, ep Endpoints) (Locker, error) {
	if len(ep.Redis) != redlockNodes {
		return nil, fmt.Errorf("bare fan-out: needs %d Redis endpoints, got %d", redlockNodes, len(ep.Redis))
	}
	f := &bareFanout{}
	for _, e := range ep.Redis {
		n := &rnode{addr: e.Addr, password: e.Password, dialTimeout: time.Second, writeTimeout: 500 * time.Millisecond, inflight: &f.inflight}
		c, err := n.connect(ctx)
		if err != nil {
			f.close()
			return nil, err
		}
		n.start(c)
		f.nodes = append(f.nodes, n)
	}
	return f, nil
}

type bareFanout struct {
	nodes    []*rnode
	inflight atomic.Int64
}

// bareRound counts a round's replies and wakes the caller at the third.
type bareRound struct {
	got  atomic.Int32
	wake chan struct{}
}

func (b *bareRound) handle(int, reply, error) {
	if b.got.Add(1) == redlockNodes/2+1 {
		b.wake <- struct{}{}
	}
}

// round sends args (or the script sc with args) to every node and waits
// for three replies.
func (f *bareFanout) round(ctx context.Context, sc *rscript, args ...string) error {
	rd := &bareRound{wake: make(chan struct{}, 1)}
	deadline := time.Now().Add(time.Second)
	for i, n := range f.nodes {
		if sc != nil {
			n.sendScript(deadline, rd, i, sc, args...)
		} else {
			n.send(deadline, rd, i, args...)
		}
	}
	select {
	case <-rd.wake:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (f *bareFanout) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	token := newToken()
	if err := f.round(ctx, nil, "SET", key, token, "NX", "PX", strconv.FormatInt(ttl.Milliseconds(), 10)); err != nil {
		return Lease{}, err
	}
	return Lease{Key: key, Token: token}, nil
}

func (f *bareFanout) TryAcquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return f.Acquire(ctx, key, ttl)
}

func (f *bareFanout) Release(ctx context.Context, l Lease) error {
	return f.round(ctx, rsRelease, "1", l.Key, l.Token)
}

func (f *bareFanout) Refresh(context.Context, Lease, time.Duration) (Lease, error) {
	return Lease{}, errors.New("bare fan-out: no refresh")
}

func (f *bareFanout) Close() error {
	f.close()
	return nil
}

// close closes the connections; commands still in flight fail (their
// replies are only counted).
func (f *bareFanout) close() {
	for _, n := range f.nodes {
		n.close()
	}
}

// NewInlineFanout is NewBareFanout without the connections' reader
// goroutines: the caller writes the five commands and reads the replies
// itself, node by node in a fixed order, up to the third; the other two
// are read before the next command to their node. No hand-off between
// goroutines at all, but a slow first node holds the round up: it shows
// how much of a cycle the hand-off costs, not a design for a lock.
func NewInlineFanout(ctx context.Context, ep Endpoints) (Locker, error) {
	if len(ep.Redis) != redlockNodes {
		return nil, fmt.Errorf("inline fan-out: needs %d Redis endpoints, got %d", redlockNodes, len(ep.Redis))
	}
	f := &inlineFanout{}
	for _, e := range ep.Redis {
		n := &rnode{addr: e.Addr, password: e.Password, dialTimeout: time.Second}
		c, err := n.connect(ctx)
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		f.conns = append(f.conns, c) // connect loaded the release script
		f.owed = append(f.owed, 0)
	}
	return f, nil
}

type inlineFanout struct {
	conns []*rconn
	owed  []int // replies not read yet, per node
}

// round sends args (or the script sc with args) to every node and reads
// replies in node order until three came.
func (f *inlineFanout) round(sc *rscript, args ...string) error {
	for i, c := range f.conns {
		for ; f.owed[i] > 0; f.owed[i]-- {
			if _, _, err := readReply(c.br); err != nil {
				return err
			}
		}
		if sc != nil {
			c.buf = appendScript(c.buf[:0], "EVALSHA", sc.sha, args)
		} else {
			c.buf = appendCommand(c.buf[:0], args...)
		}
		if _, err := c.nc.Write(c.buf); err != nil {
			return err
		}
		f.owed[i]++
	}
	for i := range redlockNodes/2 + 1 {
		if _, _, err := readReply(f.conns[i].br); err != nil {
			return err
		}
		f.owed[i]--
	}
	return nil
}

func (f *inlineFanout) Acquire(_ context.Context, key string, ttl time.Duration) (Lease, error) {
	token := newToken()
	if err := f.round(nil, "SET", key, token, "NX", "PX", strconv.FormatInt(ttl.Milliseconds(), 10)); err != nil {
		return Lease{}, err
	}
	return Lease{Key: key, Token: token}, nil
}

func (f *inlineFanout) TryAcquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return f.Acquire(ctx, key, ttl)
}

func (f *inlineFanout) Release(_ context.Context, l Lease) error {
	return f.round(rsRelease, "1", l.Key, l.Token)
}

func (f *inlineFanout) Refresh(context.Context, Lease, time.Duration) (Lease, error) {
	return Lease{}, errors.New("inline fan-out: no refresh")
}

func (f *inlineFanout) Close() error {
	for _, c := range f.conns {
		_ = c.nc.Close()
	}
	return nil
}

// NewRedlockUngated is redlock whose first attempts always fan out to the
// five nodes, even on a key it found contended (gateContended off), for
// the benchmarks' same-run comparison of that choice.
func NewRedlockUngated(ctx context.Context, ep Endpoints, opt Options) (Locker, error) {
	return redlockFactory("redlock", redlockConfig{quorum: func(n int) int { return n/2 + 1 }, checkValidity: true})(ctx, ep, opt)
}
