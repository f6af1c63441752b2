package workload

// Steps is used by the chaos suite (chaos/*_suite_test.go) to script exact
// interleavings. It adds no behaviour: each method is the very operation
// Client.Step runs, logged the same way.

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

// NewSteps wraps a Client of a lock workload's Session; w must log as the
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
	if timeout <= 0 {
		timeout = s.c.p.t.AcquireTimeout
	}
	lease, _, err := s.c.acquire(ctx, s.w, key, timeout, try, nil)
	return lease, err
}

// Read reads the counter of l.Key inside the critical section (registering
// l's fence where the resource fences).
func (s *Steps) Read(ctx context.Context, l lock.Lease) (int64, error) {
	v, _, err := s.c.read(ctx, s.w, l)
	return v, err
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
	_, err := s.c.release(ctx, s.w, l, nil)
	return err
}
