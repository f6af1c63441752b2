package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/bench"
	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/infra"
)

// ceilingCmd is `faultline ceiling`: the harness's own throughput on raw
// commands (PING, SET; no lock) at 1 and 50 clients against
// redis-benchmark with as many clients, on one Redis node it starts.
func ceilingCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("ceiling", "faultline ceiling [--clients 1,50] [--ops ping,set] [--requests N] [--rounds R] [--io auto|netpoll|blocking] [--json]\n\n"+
		"Starts one Redis node and measures faultline's own throughput on raw commands (no lock: every request logged to a\n"+
		"compressed history and timed, as in a run) against redis-benchmark with the same clients, best of R alternating\n"+
		"rounds each. A ratio near 1 means the harness keeps up with the server; a run whose throughput nears faultline/s\n"+
		"is measuring the harness. faultline's connections wait for replies as a run's with as many clients do: blocking\n"+
		"in the kernel at 1 client, Go's netpoller above (--io forces one). Exit 0 measured, 1 failed, 2 bad input.", stderr)
	provider := fs.String("provider", "local", "servers: auto, local (host binaries) or docker")
	clients := fs.String("clients", "1,50", "client counts, comma-separated")
	ops := fs.String("ops", "ping,set", "raw commands: ping, set")
	requests := fs.Int("requests", 20000, "requests per tool per round")
	rounds := fs.Int("rounds", 3, "alternating rounds per point (the best of each tool is kept)")
	io := fs.String("io", "auto", "how faultline's connections wait for replies: auto (blocking at 1 client, netpoll above, as in a run), netpoll or blocking")
	asJSON := fs.Bool("json", false, "print the points as JSON")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "faultline ceiling: unexpected argument %q (it takes flags only)\n", fs.Arg(0))
		return exitUsage
	}
	opt := bench.CeilingOptions{Ops: strings.Split(*ops, ","), Requests: *requests, Rounds: *rounds}
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1000 {
			fmt.Fprintf(stderr, "faultline ceiling: --clients %q: give client counts from 1 to 1000, comma-separated (e.g. 1,50)\n", *clients)
			return exitUsage
		}
		opt.Clients = append(opt.Clients, n)
	}
	for _, op := range opt.Ops {
		if op != "ping" && op != "set" {
			fmt.Fprintf(stderr, "faultline ceiling: --ops %q: valid commands are ping, set\n", *ops)
			return exitUsage
		}
	}
	switch *io {
	case "auto":
	case lock.IONetpoll, lock.IOBlocking:
		opt.IO = *io
	default:
		fmt.Fprintf(stderr, "faultline ceiling: --io %q: valid are auto, netpoll, blocking\n", *io)
		return exitUsage
	}
	switch *provider {
	case "auto", "local", "docker":
	default:
		fmt.Fprintf(stderr, "faultline ceiling: --provider %q: valid are auto, local, docker\n", *provider)
		return exitUsage
	}
	if *requests < 100 || *requests > 10_000_000 || *rounds < 1 || *rounds > 20 {
		fmt.Fprintln(stderr, "faultline ceiling: --requests must be 100 to 10,000,000 and --rounds 1 to 20")
		return exitUsage
	}
	env, err := infra.Up(ctx, infra.Spec{Nodes: []infra.NodeSpec{{Name: "redis-1", Kind: infra.Redis}}, Provider: *provider})
	if err != nil {
		fmt.Fprintf(stderr, "faultline ceiling: start Redis: %v\n", err)
		return exitFail
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		defer cancel()
		_ = env.Close(cctx)
	}()
	node, _ := env.Node("redis-1")
	points, err := bench.MeasureCeiling(ctx, node, opt)
	if err != nil {
		fmt.Fprintf(stderr, "faultline ceiling: %v\n", err)
		if _, ok := err.(*bench.UsageError); ok {
			return exitUsage
		}
		return exitFail
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(points)
		return exitOK
	}
	bench.WriteCeiling(stdout, points)
	return exitOK
}
