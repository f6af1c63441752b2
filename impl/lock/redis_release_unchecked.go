package lock

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// redis-release-unchecked (mutant) acquires like redis-setnx but releases
// with a plain DEL, never checking the owner token. It promises nothing: a
// holder whose lease expired and was re-acquired by another client deletes
// that client's lock on release, letting a third one in beside it.
func init() {
	Register(Info{
		Name:       "redis-release-unchecked",
		Doc:        "MUTANT: redis-setnx with release by plain DEL; an expired holder's release frees the new holder's lock",
		Mutant:     true,
		RedisNodes: 1,
		Options:    redisHookOptions,
		New:        redisFactory("redis-release-unchecked", redisOps{obtain: obtainSetNX, release: releaseUnchecked, refresh: casRefresh}),
	})
}

// releaseUnchecked deletes the key whoever holds it; ErrNotHeld only when
// there was no key at all.
func releaseUnchecked(ctx context.Context, c *redis.Client, key, _ string, _ redisHooks) error {
	n, err := c.Del(ctx, key).Result()
	if err != nil {
		return fmt.Errorf("lock: release %q: DEL: %w", key, err)
	}
	if n == 0 {
		return ErrNotHeld
	}
	return nil
}
