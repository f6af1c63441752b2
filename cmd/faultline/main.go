// Command faultline benchmarks and chaos-tests distributed locks and
// transactions on real Redis and PostgreSQL servers. This file is wiring
// only: flags to bench.Config, results to the terminal and the reports.
//
// Exit status: 0 done, 1 failed (or the gate found a regression), 2 usage
// error, 130 interrupted (SIGINT), 143 terminated (SIGTERM).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/bench"
	"github.com/faultline-dev/faultline/bench/workload"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/faultline-dev/faultline/infra"
	"github.com/faultline-dev/faultline/internal/shell"
	"github.com/faultline-dev/faultline/reports"
)

// Exit codes.
const (
	exitOK          = 0
	exitFail        = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func main() {
	defer infra.CloseAllOnPanic()
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `faultline — how fast is a distributed lock or transaction, and does it stay safe when things break?

Usage:
  faultline run [flags]          run a scenario (faultline run --help)
  faultline list                 implementations (mutants marked), workloads, faults
  faultline check DIR            re-run every checker on a saved run's history, rewrite its verdicts
  faultline report DIR           re-render DIR/report.html from a saved run
  faultline report --compare A B …  compare saved runs side by side
  faultline gate --baseline FILE RESULTS   CI regression gate (exit 1 on regression)
  faultline ceiling              the harness's own throughput (PING/SET, 1 and 50 clients) vs redis-benchmark
  faultline gc                   remove containers and temp dirs left by killed runs
  faultline gc --provider external --redis … --postgres …   remove the keys and schemas runs left on your servers
  faultline version

Each command takes --help.
`

// run is the CLI: args without the program name; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runCmd(ctx, rest, stdout, stderr)
	case "list":
		return listCmd(rest, stdout, stderr)
	case "report":
		return reportCmd(rest, stdout, stderr)
	case "gate":
		return gateCmd(rest, stdout, stderr)
	case "check":
		return checkCmd(rest, stdout, stderr)
	case "gc":
		return gcCmd(ctx, rest, stdout, stderr)
	case "version":
		return versionCmd(rest, stdout, stderr)
	case "ceiling":
		return ceilingCmd(ctx, rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "faultline: unknown command %q (valid: run, list, report, gate, gc, version, check, ceiling)\n\n%s", cmd, usage)
	return exitUsage
}

// newFlags makes a flag set whose errors go to stderr and whose --help
// prints the synopsis first.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args; it returns (exit code, false) when the caller must
// stop: 0 for --help, 2 for a bad flag.
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return 0, true
}

// listFlag is a repeatable flag; each value may also be a comma list when
// split is set.
type listFlag struct {
	vals  []string
	split bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }
func (l *listFlag) Set(s string) error {
	if !l.split {
		l.vals = append(l.vals, s)
		return nil
	}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			l.vals = append(l.vals, v)
		}
	}
	return nil
}

// kvFlag is a repeatable k=v flag.
type kvFlag map[string]string

func (m kvFlag) String() string { return "" }
func (m kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	m[k] = v
	return nil
}

// runFlags are the parsed flags of `faultline run`.
type runFlags struct {
	cfg     bench.Config
	format  string
	verbose bool
	// failOnViolation: exit 1 when a checker's verdict is invalid.
	failOnViolation bool
	// dryRun: print what a run on external servers would create, and stop.
	dryRun bool
}

// parseRun parses the flags of `faultline run` into a validated config;
// ok false means stop with code (0 after --help, 2 on a usage error).
func parseRun(args []string, stderr io.Writer) (rf runFlags, code int, ok bool) {
	fs := newFlags("run", "faultline run --impl NAME[,NAME…] [--workload counter] [flags]\n\n"+
		"Runs each implementation in turn on the same servers, writes DIR/{results.json,history.jsonl.zst,report.html}\n"+
		"and prints a summary. Fault specs: "+chaos.Grammar, stderr)
	cfg := &rf.cfg
	impls := &listFlag{split: true}
	faults := &listFlag{}
	nemesis := &listFlag{split: true}
	lockOpts, txnOpts, wlOpts := kvFlag{}, kvFlag{}, kvFlag{}
	fs.Var(impls, "impl", "implementations to run, comma separated (see faultline list)")
	fs.StringVar(&cfg.Workload, "workload", bench.DefaultWorkload, "workload: "+strings.Join(workload.Names(), ", "))
	fs.IntVar(&cfg.Clients, "clients", bench.DefaultClients, "concurrent workers (processes)")
	fs.IntVar(&cfg.Share, "share", 1, "workers that drive one implementation client together, like goroutines sharing a client in a service (1-64; lock workloads only)")
	fs.DurationVar(&cfg.Duration, "duration", bench.DefaultDuration, "load phase per implementation, warm-up included")
	fs.Int64Var(&cfg.Ops, "ops", 0, "stop an implementation's phase after this many measured iterations (0 = no limit)")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "start of each phase excluded from the statistics")
	fs.IntVar(&cfg.Keys, "keys", bench.DefaultKeys, "number of lock keys (fewer keys = more contention)")
	fs.DurationVar(&cfg.TTL, "ttl", bench.DefaultTTL, fmt.Sprintf("lock lease (%v on a replicated --topology unless given)", bench.DefaultTopologyTTL))
	fs.DurationVar(&cfg.OpTimeout, "op-timeout", 0, "deadline of every call (default min(ttl,1s), at least 100ms)")
	fs.DurationVar(&cfg.AcquireTimeout, "acquire-timeout", 0, "deadline of a blocking acquire (default 2×ttl)")
	fs.Int64Var(&cfg.Seed, "seed", 0, "random seed (default: random, recorded in results.json)")
	fs.StringVar(&cfg.Provider, "provider", "auto", "servers: auto, local (host binaries), docker, or external (yours: --redis, --postgres, --targets)")
	var tf targetFlags
	tf.register(fs)
	fs.BoolVar(&rf.dryRun, "dry-run", false, "with --provider external: print what the run would create on the servers and which faults it refuses, connect to nothing")
	fs.StringVar(&cfg.Topology, "topology", "", "replicated topology the implementations run on: redis-sentinel (1 primary, 2 replicas, 3 Sentinels) or pg-standby; default independent nodes")
	fs.StringVar(&cfg.Path, "path", bench.PathAuto, "client path: auto (proxied only when a node/network fault is scheduled), direct, proxied")
	fs.StringVar(&cfg.Out, "out", "", "run directory (default reports/runs/<run-id>)")
	fs.Var(faults, "fault", "scripted fault, repeatable; times are relative to each implementation's phase: "+chaos.Grammar)
	fs.Var(nemesis, "nemesis", "random faults of these kinds, comma separated (e.g. partition,kill,pause)")
	fs.DurationVar(&cfg.NemesisInterval, "nemesis-interval", 10*time.Second, "one random fault per interval")
	fs.DurationVar(&cfg.Quiet, "quiet", 0, "quiet period after healing, before the final checks (default 2×ttl)")
	fs.DurationVar(&cfg.Checkpoint, "checkpoint", 0, "rewrite results.json every DUR during a phase with its figures so far, so a crash loses at most DUR of them (0 = off; >= 1s; default 1m when --duration is longer than 1m, else off)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop at this many iterations/s in total, latency from intended start (0 = closed loop)")
	fs.Var(lockOpts, "lock-opt", "lock implementation option key=value, repeatable (reentrant=true, watchdog=true, …; see faultline list)")
	fs.Var(txnOpts, "txn-opt", "transaction implementation option key=value, repeatable (crash-at=after-prepare, late-try=debit, relay-crash=2, …; see faultline list)")
	fs.Var(wlOpts, "opt", "workload option key=value, repeatable (bank: accounts=100, readers=2, inject-every=10, …; see faultline list)")
	fs.StringVar(&rf.format, "format", "text", "summary format: text, json (results.json to stdout) or gobench (benchstat lines)")
	fs.BoolVar(&rf.verbose, "v", false, "log progress details (slog) to stderr")
	fs.BoolVar(&rf.failOnViolation, "fail-on-violation", false, "exit 1 when any checker's verdict is invalid")
	if code, ok := parse(fs, args); !ok {
		return rf, code, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "faultline run: unexpected argument %q (flags only; see faultline run --help)\n", fs.Arg(0))
		return rf, exitUsage, false
	}
	switch rf.format {
	case "text", "json", "gobench":
	default:
		fmt.Fprintf(stderr, "faultline run: unknown --format %q (valid: text, json, gobench)\n", rf.format)
		return rf, exitUsage, false
	}
	seedSet := false
	fs.Visit(func(f *flag.Flag) { seedSet = seedSet || f.Name == "seed" })
	if !seedSet {
		cfg.Seed = rand.Int64N(1 << 31)
	}
	cfg.Impls, cfg.Faults, cfg.Nemesis = impls.vals, faults.vals, nemesis.vals
	given := givenFlags(fs)
	if err := checkFlags(*cfg, given); err != nil {
		fmt.Fprintf(stderr, "faultline run: %v\n", err)
		return rf, exitUsage, false
	}
	if cfg.Topology != "" && !given("ttl") {
		cfg.TTL = 0 // the topology's default (bench.Config.WithDefaults)
	}
	if len(nemesis.vals) == 0 {
		cfg.NemesisInterval = 0
	}
	if len(lockOpts) > 0 {
		cfg.LockOpts = lockOpts
	}
	if len(txnOpts) > 0 {
		cfg.TxnOpts = txnOpts
	}
	if len(wlOpts) > 0 {
		cfg.Opts = wlOpts
	}
	if tf.given() {
		ts, err := tf.targets()
		if err != nil {
			fmt.Fprintf(stderr, "faultline run: %v\n", err)
			return rf, exitUsage, false
		}
		cfg.External, cfg.Namespace = ts, tf.ns
	}
	cfg.Command = commandLine(args, seedSet, cfg.Seed)
	*cfg = withDefaults(*cfg, given)
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "faultline run: %v\n", err)
		return rf, exitUsage, false
	}
	return rf, 0, true
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	rf, code, ok := parseRun(args, stderr)
	if !ok {
		return code
	}
	cfg := rf.cfg
	if rf.dryRun {
		out, err := bench.DryRun(cfg)
		if err != nil {
			fmt.Fprintf(stderr, "faultline run: %v\n", err)
			return exitUsage
		}
		fmt.Fprint(stdout, out)
		return exitOK
	}
	level := slog.LevelWarn
	if rf.verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Progress = stderr
	cfg.ProgressBar = isTerminal(stderr)

	// First Ctrl-C or SIGTERM: stop gracefully (flush the history, dump
	// the resource, check, save), then exit 130 or 143. A second one:
	// infra's handler closes every environment and exits.
	ctx, intr, stop := notifyInterrupt(ctx)
	defer stop()
	for _, n := range cfg.Notes {
		fmt.Fprintf(stderr, "faultline run: note: %s\n", n)
	}

	if err := bench.CheckExternal(cfg); err != nil { // refusals come before the start line
		fmt.Fprintf(stderr, "faultline run: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stderr, "faultline %s: %s on %s, %d clients, %v each, seed %d → %s\n",
		bench.Version, cfg.Workload, strings.Join(cfg.Impls, ","), cfg.Clients, cfg.Duration, cfg.Seed, cfg.Out)
	res, err := bench.Run(ctx, cfg)
	var ue *bench.UsageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "faultline run: %v\n", err)
		return exitUsage
	}
	if res == nil {
		fmt.Fprintf(stderr, "faultline run: %v\n", err)
		if intr.signalled() {
			return intr.exitCode()
		}
		return exitFail
	}
	if rerr := reports.WriteHTML(cfg.Out); rerr != nil {
		fmt.Fprintf(stderr, "faultline run: report.html: %v\n", rerr)
	}
	switch rf.format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	case "gobench":
		_ = reports.WriteGoBench(stdout, res)
	default:
		bench.WriteSummary(stdout, res, cfg.Out)
		if _, serr := os.Stat(filepath.Join(cfg.Out, reports.ReportFile)); serr == nil {
			fmt.Fprintf(stdout, "report:  %s\n", filepath.Join(cfg.Out, reports.ReportFile))
		}
	}
	switch {
	case res.Interrupted || intr.signalled():
		fmt.Fprintf(stderr, "faultline run: interrupted; what was done is saved in %s\n", cfg.Out)
		return intr.exitCode()
	case bench.OnlyMutantPhaseErrors(err):
		fmt.Fprintf(stderr, "faultline run: note: %v\n"+
			"faultline run: note: a mutant's phase could not finish (its recovery never completes, as the mutant is made to);\n"+
			"its verdicts are written in %s (exit 0; --fail-on-violation fails on invalid verdicts)\n", err, cfg.Out)
	case err != nil && len(res.Notes) > 0:
		fmt.Fprintf(stderr, "faultline run: failed (see the notes above; results saved in %s)\n", cfg.Out)
		return exitFail
	case err != nil:
		fmt.Fprintf(stderr, "faultline run: %v\n", err)
		return exitFail
	}
	if rf.failOnViolation {
		if n := invalidVerdicts(res); n > 0 {
			fmt.Fprintf(stderr, "faultline run: %d invalid verdict(s) (--fail-on-violation)\n", n)
			return exitFail
		}
	}
	return exitOK
}

// isTerminal says whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// commandLine is the command that reproduces the run: the arguments given,
// plus the seed when it was random.
func commandLine(args []string, seedSet bool, seed int64) string {
	parts := append([]string{"faultline", "run"}, redactArgs(args)...)
	if !seedSet {
		parts = append(parts, "--seed", strconv.FormatInt(seed, 10))
	}
	return shell.Join(parts)
}

// redactArgs is args with every --postgres value reduced to
// user@host:port/db (no password, no parameters), for the recorded command.
func redactArgs(args []string) []string {
	out := slices.Clone(args)
	redact := func(v string) string {
		parts := strings.Split(v, ",")
		for i, p := range parts {
			parts[i] = infra.RedactDSN(p)
		}
		return strings.Join(parts, ",")
	}
	for i := 0; i < len(out); i++ {
		name, val, hasVal := strings.Cut(strings.TrimLeft(out[i], "-"), "=")
		if name != "postgres" || !strings.HasPrefix(out[i], "-") {
			continue
		}
		if hasVal {
			out[i] = out[i][:len(out[i])-len(val)] + redact(val)
		} else if i+1 < len(out) {
			out[i+1] = redact(out[i+1])
			i++
		}
	}
	return out
}

func listCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("list", "faultline list: implementations (mutants marked), workloads and fault kinds", stderr)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	fmt.Fprintln(stdout, "Lock implementations (workloads counter, fenced-counter):")
	for _, i := range lock.All() {
		tag := ""
		if i.Mutant {
			tag = " [mutant]"
		}
		if i.Fencing {
			tag += " [fencing]"
		}
		if i.Topology != "" {
			tag += " [--topology " + i.Topology + "]"
		}
		fmt.Fprintf(stdout, "  %-24s %s%s\n", i.Name, i.Doc, tag)
	}
	fmt.Fprintln(stdout, "\nTransaction implementations (workload bank; single-db is the baseline every bank run adds):")
	for _, i := range txn.All() {
		tag := ""
		if i.Mutant {
			tag = " [mutant]"
		}
		fmt.Fprintf(stdout, "  %-24s %s%s\n", i.Name, i.Doc, tag)
	}
	fmt.Fprintln(stdout, "\nYour own implementation, in any language (lock or transaction, as its init reply declares):")
	fmt.Fprintln(stdout, "  exec:PATH[:NAME]         run the executable PATH, one process per worker, speaking the JSON-lines")
	fmt.Fprintln(stdout, "                           protocol of docs/protocol.md; mix freely with built-ins, e.g.")
	fmt.Fprintln(stdout, "                           --impl exec:examples/python/seed_lock.py,exec:examples/python/safe_lock.py,redis-setnx")
	fmt.Fprintln(stdout, "\nWorkloads (their options: --opt key=value):")
	for _, w := range workload.All() {
		fmt.Fprintf(stdout, "  %-24s %s\n", w.Name(), w.Doc())
		if o, ok := w.(workload.Optioner); ok {
			for _, s := range o.Options() {
				fmt.Fprintf(stdout, "      --opt %s\n", s.Usage())
			}
		}
	}
	fmt.Fprintln(stdout, "\nImplementation options (--lock-opt for locks, --txn-opt for transactions):")
	for _, s := range lock.CommonOptions {
		fmt.Fprintf(stdout, "  every lock: --lock-opt %s\n", s.Usage())
	}
	seen := map[string]bool{}
	for _, w := range workload.All() {
		for _, i := range w.Impls() {
			if seen[i.Name] {
				continue
			}
			seen[i.Name] = true
			for _, s := range i.Options {
				if _, common := lock.CommonOptions.Lookup(s.Name); common {
					continue
				}
				fmt.Fprintf(stdout, "  %s (%s): %s\n", i.Name, w.Name(), s.Usage())
			}
		}
	}
	fmt.Fprintln(stdout, "\nFaults (--fault "+chaos.Grammar+"):")
	for _, k := range chaos.Kinds() {
		params := ""
		if k.Params != "" {
			params = " (params: " + k.Params + ")"
		}
		if k.Topology {
			params += " [needs --topology]"
		}
		fmt.Fprintf(stdout, "  %-18s %-8s %s%s\n", k.Name, k.Class, k.Doc, params)
	}
	return exitOK
}

func gcCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("gc", "faultline gc: remove containers (label dev.faultline=1) and temp dirs left by killed runs; run it when no run is going on\n"+
		"faultline gc --provider external --redis … --postgres … [--namespace NS]: remove the keys (faultline:NS:*) and schemas (faultline_NS) runs left on your servers", stderr)
	provider := fs.String("provider", "", "external: clean the servers named by --redis/--postgres/--targets instead of containers and temp dirs")
	var tf targetFlags
	tf.register(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	var (
		removed []string
		err     error
	)
	switch {
	case *provider == "external":
		ts, terr := tf.targets()
		if terr != nil {
			fmt.Fprintf(stderr, "faultline gc: %v\n", terr)
			return exitUsage
		}
		removed, err = infra.GCExternal(ctx, ts, tf.ns)
	case *provider != "" || tf.given():
		fmt.Fprintf(stderr, "faultline gc: --provider %q: only --provider external takes targets (plain faultline gc cleans containers and temp dirs)\n", *provider)
		return exitUsage
	default:
		removed, err = infra.GC(ctx)
	}
	for _, r := range removed {
		fmt.Fprintf(stdout, "removed %s\n", r)
	}
	if len(removed) == 0 && err == nil {
		fmt.Fprintln(stdout, "nothing to remove")
	}
	if err != nil {
		fmt.Fprintf(stderr, "faultline gc: %v\n", err)
		return exitFail
	}
	return exitOK
}

func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "faultline version: print the version", stderr)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	fmt.Fprintf(stdout, "faultline %s\n", bench.Version)
	return exitOK
}
