package lock_test

import (
	"context"
	"errors"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/infra"
	"github.com/redis/go-redis/v9"
)

// slowNodes adds a 150 ms reply latency on the proxies of the given Redis
// nodes until the end of the test.
func slowNodes(t *testing.T, idx ...int) {
	t.Helper()
	slowNodesBy(t, 150, idx...)
}

// slowNodesBy adds a reply latency of ms milliseconds on the proxies of
// the given Redis nodes until the end of the test, or until the returned
// function removes it.
func slowNodesBy(t *testing.T, ms int, idx ...int) (remove func()) {
	t.Helper()
	rs := testEnv.env.ByKind(infra.Redis)
	var removes []func()
	for _, i := range idx {
		px := rs[i].Proxy()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := px.AddToxic(ctx, infra.Toxic{Name: "slow", Type: "latency", Stream: "downstream", Toxicity: 1,
			Attributes: map[string]any{"latency": ms}})
		cancel()
		if err != nil {
			t.Fatalf("latency on %s: %v", rs[i].Name(), err)
		}
		removes = append(removes, sync.OnceFunc(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = px.RemoveToxic(ctx, "slow")
		}))
	}
	remove = func() {
		for _, r := range removes {
			r()
		}
	}
	t.Cleanup(remove)
	return remove
}

// eventually polls cond every 10 ms until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		elapse(10 * time.Millisecond)
	}
}

// valueOn is key's value on direct Redis node i ("" when absent).
func valueOn(t *testing.T, c *redis.Client, key string) string {
	t.Helper()
	v, err := c.Get(ctxFor(t, time.Second), key).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	return v
}

// TestRedlockReleaseReachesLateNodes: with two of five nodes slow, redlock
// answers at its quorum of three while the slow nodes' SETs are still in
// flight; a release right after must still delete the token on the slow
// nodes too (after their late SET), so no node keeps the key.
func TestRedlockReleaseReachesLateNodes(t *testing.T) {
	needEnv(t)
	slowNodes(t, 3, 4)
	l := newLockerOn(t, mustLookup(t, "redlock"), endpointsFor(mustLookup(t, "redlock"), testEnv.proxied), lock.Options{})
	key := uniqueKey(t)
	lease, err := l.TryAcquire(ctxFor(t, 2*time.Second), key, 5*time.Second)
	if err != nil {
		t.Fatalf("TryAcquire with 2 of 5 nodes slow: %v", err)
	}
	if err := l.Release(ctxFor(t, 2*time.Second), lease); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if !goneFromEveryNode(t, key, 3*time.Second) {
		t.Fatalf("released lease %s still on some node 3 s later (token %s)", key, lease.Token)
	}
}

// TestRedlockFailedAttemptCleansUp: A's token holds a key on nodes 1-3; a
// redlock attempt gets only nodes 4-5 and fails; its token must vanish from
// those two while A's stays on its three.
func TestRedlockFailedAttemptCleansUp(t *testing.T) {
	needEnv(t)
	key := uniqueKey(t)
	raws := make([]*redis.Client, 5)
	for i := range raws {
		raws[i] = rawRedis(t, i)
		if i < 3 {
			if err := raws[i].Set(ctxFor(t, time.Second), key, "A", 10*time.Second).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	l := newLocker(t, mustLookup(t, "redlock"), lock.Options{})
	if _, err := l.TryAcquire(ctxFor(t, 2*time.Second), key, 5*time.Second); !errors.Is(err, lock.ErrNotAcquired) {
		t.Fatalf("TryAcquire against a key held on 3 of 5 nodes: %v, want ErrNotAcquired", err)
	}
	if !eventually(3*time.Second, func() bool { return valueOn(t, raws[3], key) == "" && valueOn(t, raws[4], key) == "" }) {
		t.Fatalf("failed attempt's token still on redis-4/5: %q, %q", valueOn(t, raws[3], key), valueOn(t, raws[4], key))
	}
	for i := range 3 {
		if v := valueOn(t, raws[i], key); v != "A" {
			t.Errorf("redis-%d: %q, want A's token kept", i+1, v)
		}
	}
}

// setCalls is how many SET commands Redis node c has run.
func setCalls(t *testing.T, c *redis.Client) int64 { t.Helper(); return commandCount(t, c, "set") }

// TestRedlockRetriesAskDesignatedNode: while another owner holds a key on
// all five nodes, redlock's retries send SET to the key's designated node
// only; the other nodes see the first attempt and the winning one.
func TestRedlockRetriesAskDesignatedNode(t *testing.T) {
	needEnv(t)
	key := uniqueKey(t)
	h := fnv.New32a()
	h.Write([]byte(key))
	des := int(h.Sum32() % 5)
	raws := make([]*redis.Client, 5)
	before := make([]int64, 5)
	// A's key expires at the same instant on every node (PXAT): set one by
	// one with a relative ttl, under load the designated node's copy expired
	// first and the winning fan-out met the others' still-live copies (CI).
	expireAt := time.Now().Add(300 * time.Millisecond)
	for i := range raws {
		raws[i] = rawRedis(t, i)
		if err := raws[i].SetArgs(ctxFor(t, time.Second), key, "A", redis.SetArgs{ExpireAt: expireAt}).Err(); err != nil {
			t.Fatal(err)
		}
		before[i] = setCalls(t, raws[i])
	}
	l := newLocker(t, mustLookup(t, "redlock"), lock.Options{Params: map[string]string{"retry-min": "5ms", "retry-max": "20ms"}})
	lease, err := l.Acquire(ctxFor(t, 3*time.Second), key, time.Second)
	if err != nil {
		t.Fatalf("Acquire once A's key expires: %v", err)
	}
	_ = l.Release(ctxFor(t, time.Second), lease)
	for i, c := range raws {
		n := setCalls(t, c) - before[i]
		switch {
		case i == des && n < 3:
			t.Errorf("designated redis-%d: %d SETs, want the retries (>= 3) over 300 ms", i+1, n)
		case i != des && n > 2:
			t.Errorf("redis-%d: %d SETs, want at most 2 (first attempt, winning round)", i+1, n)
		}
	}
}

// TestRedlockScriptsSentByHash: redlock sends its release script by hash
// (EVALSHA) and, on a node that does not know the script (its cache
// flushed, as after a restart), once in full (EVAL) on NOSCRIPT. With every
// node's cache flushed after the acquire, a release must still delete the
// token everywhere and report nil; the next release runs EVALSHA alone.
func TestRedlockScriptsSentByHash(t *testing.T) {
	needEnv(t)
	l := newLocker(t, mustLookup(t, "redlock"), lock.Options{})
	raws := make([]*redis.Client, 5)
	for i := range raws {
		raws[i] = rawRedis(t, i)
	}
	for round := range 2 {
		key := uniqueKey(t)
		lease, err := l.TryAcquire(ctxFor(t, 2*time.Second), key, 5*time.Second)
		if err != nil {
			t.Fatalf("round %d: TryAcquire: %v", round, err)
		}
		evals, shas := make([]int64, 5), make([]int64, 5)
		for i, c := range raws {
			if round == 0 {
				if err := c.ScriptFlush(ctxFor(t, time.Second)).Err(); err != nil {
					t.Fatal(err)
				}
			}
			evals[i], shas[i] = commandCount(t, c, "eval"), commandCount(t, c, "evalsha")
		}
		if err := l.Release(ctxFor(t, 2*time.Second), lease); err != nil {
			t.Fatalf("round %d: Release: %v", round, err)
		}
		wantEval := int64(1 - round) // round 0: every cache was flushed
		if !eventually(3*time.Second, func() bool {
			for i, c := range raws {
				if valueOn(t, c, key) != "" || commandCount(t, c, "evalsha")-shas[i] != 1 || commandCount(t, c, "eval")-evals[i] != wantEval {
					return false
				}
			}
			return true
		}) {
			for i, c := range raws {
				t.Errorf("round %d: redis-%d: value %q, %d EVALSHA, %d EVAL (want none, 1, %d)", round, i+1,
					valueOn(t, c, key), commandCount(t, c, "evalsha")-shas[i], commandCount(t, c, "eval")-evals[i], wantEval)
			}
		}
	}
}

// commandCount is how many times Redis node c has run command name.
func commandCount(t *testing.T, c *redis.Client, name string) int64 {
	t.Helper()
	s, err := c.Info(ctxFor(t, time.Second), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(s) {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+name+":calls="); ok {
			n, err := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	return 0
}

// TestRedlockContendedKeyAsksDesignatedFirst: once a Locker found a key
// held by another owner (a node said "no"), its next Acquire of that key
// asks the designated node alone from the first attempt on, not all five;
// a key it never found held is asked on all five at once.
func TestRedlockContendedKeyAsksDesignatedFirst(t *testing.T) {
	needEnv(t)
	key, free := uniqueKey(t), uniqueKey(t)+"-free"
	h := fnv.New32a()
	h.Write([]byte(key))
	des := int(h.Sum32() % 5)
	raws := make([]*redis.Client, 5)
	for i := range raws {
		raws[i] = rawRedis(t, i)
		if err := raws[i].Set(ctxFor(t, time.Second), key, "A", 10*time.Second).Err(); err != nil {
			t.Fatal(err)
		}
	}
	l := newLocker(t, mustLookup(t, "redlock"), lock.Options{Params: map[string]string{"retry-min": "20ms", "retry-max": "20ms"}})
	if _, err := l.TryAcquire(ctxFor(t, time.Second), key, time.Second); !errors.Is(err, lock.ErrNotAcquired) {
		t.Fatalf("TryAcquire of A's key: %v, want ErrNotAcquired", err)
	}
	before := make([]int64, 5)
	for i, c := range raws {
		before[i] = setCalls(t, c)
	}
	if _, err := l.Acquire(ctxFor(t, 100*time.Millisecond), key, time.Second); !errors.Is(err, lock.ErrNotAcquired) {
		t.Fatalf("Acquire of A's key for 100 ms: %v, want ErrNotAcquired", err)
	}
	lease, err := l.Acquire(ctxFor(t, time.Second), free, time.Second)
	if err != nil {
		t.Fatalf("Acquire of a free key: %v", err)
	}
	_ = l.Release(ctxFor(t, time.Second), lease)
	for i, c := range raws {
		n := setCalls(t, c) - before[i]
		switch {
		case i == des && n < 2:
			t.Errorf("designated redis-%d: %d SETs, want the attempts over 100 ms (>= 2) and the free key's", i+1, n)
		case i != des && n != 1:
			t.Errorf("redis-%d: %d SETs, want 1 (the free key's; none for the contended key)", i+1, n)
		}
	}
}

// goneFromEveryNode polls the five Redis nodes directly until key is on
// none of them (true) or within passes (false, each node's value logged).
func goneFromEveryNode(t *testing.T, key string, within time.Duration) bool {
	t.Helper()
	raws := make([]*redis.Client, 5)
	for i := range raws {
		raws[i] = rawRedis(t, i)
	}
	if eventually(within, func() bool {
		for _, c := range raws {
			if valueOn(t, c, key) != "" {
				return false
			}
		}
		return true
	}) {
		return true
	}
	for i, c := range raws {
		t.Logf("redis-%d: %q", i+1, valueOn(t, c, key))
	}
	return false
}
