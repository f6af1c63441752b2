package workload

// HOOK added by the chaos-suite helper (chaos/*_suite_test.go needs it to
// script exact interleavings); the bench/workload author owns it and may
// reshape it. It adds no behaviour: each method is one operation of Step,
// logged the same way, against the same lock client and resource.

import (
	"context"
	"errors"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/impl/lock"
)

// Steps drives one lock-workload process operation by operation, so a test
// can script an exact interleaving of several processes (acquire by A, kill
// three nodes, acquire by B, write by B, write by A…). Every call logs its
// invoke and completion through the worker with the lock vocabulary, exactly
// as Client.Step does, so the lock checkers judge the result like a run.
type Steps struct {
	c *lockClient
	w *recorder.Worker
}

// NewSteps wraps a Client of a lock workload's Phase; w must log as the
// client's process (Stats.Worker(process, impl)).
func NewSteps(c Client, w *recorder.Worker) (*Steps, error) {
	lc, ok := c.(*lockClient)
	if !ok {
		return nil, errors.New("workload: Steps needs a client of a lock workload (counter, fenced-counter)")
	}
	w.Process = lc.process
	return &Steps{c: lc, w: w}, nil
}

// Process is the process id the steps log under.
func (s *Steps) Process() int { return s.c.process }

// Locker is the process's lock client.
func (s *Steps) Locker() lock.Locker { return s.c.l }

// IsFenced says whether err is a write the resource rejected as stale.
func IsFenced(err error) bool { return errors.Is(err, errFenced) }

// Acquire is a blocking acquire of key bounded by timeout (0: the phase's
// AcquireTimeout); try makes it a single TryAcquire.
func (s *Steps) Acquire(ctx context.Context, key string, timeout time.Duration, try bool) (lock.Lease, error) {
	t := s.c.p.t
	if timeout <= 0 {
		timeout = t.AcquireTimeout
	}
	call := s.w.Invoke(kAcquire, history.Op{F: "acquire", Key: key})
	actx, cancel := context.WithTimeout(ctx, timeout)
	var lease lock.Lease
	var err error
	if try {
		lease, err = s.c.l.TryAcquire(actx, key, t.TTL)
	} else {
		lease, err = s.c.l.Acquire(actx, key, t.TTL)
	}
	cancel()
	switch {
	case err == nil:
		s.w.Complete(call, history.OK, history.Op{Token: lease.Token, Fence: lease.Fence})
	case errors.Is(err, lock.ErrSimulatedCrash):
		s.w.Complete(call, history.Info, history.Op{Error: "crashed"})
	case errors.Is(err, lock.ErrNotAcquired):
		s.w.Complete(call, history.Fail, history.Op{Error: "not-acquired"})
	default:
		s.w.Complete(call, history.Info, history.Op{Error: recorder.ErrorKind(err)})
	}
	return lease, err
}

// Read reads the counter of l.Key inside the critical section (registering
// l's fence where the resource fences).
func (s *Steps) Read(ctx context.Context, l lock.Lease) (int64, error) {
	call := s.w.Invoke(kRead, history.Op{F: "read", Key: l.Key})
	rctx, cancel := context.WithTimeout(ctx, s.c.p.t.OpTimeout)
	v, err := s.c.p.res.read(rctx, l.Key, l.Fence)
	cancel()
	if err != nil {
		s.w.Complete(call, history.Info, history.Op{Error: recorder.ErrorKind(err)})
		return 0, err
	}
	s.w.Complete(call, history.OK, history.Op{Value: history.Int(v)})
	return v, nil
}

// Write writes read+1 to l.Key's counter; a stale fence gives an error for
// which IsFenced is true.
func (s *Steps) Write(ctx context.Context, l lock.Lease, read int64) error {
	h := chaos.Holder{Process: s.c.process, Key: l.Key, Token: l.Token, Fence: l.Fence}
	out := s.c.write(ctx, s.w, h, read)
	switch {
	case out.Type == history.OK:
		return nil
	case out.Err == "fenced":
		return errFenced
	}
	return errors.New("write " + out.Err)
}

// Release releases l.
func (s *Steps) Release(ctx context.Context, l lock.Lease) error {
	call := s.w.Invoke(kRelease, history.Op{F: "release", Key: l.Key, Token: l.Token})
	rctx, cancel := context.WithTimeout(ctx, s.c.p.t.OpTimeout)
	err := s.c.l.Release(rctx, l)
	cancel()
	switch {
	case err == nil:
		s.w.Complete(call, history.OK, history.Op{Token: l.Token})
	case errors.Is(err, lock.ErrNotHeld):
		s.w.Complete(call, history.Fail, history.Op{Token: l.Token, Error: "not-held"})
	default:
		s.w.Complete(call, history.Info, history.Op{Token: l.Token, Error: recorder.ErrorKind(err)})
	}
	return err
}
