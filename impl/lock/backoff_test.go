package lock

import (
	"context"
	"testing"
	"time"
)

// TestBackoffJitterBounds pins both jitters' ranges: full waits in
// [min, min·2^n], equal in [min·2^n, min·2^(n+1)], both capped at max.
func TestBackoffJitterBounds(t *testing.T) {
	const lo, hi = 2 * time.Millisecond, 50 * time.Millisecond
	for _, tc := range []struct {
		jitter string
		want   func(n int) (time.Duration, time.Duration)
	}{
		{JitterFull, func(n int) (time.Duration, time.Duration) { return lo, min(lo<<n, hi) }},
		{JitterEqual, func(n int) (time.Duration, time.Duration) { return min(lo<<n, hi), min(lo<<(n+1), hi) }},
	} {
		b, err := backoffFrom(params{"retry-jitter": tc.jitter}, JitterFull)
		if err != nil {
			t.Fatal(err)
		}
		for n := range 8 {
			wlo, whi := tc.want(n)
			seenLo, seenHi := hi, time.Duration(0)
			for range 2000 {
				d := b.delay(n)
				if d < wlo || d > whi {
					t.Fatalf("%s: delay(%d) = %v, want within [%v, %v]", tc.jitter, n, d, wlo, whi)
				}
				seenLo, seenHi = min(seenLo, d), max(seenHi, d)
			}
			// The range is used, not just respected: the waits spread over
			// it (a constant wait would pass the bounds check).
			if span := whi - wlo; span > 0 && (seenLo-wlo > span/10 || whi-seenHi > span/10) {
				t.Errorf("%s: delay(%d) spans [%v, %v] in 2000 draws, want about [%v, %v]", tc.jitter, n, seenLo, seenHi, wlo, whi)
			}
		}
	}
	if _, err := backoffFrom(params{"retry-jitter": "none"}, JitterFull); err == nil {
		t.Error("retry-jitter=none accepted")
	}
}

// TestRedisSetNXBacksOffWithEqualJitter: redis-setnx (and every lock built
// on redisFactory) waits with equal jitter unless told otherwise, the
// others keep full jitter. Building a Locker does not connect.
func TestRedisSetNXBacksOffWithEqualJitter(t *testing.T) {
	ep := Endpoints{Redis: []RedisEndpoint{{Name: "redis-1", Addr: "127.0.0.1:1"}}}
	for _, tc := range []struct {
		params map[string]string
		equal  bool
	}{{nil, true}, {map[string]string{"retry-jitter": JitterFull}, false}, {map[string]string{"retry-jitter": JitterEqual}, true}} {
		l, err := redisFactory("redis-setnx", redisOps{})(context.Background(), ep, Options{Params: tc.params})
		if err != nil {
			t.Fatal(err)
		}
		if got := l.(*redisLocker).bo.equal; got != tc.equal {
			t.Errorf("redis-setnx %v: equal jitter %v, want %v", tc.params, got, tc.equal)
		}
		_ = l.Close()
	}
	l, err := newRedislock(context.Background(), ep, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.(*redislockLocker).bo.equal {
		t.Error("redislock: equal jitter, want full (its own strategy is the library's)")
	}
}
