package lock

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/faultline-dev/faultline/internal/blockconn"
)

// OptIO is the lock option (Params key) choosing how a go-redis
// connection waits for its replies: IONetpoll (the default) or
// IOBlocking.
const (
	OptIO      = "io"
	IONetpoll  = "netpoll"
	IOBlocking = "blocking"
)

// RedisDialer is the go-redis Options.Dialer for io (nil: go-redis' own,
// i.e. the netpoller): IOBlocking connects with a dial timeout of dial and
// waits for replies in the kernel on the calling goroutine's thread
// (internal/blockconn: 2 syscalls and 1 thread wake-up per request instead
// of about 6 and 1.5), every read and write deadline still honoured and
// Close waking a blocked read. Use it where one request is in flight at a
// time; each connection waiting holds an OS thread.
func RedisDialer(io string, dial time.Duration) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	switch io {
	case "", IONetpoll:
		return nil, nil
	case IOBlocking:
		return blockconn.Dialer(&net.Dialer{Timeout: dial, KeepAlive: 15 * time.Second}), nil
	}
	return nil, fmt.Errorf("lock: io %q: valid are %s, %s", io, IONetpoll, IOBlocking)
}

// newRedisClient builds a go-redis client for one lock node. It never
// retries a command (MaxRetries -1: a retried write after EOF would break
// at-most-once), dials once, and bounds every socket operation; Params
// "dial-timeout" (1s), "read-timeout" (500ms), "write-timeout" (500ms) and
// "pool-size" (4) override the defaults, and "io" picks how connections
// wait for replies (RedisDialer). Every call is also bounded by its
// context (ContextTimeoutEnabled).
func newRedisClient(ep RedisEndpoint, p params) (*redis.Client, error) {
	dial, err := p.duration("dial-timeout", time.Second)
	if err != nil {
		return nil, err
	}
	read, err := p.duration("read-timeout", 500*time.Millisecond)
	if err != nil {
		return nil, err
	}
	write, err := p.duration("write-timeout", 500*time.Millisecond)
	if err != nil {
		return nil, err
	}
	pool, err := p.int("pool-size", 4)
	if err != nil {
		return nil, err
	}
	dialer, err := RedisDialer(p[OptIO], dial)
	if err != nil {
		return nil, err
	}
	if ep.Addr == "" {
		return nil, fmt.Errorf("lock: redis endpoint %q has no address: give the factory the nodes' proxied or direct host:port", ep.Name)
	}
	return redis.NewClient(&redis.Options{
		Addr:                  ep.Addr,
		Password:              ep.Password,
		Dialer:                dialer,
		Protocol:              2,
		MaxRetries:            -1,
		DialerRetries:         1,
		DialTimeout:           dial,
		ReadTimeout:           read,
		WriteTimeout:          write,
		ContextTimeoutEnabled: true,
		PoolSize:              pool,
		PoolTimeout:           dial,
		DisableIdentity:       true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}), nil
}

// newRedisClients builds one client per endpoint, failing unless there are
// exactly want endpoints (want 0: at least one, the first is used).
func newRedisClients(ep Endpoints, p params, want int, impl string) ([]*redis.Client, error) {
	switch {
	case want == 0 && len(ep.Redis) == 0:
		return nil, fmt.Errorf("lock %s: needs a Redis endpoint, got none", impl)
	case want > 0 && len(ep.Redis) != want:
		return nil, fmt.Errorf("lock %s: needs exactly %d Redis endpoints (independent masters), got %d", impl, want, len(ep.Redis))
	}
	eps := ep.Redis
	if want == 0 {
		eps = eps[:1]
	}
	out := make([]*redis.Client, 0, len(eps))
	for _, e := range eps {
		c, err := newRedisClient(e, p)
		if err != nil {
			closeRedis(out)
			return nil, fmt.Errorf("lock %s: %w", impl, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func closeRedis(cs []*redis.Client) error {
	var first error
	for _, c := range cs {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Lua scripts shared by the Redis implementations. KEYS[1] is the lock key,
// ARGV[1] the owner token.
const (
	// compare-and-delete: 1 deleted, 0 not ours (or gone).
	luaRelease = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`
	// compare-and-pexpire (ARGV[2] = ttl ms): 1 extended, 0 not ours.
	luaRefresh = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`
)

var (
	scriptRelease = redis.NewScript(luaRelease)
	scriptRefresh = redis.NewScript(luaRefresh)
)

// casRelease deletes key only if it holds token.
func casRelease(ctx context.Context, c *redis.Client, key, token string) error {
	n, err := scriptRelease.Run(ctx, c, []string{key}, token).Int64()
	if err != nil {
		return fmt.Errorf("lock: release %q on %s: %w", key, c.Options().Addr, err)
	}
	if n == 0 {
		return ErrNotHeld
	}
	return nil
}

// casRefresh sets key's ttl only if it holds token.
func casRefresh(ctx context.Context, c *redis.Client, key, token string, ttl time.Duration) error {
	n, err := scriptRefresh.Run(ctx, c, []string{key}, token, ttl.Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("lock: refresh %q on %s: %w", key, c.Options().Addr, err)
	}
	if n == 0 {
		return ErrNotHeld
	}
	return nil
}

// checkTTL rejects ttls Redis cannot express (PX takes whole milliseconds).
func checkTTL(ttl time.Duration) error {
	if ttl < time.Millisecond {
		return fmt.Errorf("lock: ttl %v is below 1ms: give a ttl of at least a few milliseconds", ttl)
	}
	return nil
}
