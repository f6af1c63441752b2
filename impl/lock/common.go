package lock

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// ErrSimulatedCrash is returned by a test hook (a Params entry such as
// "crash-after-setnx") at the point where it simulates the client process
// dying: whatever the implementation had done on the servers so far stays
// done, and nothing after it happens. Callers must treat the Locker as dead.
var ErrSimulatedCrash = errors.New("lock: simulated client crash (test hook)")

// cleanupTimeout bounds the best-effort clean-up an implementation runs
// after an attempt whose outcome is unknown (timeout, lost connection).
const cleanupTimeout = 250 * time.Millisecond

// newToken returns a random, unique owner token (128 bits, URL-safe base64).
func newToken() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// params reads implementation-specific Options.Params with defaults.
type params map[string]string

func (p params) duration(name string, def time.Duration) (time.Duration, error) {
	s, ok := p[name]
	if !ok || s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("lock option %s=%q: want a duration such as 500ms: %w", name, s, err)
	}
	return d, nil
}

func (p params) int(name string, def int) (int, error) {
	s, ok := p[name]
	if !ok || s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("lock option %s=%q: want an integer: %w", name, s, err)
	}
	return n, nil
}

func (p params) float(name string, def float64) (float64, error) {
	s, ok := p[name]
	if !ok || s == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("lock option %s=%q: want a number: %w", name, s, err)
	}
	return f, nil
}

func (p params) bool(name string) (bool, error) {
	s, ok := p[name]
	if !ok || s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("lock option %s=%q: want true or false: %w", name, s, err)
	}
	return b, nil
}

// backoff is a jittered exponential back-off between acquire attempts.
type backoff struct {
	min, max time.Duration
	equal    bool // equal jitter (JitterEqual), else full jitter
}

// Back-off jitters (lock option "retry-jitter", where an implementation
// offers it). The wait before attempt n+1 (n >= 0), capped at retry-max:
//
//   - full:  uniform over [min, min·2^n] (the mean wait stays near min for
//     the first few retries: 2, 3, 5, 9 ms with the defaults);
//   - equal: uniform over [min·2^n, min·2^(n+1)] (3, 6, 12, 24 ms), the
//     growth of bsm/redislock's exponential strategy (4, 8, 16, 32 ms)
//     with jitter.
//
// Contended (32 clients on 4 keys), full jitter made ~1.9–2.0 SET NX
// attempts per redis-setnx cycle where equal makes ~1.55 and redislock ~1.5
// (BenchmarkLockPairRatio): every attempt that finds the key held costs a
// round trip of CPU on a machine the clients and the server share.
const (
	JitterFull  = "full"
	JitterEqual = "equal"
)

// backoffFrom reads "retry-min" (default 2ms), "retry-max" (default 50ms)
// and "retry-jitter" (default jitter).
func backoffFrom(p params, jitter string) (backoff, error) {
	lo, err := p.duration("retry-min", 2*time.Millisecond)
	if err != nil {
		return backoff{}, err
	}
	hi, err := p.duration("retry-max", 50*time.Millisecond)
	if err != nil {
		return backoff{}, err
	}
	if lo <= 0 || hi < lo {
		return backoff{}, fmt.Errorf("lock options retry-min=%v retry-max=%v: want 0 < retry-min <= retry-max", lo, hi)
	}
	if j := p["retry-jitter"]; j != "" {
		jitter = j
	}
	if jitter != JitterFull && jitter != JitterEqual {
		return backoff{}, fmt.Errorf("lock option retry-jitter=%q: valid are %s, %s", jitter, JitterFull, JitterEqual)
	}
	return backoff{min: lo, max: hi, equal: jitter == JitterEqual}, nil
}

// delay is the wait before attempt n+1 (n >= 0), as its jitter says.
func (b backoff) delay(n int) time.Duration {
	hi := b.min << min(n, 20)
	if hi > b.max || hi <= 0 {
		hi = b.max
	}
	lo := b.min
	if b.equal {
		lo, hi = hi, hi<<1
		if hi > b.max || hi <= 0 {
			hi = b.max
		}
	}
	return lo + rand.N(hi-lo+1)
}

// acquireLoop calls try until it succeeds, fails with something other than
// ErrNotAcquired, or ctx ends (then ErrNotAcquired wrapping ctx's error).
// A try whose outcome is unknown must itself clean up or return a non
// ErrNotAcquired error, which ends the loop.
func acquireLoop(ctx context.Context, b backoff, try func(context.Context) (Lease, error)) (Lease, error) {
	var timer *time.Timer
	for n := 0; ; n++ {
		l, err := try(ctx)
		if err == nil || !errors.Is(err, ErrNotAcquired) {
			return l, err
		}
		if ctx.Err() != nil {
			return Lease{}, fmt.Errorf("%w: %w", ErrNotAcquired, context.Cause(ctx))
		}
		d := b.delay(n)
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
			// Both may be ready at once (the back-off ends at the
			// deadline) and select picks either: an attempt on a done
			// context fails with the client's own error, not a definite
			// no (TestConformance/pg-advisory/acquire-times-out, once in CI).
			if ctx.Err() != nil {
				return Lease{}, fmt.Errorf("%w: %w", ErrNotAcquired, context.Cause(ctx))
			}
		}
	}
}

// settle turns the error of an acquire attempt whose outcome is unknown into
// a definite answer when it can: cleanup (which deletes only what carries
// the attempt's own token) runs on a fresh short context; if it succeeds the
// attempt is known to hold nothing and ErrNotAcquired is returned, otherwise
// the original error (indeterminate) is.
func settle(ctx context.Context, attemptErr error, cleanup func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := cleanup(cctx); err != nil && !errors.Is(err, ErrNotHeld) {
		return fmt.Errorf("lock: acquire outcome unknown (%w); clean-up failed too (%v): the key may stay held until its ttl", attemptErr, err)
	}
	return fmt.Errorf("%w: attempt failed (%w) and was cleaned up", ErrNotAcquired, attemptErr)
}
