package lock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/faultline-dev/faultline/internal/clock"
)

// redis-seed-literal (mutant) is the lock recipe as it is often written:
// SETNX, then EXPIRE as a second command; release by GET, compare in Go, DEL
// (three commands). It promises nothing: a holder that dies between SETNX and
// EXPIRE leaves a key with no ttl, held forever (deadlock); a key that
// expires and is re-acquired between GET and DEL makes the old holder delete
// the new holder's lock.
//
// Test hooks (Options.Params): "crash-after-setnx"="true" makes TryAcquire
// return ErrSimulatedCrash right after a successful SETNX, without EXPIRE
// (the process dying there); "release-gap"=duration waits that long between
// the GET and the DEL of Release (the holder pausing there).
func init() {
	Register(Info{
		Name:       "redis-seed-literal",
		Doc:        "MUTANT: SETNX then EXPIRE, release by GET+compare+DEL; leaks forever if the holder dies between SETNX and EXPIRE",
		Mutant:     true,
		RedisNodes: 1,
		Options:    redisHookOptions,
		New:        redisFactory("redis-seed-literal", redisOps{obtain: obtainSeedLiteral, release: releaseSeedLiteral, refresh: refreshSeedLiteral}),
	})
}

func obtainSeedLiteral(ctx context.Context, c *redis.Client, key, token string, ttl time.Duration, h redisHooks) (uint64, error) {
	ok, err := c.SetNX(ctx, key, token, 0).Result()
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, ErrNotAcquired
	}
	if h.crashAfterSetNX {
		return 0, fmt.Errorf("lock redis-seed-literal: SETNX %q done, EXPIRE never sent: %w", key, ErrSimulatedCrash)
	}
	if err := c.PExpire(ctx, key, ttl).Err(); err != nil {
		return 0, err
	}
	return 0, nil
}

func releaseSeedLiteral(ctx context.Context, c *redis.Client, key, token string, h redisHooks) error {
	v, err := c.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return ErrNotHeld
	}
	if err != nil {
		return fmt.Errorf("lock: release %q: GET: %w", key, err)
	}
	if v != token {
		return ErrNotHeld
	}
	if err := clock.Sleep(ctx, h.releaseGap); err != nil {
		return err
	}
	if err := c.Del(ctx, key).Err(); err != nil {
		return fmt.Errorf("lock: release %q: DEL: %w", key, err)
	}
	return nil
}

func refreshSeedLiteral(ctx context.Context, c *redis.Client, key, token string, ttl time.Duration) error {
	v, err := c.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return ErrNotHeld
	}
	if err != nil {
		return fmt.Errorf("lock: refresh %q: GET: %w", key, err)
	}
	if v != token {
		return ErrNotHeld
	}
	if err := c.PExpire(ctx, key, ttl).Err(); err != nil {
		return fmt.Errorf("lock: refresh %q: PEXPIRE: %w", key, err)
	}
	return nil
}
