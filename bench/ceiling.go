package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/infra"
)

// CeilingPoint is the harness's own ceiling at one client count for one
// raw command (no lock): faultline's workers — one go-redis connection
// each, every request logged to a zstd-compressed history and timed into
// the recorder's histograms, as a phase does — against redis-benchmark
// with the same number of clients, on the same node in the same
// measurement. Ratio = faultline ÷ redis-benchmark throughput: near 1 the
// harness keeps up with the server; a figure a run reports near
// FaultlineRPS is the harness's limit, not the system's.
type CeilingPoint struct {
	Op                string  `json:"op"` // "ping" or "set"
	Clients           int     `json:"clients"`
	Requests          int     `json:"requests"`
	FaultlineRPS      float64 `json:"faultline_rps"`
	RedisBenchmarkRPS float64 `json:"redis_benchmark_rps"`
	// GoRedisRPS is the same loop without the recorder (no history, no
	// histograms): FaultlineRPS ÷ GoRedisRPS is what recording costs,
	// GoRedisRPS ÷ RedisBenchmarkRPS what the Go client costs.
	GoRedisRPS float64 `json:"go_redis_rps"`
	Ratio      float64 `json:"ratio"`
	// IO is how faultline's connections waited for replies: "blocking"
	// (in the kernel) or "netpoll" (Go's netpoller), as a run with as many
	// clients does (RedisIO) unless CeilingOptions.IO says otherwise.
	IO string `json:"io"`
	// HistoryBytesPerOp is the compressed history written per request
	// (invocation and completion).
	HistoryBytesPerOp float64 `json:"history_bytes_per_op"`
}

// CeilingOptions say what MeasureCeiling measures.
type CeilingOptions struct {
	Ops      []string // "ping", "set"; default both
	Clients  []int    // default 1 and 50
	Requests int      // per tool per point; default 20000
	// Rounds alternates the two tools this many times per point and keeps
	// each one's best round (a busy machine's noise only ever slows a
	// round down); default 3.
	Rounds         int
	RedisBenchmark string // binary; "" = on PATH
	// IO forces how faultline's connections wait for replies ("netpoll",
	// "blocking"); "" = as a run with as many clients (RedisIO).
	IO string
	// Timeout bounds one tool's round (default 30 s).
	Timeout time.Duration
}

func (o CeilingOptions) withDefaults() CeilingOptions {
	if len(o.Ops) == 0 {
		o.Ops = []string{"ping", "set"}
	}
	if len(o.Clients) == 0 {
		o.Clients = []int{1, 50}
	}
	if o.Requests <= 0 {
		o.Requests = 20000
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return o
}

// MeasureCeiling measures the harness ceiling on node's direct address,
// one point per (op, clients).
func MeasureCeiling(ctx context.Context, node infra.Node, opt CeilingOptions) ([]CeilingPoint, error) {
	opt = opt.withDefaults()
	var out []CeilingPoint
	for _, op := range opt.Ops {
		if op != "ping" && op != "set" {
			return nil, &UsageError{Msg: fmt.Sprintf("ceiling: op %q: valid are ping, set", op)}
		}
		for _, n := range opt.Clients {
			if n < 1 || n > 1000 {
				return nil, &UsageError{Msg: fmt.Sprintf("ceiling: %d clients: give 1 to 1000", n)}
			}
			p := CeilingPoint{Op: op, Clients: n, Requests: opt.Requests, IO: opt.IO}
			if p.IO == "" {
				p.IO = RedisIO(n)
			}
			if _, err := lock.RedisDialer(p.IO, time.Second); err != nil {
				return nil, &UsageError{Msg: fmt.Sprintf("ceiling: %v", err)}
			}
			for range opt.Rounds {
				rctx, cancel := context.WithTimeout(ctx, opt.Timeout)
				rb, err := redisBenchmark(rctx, opt.RedisBenchmark, node.DirectAddr(), node.Password(), op, n, opt.Requests)
				cancel()
				if err != nil {
					return out, err
				}
				p.RedisBenchmarkRPS = max(p.RedisBenchmarkRPS, rb.rps)
				rctx, cancel = context.WithTimeout(ctx, opt.Timeout)
				rps, perOp, err := faultlineRaw(rctx, node.DirectAddr(), node.Password(), p.IO, op, n, opt.Requests, true)
				cancel()
				if err != nil {
					return out, err
				}
				if rps > p.FaultlineRPS {
					p.FaultlineRPS, p.HistoryBytesPerOp = rps, perOp
				}
				rctx, cancel = context.WithTimeout(ctx, opt.Timeout)
				bare, _, err := faultlineRaw(rctx, node.DirectAddr(), node.Password(), p.IO, op, n, opt.Requests, false)
				cancel()
				if err != nil {
					return out, err
				}
				p.GoRedisRPS = max(p.GoRedisRPS, bare)
			}
			p.Ratio = p.FaultlineRPS / p.RedisBenchmarkRPS
			out = append(out, p)
		}
	}
	return out, nil
}

// redisBenchmark runs `redis-benchmark -t TEST -c clients -n requests
// --csv` (PING as ping_mbulk, SET with its default 3-byte value).
func redisBenchmark(ctx context.Context, bin, addr, password, op string, clients, requests int) (rbFigures, error) {
	if bin == "" {
		p, err := exec.LookPath("redis-benchmark")
		if err != nil {
			return rbFigures{}, fmt.Errorf("ceiling: redis-benchmark not found on PATH (install redis-tools): %w", err)
		}
		bin = p
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return rbFigures{}, fmt.Errorf("ceiling: address %q: %w", addr, err)
	}
	test := map[string]string{"ping": "ping_mbulk", "set": "set"}[op]
	cmd := exec.CommandContext(ctx, bin, "-h", host, "-p", port, "-a", password, "-t", test,
		"-n", strconv.Itoa(requests), "-c", strconv.Itoa(clients), "-r", "1000", "--csv")
	cmd.WaitDelay = time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return rbFigures{}, fmt.Errorf("ceiling: redis-benchmark %s -c %d: %w: %s", test, clients, err, firstLine(stderr.String()))
	}
	return parseRedisBenchmarkCSV(string(out))
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	mu sync.Mutex
	n  int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.n += int64(len(p))
	c.mu.Unlock()
	return len(p), nil
}

// faultlineRaw runs requests raw commands from clients workers, each with
// its own go-redis connection (as a phase's workers have), each request an
// invocation and a completion logged through the recorder to a compressed
// history, timed into the worker's histograms (without record: the bare
// loop). It returns the throughput and the compressed history bytes per
// request.
func faultlineRaw(ctx context.Context, addr, password, io, op string, clients, requests int, record bool) (float64, float64, error) {
	var sink countingWriter
	z, err := history.NewCompressor(&sink)
	if err != nil {
		return 0, 0, err
	}
	h := recorder.NewHistory(z, time.Now())
	stats := recorder.NewStats(h, []string{op}, time.Time{})
	// One go-redis connection per worker, held for the whole loop
	// (Client.Conn), speaking RESP2 as redis-benchmark does: a pooled
	// Client, even of size 1, health-checks the connection on every Get
	// with a non-blocking MSG_PEEK recvfrom, and on RESP3 (go-redis'
	// default) a connection not recently put back to the pool is peeked for
	// push notifications before each command — one or two extra syscalls
	// per request on top of the write and the reads (strace -f). The
	// connections wait for replies as io says (lock.RedisDialer), as the
	// lock implementations' do in a run.
	dialer, err := lock.RedisDialer(io, time.Second)
	if err != nil {
		return 0, 0, err
	}
	rcs := make([]*redis.Conn, clients)
	for i := range rcs {
		rc := redis.NewClient(&redis.Options{
			Addr: addr, Password: password, MaxRetries: -1, PoolSize: 1, Protocol: 2, Dialer: dialer,
			DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, PoolTimeout: time.Second,
			ContextTimeoutEnabled: true,
		})
		defer rc.Close()
		rcs[i] = rc.Conn()
		defer rcs[i].Close()
		if err := rcs[i].Ping(ctx).Err(); err != nil {
			return 0, 0, fmt.Errorf("ceiling: connect to %s: %w", addr, err)
		}
	}
	keys := make([]string, 1000) // redis-benchmark -r 1000: SET over 1000 keys
	for i := range keys {
		keys[i] = "key:" + strconv.Itoa(i)
	}
	var wg sync.WaitGroup
	errs := make([]error, clients)
	start := time.Now()
	for i := range clients {
		n := requests / clients
		if i < requests%clients {
			n++
		}
		w := stats.Worker(i, "raw")
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := rcs[i]
			for j := 0; j < n && ctx.Err() == nil; j++ {
				key := keys[j%len(keys)]
				var c recorder.Call
				if record {
					c = w.Invoke(0, history.Op{F: op, Key: key})
				}
				var err error
				if op == "set" {
					err = rc.Set(ctx, key, "xxx", 0).Err()
				} else {
					err = rc.Ping(ctx).Err()
				}
				typ := history.OK
				if err != nil {
					typ, errs[i] = history.Info, err
				}
				if record {
					w.Complete(c, typ, history.Op{Error: recorder.ErrorKind(err)})
				}
			}
		}()
	}
	wg.Wait()
	span := time.Since(start)
	if err := h.Close(); err != nil {
		return 0, 0, err
	}
	if err := z.Close(); err != nil {
		return 0, 0, err
	}
	for _, err := range errs {
		if err != nil {
			return 0, 0, fmt.Errorf("ceiling: faultline %s -c %d: %w", op, clients, err)
		}
	}
	if ctx.Err() != nil {
		return 0, 0, fmt.Errorf("ceiling: faultline %s -c %d: %d requests not done in time: %w", op, clients, requests, ctx.Err())
	}
	return float64(requests) / span.Seconds(), float64(sink.n) / float64(requests), nil
}

// WriteCeiling prints the ceiling points as a table.
func WriteCeiling(w io.Writer, ps []CeilingPoint) {
	fmt.Fprintf(w, "%-5s %7s %-8s %14s %18s %7s %16s %14s\n", "op", "clients", "io", "faultline/s", "redis-benchmark/s", "ratio", "go-redis alone/s", "history B/op")
	for _, p := range ps {
		fmt.Fprintf(w, "%-5s %7d %-8s %14.0f %18.0f %7.2f %16.0f %14.1f\n", p.Op, p.Clients, p.IO, p.FaultlineRPS, p.RedisBenchmarkRPS, p.Ratio, p.GoRedisRPS, p.HistoryBytesPerOp)
	}
}
