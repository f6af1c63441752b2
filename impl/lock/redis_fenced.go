package lock

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// redis-fenced is redis-setnx plus a fencing token: one Lua script does
// SET key token NX PX ttl and, only when that succeeds, INCR of the companion
// key "<key>:fence", so every acquisition of a key gets a strictly larger
// fence than the one before. It promises that a resource which rejects stale
// fences sees one writer at a time even when a holder outlives its ttl; it
// breaks if the node loses the fence counter (restart without persistence,
// failover before replication), which hands out old fences again: after a
// kill of its node the counter restarts at 1, fences regress (checker
// fence-order), and a fencing resource that remembers the highest fence
// rejects every correct write until the counter passes it — safe, but the
// protected resource is unwritable (the Chaos suite's kill row).
func init() {
	Register(Info{
		Name:       "redis-fenced",
		Doc:        "redis-setnx + per-key INCR fencing token in the same Lua script; safe with a fencing resource, but a node restart without persistence resets the counter: fences regress and correct writes are rejected",
		RedisNodes: 1,
		Fencing:    true,
		Options:    redisHookOptions,
		New:        redisFactory("redis-fenced", redisOps{obtain: obtainFenced, release: releaseCAS, refresh: casRefresh}),
	})
}

// FenceKey is the Redis key holding the fencing counter of lock key in
// redis-fenced (it never expires).
func FenceKey(key string) string { return key + ":fence" }

// scriptFencedAcquire: KEYS[1] lock, KEYS[2] fence counter, ARGV[1] token,
// ARGV[2] ttl ms. Returns the new fence, or 0 when the lock is held.
var scriptFencedAcquire = redis.NewScript(`
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
  return redis.call("INCR", KEYS[2])
end
return 0`)

func obtainFenced(ctx context.Context, c *redis.Client, key, token string, ttl time.Duration, _ redisHooks) (uint64, error) {
	n, err := scriptFencedAcquire.Run(ctx, c, []string{key, FenceKey(key)}, token, ttl.Milliseconds()).Int64()
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, ErrNotAcquired
	}
	return uint64(n), nil
}
