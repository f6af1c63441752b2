// Package bench runs a scenario: one environment for the whole run, then
// for each implementation in turn a phase of closed-loop (or fixed-rate)
// workers driving the workload while the nemesis applies its fault
// schedule, a quiet period, the workload's final probes and resource dump,
// and finally the offline checks on the saved history. It writes
// results.json and history.jsonl into the run directory.
package bench

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/infra"
	"github.com/faultline-dev/faultline/internal/shell"
)

// Version is faultline's version, recorded in every results.json.
const Version = "0.1.0"

// Path values: what the clients connect to.
const (
	PathAuto    = "auto"    // proxied when a node or network fault is scheduled, else direct
	PathDirect  = "direct"  // the servers' own addresses (Toxiproxy doubles loopback latency)
	PathProxied = "proxied" // through each node's Toxiproxy proxy
)

// Config is one scenario. Zero values take the defaults of WithDefaults.
type Config struct {
	RunID    string   `json:"run_id"`
	Impls    []string `json:"impls"`
	Workload string   `json:"workload"`
	Clients  int      `json:"clients"`
	// Share is how many worker processes drive one implementation client
	// (a Locker shared like a client shared by a service's goroutines);
	// 1 (the default): each process has its own.
	Share int `json:"share,omitempty"`
	// Duration is each implementation's load phase, warm-up included.
	Duration time.Duration `json:"duration"`
	// Ops caps the measured iterations per implementation (0 = no cap).
	Ops int64 `json:"ops,omitempty"`
	// Warmup is the start of each phase excluded from the statistics (its
	// operations are in the history and checked all the same).
	Warmup time.Duration `json:"warmup,omitempty"`
	Keys   int           `json:"keys"`
	TTL    time.Duration `json:"ttl"`
	// OpTimeout is every call's deadline (default min(ttl, 1s), at least
	// 100ms); AcquireTimeout a blocking acquire's (default 2×ttl).
	OpTimeout      time.Duration `json:"op_timeout"`
	AcquireTimeout time.Duration `json:"acquire_timeout"`
	Seed           int64         `json:"seed"`
	Provider       string        `json:"provider"` // auto, local, docker, external
	// External are the servers of --provider external (passwords inside:
	// never serialised; see infra.ExternalTarget.Public); Namespace names
	// the run's key prefix and schema on them (default: a fresh one).
	External  []infra.ExternalTarget `json:"-"`
	Namespace string                 `json:"namespace,omitempty"`
	// Topology is the replicated topology the implementations run on
	// ("" = independent nodes; redis-sentinel, pg-standby).
	Topology string `json:"topology,omitempty"`
	Out      string `json:"out"`  // run directory
	Path     string `json:"path"` // auto, direct, proxied
	// Faults are scripted fault specs (chaos.Grammar); their times are
	// relative to the start of each implementation's phase.
	Faults []string `json:"faults,omitempty"`
	// Nemesis kinds make a random schedule (one fault per interval, from
	// Seed), the same for every implementation.
	Nemesis         []string      `json:"nemesis,omitempty"`
	NemesisInterval time.Duration `json:"nemesis_interval,omitempty"`
	// Quiet is the wait after the load and the heal of every fault, before
	// the final probes (default 2×ttl).
	Quiet time.Duration `json:"quiet"`
	// Checkpoint is how often results.json is rewritten during a phase
	// with the running phase's figures so far (0: only before each phase).
	// A process that dies loses at most this much of a phase's statistics.
	Checkpoint time.Duration `json:"checkpoint,omitempty"`
	// Rate is the total target rate of iterations per second: 0 is a
	// closed loop; > 0 an open loop whose latencies count from each
	// iteration's intended start (coordinated-omission correction, as wrk2).
	Rate float64 `json:"rate,omitempty"`
	// LockOpts are lock implementation options (--lock-opt k=v), TxnOpts
	// transaction implementation options (--txn-opt k=v), Opts the
	// workload's own options (--opt k=v); see options.go.
	LockOpts map[string]string `json:"lock_opts,omitempty"`
	TxnOpts  map[string]string `json:"txn_opts,omitempty"`
	Opts     map[string]string `json:"opts,omitempty"`
	// Command is the command line that reproduces the run.
	Command string `json:"-"`
	// Notes are remarks on the configuration (a setting raised, see
	// RaiseQuiet), copied into the results' notes.
	Notes []string `json:"-"`

	// Progress receives live progress (nil = none); ProgressBar draws a
	// bar (for a terminal) instead of periodic lines.
	Progress    io.Writer    `json:"-"`
	ProgressBar bool         `json:"-"`
	Logger      *slog.Logger `json:"-"`
}

// Defaults.
const (
	DefaultClients  = 8
	DefaultDuration = 10 * time.Second
	DefaultKeys     = 8
	DefaultTTL      = time.Second
	// DefaultTopologyTTL is the ttl of a run on a replicated topology when
	// --ttl is not given: longer than a failover (3.6-4.7 s with the
	// Sentinel timings faultline starts: down-after 2 s, staggered), else
	// every lease expires before the promotion and no failover can break
	// mutual exclusion. At 5 s the lossy failover's kept holder gave its
	// lock up before anyone could look at the key (lost-ack-write unknown).
	DefaultTopologyTTL = 10 * time.Second
	DefaultWorkload    = "counter"
	// MaxShare bounds Share.
	MaxShare = 64
)

// WithDefaults fills every zero field, and only those: a negative value
// stays, for Validate (CheckRanges) to reject.
func (c Config) WithDefaults() Config {
	if c.RunID == "" {
		c.RunID = NewRunID(time.Now())
	}
	if c.Workload == "" {
		c.Workload = DefaultWorkload
	}
	if c.Clients == 0 {
		c.Clients = DefaultClients
	}
	if c.Share == 0 {
		c.Share = 1
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Keys == 0 {
		c.Keys = DefaultKeys
	}
	if c.TTL == 0 && c.Topology != "" {
		c.TTL = DefaultTopologyTTL
		if wl, err := workload.Lookup(c.Workload); err == nil && workload.DescribeWorkload(wl).Kind == results.KindLock {
			// Leases only: the bank holds none.
			c.Notes = append(c.Notes, fmt.Sprintf("--ttl not given: %v on a replicated topology (a lease must outlive the failover, or no failover can break it)", DefaultTopologyTTL))
		}
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = max(min(c.TTL, time.Second), 100*time.Millisecond)
	}
	if c.AcquireTimeout == 0 {
		c.AcquireTimeout = 2 * c.TTL
	}
	if c.Quiet == 0 {
		c.Quiet = 2 * c.TTL
	}
	if c.Provider == ProviderExternal && c.Namespace == "" {
		c.Namespace = infra.NewNamespace()
	}
	if c.Provider == "" {
		c.Provider = "auto"
	}
	if c.Path == "" {
		c.Path = PathAuto
	}
	if c.NemesisInterval == 0 && len(c.Nemesis) > 0 {
		c.NemesisInterval = 10 * time.Second
	}
	if c.Out == "" {
		c.Out = "reports/runs/" + c.RunID
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// NewRunID is a sortable, unique run id: 20060102-150405-xxxx.
func NewRunID(t time.Time) string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return t.Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// UsageError is a configuration mistake of the user: the CLI exits 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error { return &UsageError{Msg: fmt.Sprintf(format, args...)} }

// Validate checks c (after WithDefaults) without starting anything: the
// workload, the implementations, the fault specs and the numbers. Every
// error is a *UsageError that says what is valid.
func (c Config) Validate() error {
	wl, err := workload.Lookup(c.Workload)
	if err != nil {
		return usagef("%v", err)
	}
	if len(c.Impls) == 0 {
		return usagef("no implementation: give --impl (known: %s)", strings.Join(workload.ImplNames(wl), ", "))
	}
	for _, name := range c.Impls {
		if _, err := workload.Impl(wl, name); err != nil {
			return usagef("%v", err)
		}
	}
	if dup := firstDuplicate(c.Impls); dup != "" {
		return usagef("implementation %q given twice", dup)
	}
	if c.Topology != "" {
		if _, err := infra.TopologyNodes(infra.Topology(c.Topology)); err != nil {
			return usagef("--topology: %v", err)
		}
	}
	if _, _, err := workload.RunNodes(wl, c.Impls, infra.Topology(c.Topology)); err != nil {
		return usagef("%v", err)
	}
	sched, err := chaos.ParseSchedule(c.Faults)
	if err != nil {
		return usagef("%v", err)
	}
	if c.Topology == "" {
		kinds := chaos.NeedsTopology(sched)
		for _, k := range c.Nemesis {
			if kk, err := chaos.LookupKind(k); err == nil && kk.Topology && !slices.Contains(kinds, kk.Name) {
				kinds = append(kinds, kk.Name)
			}
		}
		if len(kinds) > 0 {
			return usagef("fault kinds %s need a replicated topology: add --topology %s (or %s)", strings.Join(kinds, ", "), infra.TopologyRedisSentinel, infra.TopologyPGStandby)
		}
	}
	if err := checkPairCut(pairCutProvider(c.Provider), sched, c.Nemesis, nil); err != nil {
		return err
	}
	if err := chaos.CheckSchedule(sched, c.Duration, c.TTL); err != nil {
		return usagef("%v", err)
	}
	for _, k := range c.Nemesis {
		if _, err := chaos.LookupKind(k); err != nil {
			return usagef("--nemesis: %v", err)
		}
	}
	if len(c.Nemesis) > 0 {
		if n := chaos.NemesisFaults(c.NemesisInterval, c.Duration); n == 0 {
			return usagef("--nemesis-interval %v draws no fault in a %v phase (the first starts after one interval and lasts half of it): use at most %v",
				c.NemesisInterval, c.Duration, c.Duration*2/3)
		}
		for _, impl := range c.Impls {
			if _, err := PhaseSchedule(c, wl, impl); err != nil {
				return usagef("%s: %v", impl, err)
			}
		}
	}
	switch c.Path {
	case PathAuto, PathDirect, PathProxied:
	default:
		return usagef("unknown path %q (valid: auto, direct, proxied)", c.Path)
	}
	if c.Path == PathDirect && c.needsProxy() {
		return usagef("--path direct cannot inject the node/network faults scheduled (%s): use --path auto or proxied", strings.Join(append(c.Faults, c.Nemesis...), " "))
	}
	switch c.Provider {
	case "auto", "local", "docker":
		if len(c.External) > 0 {
			return usagef("external targets (--redis, --postgres, --targets) need --provider external")
		}
	case ProviderExternal:
		if len(c.External) == 0 {
			return usagef("--provider external needs targets: --redis ADDR[,ADDR…], --postgres DSN[,DSN…] or --targets FILE")
		}
		if err := infra.CheckNamespace(c.Namespace); err != nil {
			return usagef("--namespace: %v", err)
		}
		if c.Topology != "" {
			return usagef("--topology %s with --provider external: faultline does not own your servers' replication; run the implementations on independent targets", c.Topology)
		}
	default:
		return usagef("unknown provider %q (valid: auto, local, docker, external)", c.Provider)
	}
	if err := c.CheckRanges(nil); err != nil {
		return err
	}
	if err := c.checkOptions(wl); err != nil {
		return err
	}
	switch {
	case c.Warmup >= c.Duration:
		return usagef("warm-up %v must be shorter than the duration %v", c.Warmup, c.Duration)
	case c.Share > 1 && !workload.CanShare(wl):
		return usagef("share %d: workload %s cannot share an implementation client between processes (each worker has its own Transferer); use --share 1", c.Share, wl.Name())
	case c.Share > 1 && slices.ContainsFunc(c.Impls, workload.IsExec):
		return usagef("share %d: an exec: implementation is one process per worker (docs/protocol.md) and cannot be shared between workers; use --share 1", c.Share)
	case runtime.GOOS == "windows" && slices.ContainsFunc(c.Impls, workload.IsExec) &&
		(slices.ContainsFunc(sched, func(s chaos.Spec) bool { return s.Kind == "holder-pause" }) || slices.Contains(c.Nemesis, "holder-pause")):
		// execproc's Stop fails there; refused here, before any server starts.
		return usagef("holder-pause of an exec: implementation stops its process with SIGSTOP, which Windows lacks: run faultline on Linux or macOS for it (built-in implementations pause in-process and run on Windows)")
	}
	return nil
}

func firstDuplicate(s []string) string {
	seen := map[string]bool{}
	for _, x := range s {
		if seen[x] {
			return x
		}
		seen[x] = true
	}
	return ""
}

// needsProxy says whether a scheduled fault acts on a node or the network
// (each kind's entry in chaos says so): those need the clients to go
// through Toxiproxy (network faults), and kills and pauses too, since a
// restarted node may get a new direct address. Client faults act in the
// workers and need no proxy, unless aimed at nodes (delayed-write:redis-1).
func (c Config) needsProxy() bool {
	specs, _ := chaos.ParseSchedule(c.Faults)
	var nodes []string
	if wl, err := workload.Lookup(c.Workload); err == nil {
		specs, _, _ := workload.RunNodes(wl, c.Impls, infra.Topology(c.Topology))
		for _, n := range specs {
			nodes = append(nodes, n.Name)
		}
	}
	return chaos.NeedsProxy(specs, nodes) || chaos.KindsNeedProxy(c.Nemesis)
}

// ResolvedPath is the path the clients will use: auto becomes proxied when
// a node or network fault is scheduled, direct otherwise.
func (c Config) ResolvedPath() string {
	if c.Path != PathAuto {
		return c.Path
	}
	if c.needsProxy() {
		return PathProxied
	}
	return PathDirect
}

// CommandLine is the command that reproduces c: c.Command when the CLI
// set it, else the flags of every setting that differs from its default.
func (c Config) CommandLine() string {
	if c.Command != "" {
		return c.Command
	}
	d := Config{}.WithDefaults()
	args := []string{"faultline", "run", "--impl", strings.Join(c.Impls, ","), "--workload", c.Workload}
	flag := func(name string, v, def any) {
		if fmt.Sprint(v) != fmt.Sprint(def) {
			args = append(args, "--"+name, fmt.Sprint(v))
		}
	}
	flag("clients", c.Clients, d.Clients)
	flag("share", c.Share, d.Share)
	flag("duration", c.Duration, d.Duration)
	flag("ops", c.Ops, int64(0))
	flag("warmup", c.Warmup, time.Duration(0))
	flag("keys", c.Keys, d.Keys)
	flag("ttl", c.TTL, d.TTL)
	flag("op-timeout", c.OpTimeout, max(min(c.TTL, time.Second), 100*time.Millisecond))
	flag("acquire-timeout", c.AcquireTimeout, 2*c.TTL)
	flag("quiet", c.Quiet, 2*c.TTL)
	flag("checkpoint", c.Checkpoint, DefaultCheckpoint(c.Duration))
	flag("provider", c.Provider, d.Provider)
	flag("path", c.Path, d.Path)
	flag("rate", c.Rate, 0.0)
	for _, f := range c.Faults {
		args = append(args, "--fault", f)
	}
	if len(c.Nemesis) > 0 {
		args = append(args, "--nemesis", strings.Join(c.Nemesis, ","), "--nemesis-interval", c.NemesisInterval.String())
	}
	for _, o := range []struct {
		flag string
		kv   map[string]string
	}{{"--opt", c.Opts}, {"--lock-opt", c.LockOpts}, {"--txn-opt", c.TxnOpts}} {
		for _, k := range slices.Sorted(maps.Keys(o.kv)) {
			args = append(args, o.flag, k+"="+o.kv[k])
		}
	}
	args = append(args, "--seed", fmt.Sprint(c.Seed))
	return shell.Join(args)
}

// Map is c as recorded in results.json (durations as strings).
func (c Config) Map() map[string]any {
	type flat struct {
		Config
		Duration        string `json:"duration"`
		Warmup          string `json:"warmup,omitempty"`
		TTL             string `json:"ttl"`
		OpTimeout       string `json:"op_timeout"`
		AcquireTimeout  string `json:"acquire_timeout"`
		NemesisInterval string `json:"nemesis_interval,omitempty"`
		Quiet           string `json:"quiet"`
		Checkpoint      string `json:"checkpoint,omitempty"`
		ResolvedPath    string `json:"resolved_path"`
	}
	ds := func(d time.Duration) string {
		if d == 0 {
			return ""
		}
		return d.String()
	}
	f := flat{Config: c, Duration: ds(c.Duration), Warmup: ds(c.Warmup), TTL: ds(c.TTL), OpTimeout: ds(c.OpTimeout),
		AcquireTimeout: ds(c.AcquireTimeout), NemesisInterval: ds(c.NemesisInterval), Quiet: ds(c.Quiet), Checkpoint: ds(c.Checkpoint), ResolvedPath: c.ResolvedPath()}
	b, err := json.Marshal(f)
	if err != nil {
		panic(err) // only plain types: cannot fail
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}

// errInterrupted marks a run stopped by its context (Ctrl-C).
var errInterrupted = errors.New("run interrupted")
