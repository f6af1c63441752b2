package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/faultline-dev/faultline/infra"
)

func init() {
	Register(&lockWorkload{
		name: "counter",
		doc: "each worker locks one of --keys keys, reads a counter on the Redis node \"resource\", writes it +1, releases; " +
			"the resource logs every write (mutual exclusion, lost updates)",
		node: infra.NodeSpec{Name: "resource", Kind: infra.Redis},
		open: openRedisResource,
	})
}

// writeScript applies a counter write and appends it to the key's log, in
// one atomic step of the resource: KEYS counter, log, seq; ARGV expected,
// new, process, token, fence. It returns the value before the write.
var writeScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local seq = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('RPUSH', KEYS[2], cjson.encode({seq = tostring(seq), key = ARGV[6], process = ARGV[3], token = ARGV[4],
  fence = ARGV[5], expected = ARGV[1], current = tostring(cur), new = ARGV[2]}))
return cur
`)

// redisResource is the counter workload's oracle: counters on a Redis node
// of their own ("resource"), each write appended to a per-key log by a Lua
// script, so the log is the resource's own apply order. It does not fence.
type redisResource struct {
	c      *redis.Client // clients' path (proxied or direct)
	direct *redis.Client // for reset and dump: never through faults
	prefix string        // Target.KeyPrefix: the lock keys carry it already
}

func openRedisResource(_ context.Context, n infra.Node, direct bool, t Target) (resource, error) {
	addr := n.Addr()
	if direct {
		addr = n.DirectAddr()
	}
	return &redisResource{
		c:      newRedis(addr, n.Password(), t.OpTimeout, 256),
		direct: followRedis(n, 10*time.Second, 4),
		prefix: t.KeyPrefix,
	}, nil
}

// followRedis is a client of node n's server that dials its direct
// address anew for each connection: a restart may move it (an external
// container's ephemeral port, when "resource" shares a killed node's
// server).
func followRedis(n infra.Node, timeout time.Duration, pool int) *redis.Client {
	d := &net.Dialer{Timeout: timeout}
	return redis.NewClient(&redis.Options{
		Addr: n.DirectAddr(), Password: n.Password(),
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, n.DirectAddr())
		},
		MaxRetries:  -1,
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		ContextTimeoutEnabled: true,
		PoolSize:              pool,
		PoolTimeout:           timeout,
	})
}

// counterKey, logKey and seqKey are the resource's keys for lock key k
// (which starts with r.prefix): each starts with r.prefix.
func (r *redisResource) counterKey(k string) string {
	return r.prefix + "counter:" + strings.TrimPrefix(k, r.prefix)
}
func (r *redisResource) logKey(k string) string {
	return r.prefix + "log:" + strings.TrimPrefix(k, r.prefix)
}
func (r *redisResource) seqKey() string { return r.prefix + "seq" }

func (r *redisResource) reset(ctx context.Context, keys []string) error {
	if err := clearRedis(ctx, r.direct, r.prefix); err != nil {
		return err
	}
	pipe := r.direct.Pipeline()
	for _, k := range keys {
		pipe.Set(ctx, r.counterKey(k), 0, 0)
	}
	_, err := pipe.Exec(ctx)
	return err
}

func (r *redisResource) read(ctx context.Context, key string, _ uint64) (int64, error) {
	v, err := r.c.Get(ctx, r.counterKey(key)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, err
}

func (r *redisResource) write(ctx context.Context, key string, w logEntry) error {
	return writeScript.Run(ctx, r.c, []string{r.counterKey(key), r.logKey(key), r.seqKey()},
		w.Expected, w.New, w.Process, w.Token, strconv.FormatUint(w.Fence, 10), key).Err()
}

func (r *redisResource) dump(ctx context.Context, keys []string) ([]logEntry, map[string]int64, error) {
	// The log's length first, so that it is allocated once: a long run's
	// (251,000 writes after 1,000,000 operations, 80 bytes each) grown by
	// appends held two copies at each growth.
	pipe := r.direct.Pipeline()
	lens := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		lens[i] = pipe.LLen(ctx, r.logKey(k))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, nil, fmt.Errorf("read log lengths: %w", err)
	}
	n := 0
	for _, l := range lens {
		n += int(l.Val())
	}
	log := make([]logEntry, 0, n)
	finals := map[string]int64{}
	for _, k := range keys {
		lines, err := r.direct.LRange(ctx, r.logKey(k), 0, -1).Result()
		if err != nil {
			return nil, nil, fmt.Errorf("read log of %s: %w", k, err)
		}
		for i, l := range lines {
			var e logEntry
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				return nil, nil, fmt.Errorf("log of %s, entry %d %q: %w", k, i, l, err)
			}
			if e.Key == k {
				e.Key = k // one string for the key's entries, not one each
			}
			log = append(log, e)
		}
		v, err := r.direct.Get(ctx, r.counterKey(k)).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, nil, fmt.Errorf("read counter %s: %w", k, err)
		}
		finals[k] = v
	}
	sortLog(log)
	return log, finals, nil
}

func (r *redisResource) close() {
	r.c.Close()
	r.direct.Close()
}
