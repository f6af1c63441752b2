package lock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/internal/option"
	"github.com/redis/go-redis/v9"
)

// TopologyRedisSentinel is the topology the Sentinel implementations need:
// one Redis primary, two replicas and three Sentinels (Info.Topology).
const TopologyRedisSentinel = "redis-sentinel"

// redis-sentinel-setnx is redis-setnx on a replicated Redis: the client
// (go-redis' failover client) asks Sentinel for the primary and follows it
// through a failover. Redis replicates asynchronously: a lock the primary
// acknowledged may not have reached any replica when the primary dies, and
// the replica Sentinel promotes then lets a second client take the same key
// while the first still holds it (SCENARIOS L6; redislock #30, redsync
// #163).
//
// redis-sentinel-wait adds WAIT numreplicas timeout after the SET, on the
// same connection, as Redisson does: an acquire counts only once
// wait-replicas replicas acknowledged the key; otherwise it deletes its key
// again (compare-and-delete) and reports not acquired. It closes the L6
// window when the replica Sentinel promotes is one that acknowledged; with
// wait-replicas below the number of replicas, the promoted replica may be
// one that did not (the acknowledging one died too, or Sentinel ranked the
// other first), and WAIT is not a consensus: a replica that acknowledged can
// still lose the key in a later failover of its own. Refresh and release are
// not waited for.
func init() {
	Register(Info{
		Name:     "redis-sentinel-setnx",
		Doc:      "SET NX PX on the primary Sentinel names (go-redis failover client); unsafe on failover: replication is asynchronous",
		Topology: TopologyRedisSentinel,
		Options:  redisClientOptions,
		New:      sentinelFactory("redis-sentinel-setnx", false),
	})
	Register(Info{
		Name:     "redis-sentinel-wait",
		Doc:      "redis-sentinel-setnx plus WAIT wait-replicas after each acquire (Redisson's approach); safe only if the promoted replica acknowledged",
		Topology: TopologyRedisSentinel,
		Options:  sentinelWaitOptions,
		New:      sentinelFactory("redis-sentinel-wait", true),
	})
}

var sentinelWaitOptions = append(append(option.Set{}, redisClientOptions...),
	option.Spec{Name: "wait-replicas", Kind: option.Int, Min: 1, Max: 16, Default: "1", Doc: "replicas that must acknowledge an acquire (WAIT numreplicas)"},
	option.Spec{Name: "wait-timeout", Kind: option.Duration, Default: "100ms", Doc: "how long WAIT waits for them (must be above 0: WAIT 0 blocks)"})

// ErrUnreplicated is the cause of an acquire redis-sentinel-wait gave back:
// fewer replicas than asked acknowledged its key in time.
var ErrUnreplicated = errors.New("lock: too few replicas acknowledged the key")

func sentinelFactory(name string, wait bool) Factory {
	return func(ctx context.Context, ep Endpoints, opt Options) (Locker, error) {
		p := params(opt.Params)
		bo, err := backoffFrom(p, JitterFull)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		obtain := obtainSetNX
		if wait {
			replicas, err := p.int("wait-replicas", 1)
			if err != nil {
				return nil, fmt.Errorf("lock %s: %w", name, err)
			}
			timeout, err := p.duration("wait-timeout", 100*time.Millisecond)
			if err != nil {
				return nil, fmt.Errorf("lock %s: %w", name, err)
			}
			if replicas < 1 || timeout <= 0 {
				return nil, fmt.Errorf("lock %s: wait-replicas=%d wait-timeout=%v: want at least 1 replica and a timeout above 0 (WAIT 0 blocks forever)", name, replicas, timeout)
			}
			obtain = obtainWaited(replicas, timeout)
		}
		c, err := newSentinelClient(ep, p, name)
		if err != nil {
			return nil, err
		}
		ops := redisOps{obtain: obtain, release: releaseCAS, refresh: casRefresh}
		return WithOptions(&redisLocker{name: name, c: c, ops: ops, clock: opt.Clock(), bo: bo}, opt), nil
	}
}

// newSentinelClient is newRedisClient's failover twin: the same timeouts,
// no command retries, one dial attempt, and ep.Sentinel.Dial for every
// connection (to the Sentinels and to the primary they name).
func newSentinelClient(ep Endpoints, p params, impl string) (*redis.Client, error) {
	s := ep.Sentinel
	if s == nil || s.Master == "" || len(s.Addrs) == 0 {
		return nil, fmt.Errorf("lock %s: needs the %s topology (a Sentinel master name and addresses), got none: run it with --topology %s", impl, TopologyRedisSentinel, TopologyRedisSentinel)
	}
	dial, err := p.duration("dial-timeout", time.Second)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", impl, err)
	}
	read, err := p.duration("read-timeout", 500*time.Millisecond)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", impl, err)
	}
	write, err := p.duration("write-timeout", 500*time.Millisecond)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", impl, err)
	}
	pool, err := p.int("pool-size", 4)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", impl, err)
	}
	dialer := s.Dial
	if dialer == nil {
		d := &net.Dialer{Timeout: dial}
		dialer = d.DialContext
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:            s.Master,
		SentinelAddrs:         append([]string(nil), s.Addrs...),
		SentinelPassword:      s.SentinelPassword,
		Password:              s.Password,
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
	}), nil
}

// obtainWaited is SET NX PX then WAIT replicas timeout in one pipeline (one
// connection: WAIT counts the acknowledgements of its own connection's
// writes). Too few acknowledgements return ErrUnreplicated, which
// TryAcquire settles by deleting the key again.
func obtainWaited(replicas int, timeout time.Duration) func(context.Context, *redis.Client, string, string, time.Duration, redisHooks) (uint64, error) {
	return func(ctx context.Context, c *redis.Client, key, token string, ttl time.Duration, _ redisHooks) (uint64, error) {
		var set *redis.StatusCmd
		var wait *redis.Cmd
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			set = p.SetArgs(ctx, key, token, redis.SetArgs{Mode: "NX", TTL: ttl})
			wait = p.Do(ctx, "WAIT", replicas, timeout.Milliseconds())
			return nil
		})
		if set == nil || wait == nil {
			return 0, err
		}
		switch serr := set.Err(); {
		case errors.Is(serr, redis.Nil):
			return 0, ErrNotAcquired
		case isReadOnly(serr):
			return 0, fmt.Errorf("%w: %w", ErrNotAcquired, serr) // a demoted primary refused the write
		case serr != nil:
			return 0, serr
		}
		n, werr := wait.Int64()
		if werr != nil {
			return 0, fmt.Errorf("WAIT %d after SET: %w", replicas, werr)
		}
		if n < int64(replicas) {
			return 0, fmt.Errorf("%w: %d of %d within %v", ErrUnreplicated, n, replicas, timeout)
		}
		return 0, nil
	}
}

// isReadOnly says whether err is Redis' refusal to write on a replica (a
// primary demoted by a failover): the command was not applied.
func isReadOnly(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "READONLY")
}
