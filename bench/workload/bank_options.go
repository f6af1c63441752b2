package workload

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/faultline-dev/faultline/infra"
	"github.com/faultline-dev/faultline/internal/option"
)

// bankOptions are the bank workload's settings (--opt k=v). A default that
// depends on the run (the op timeout) is stated in the doc and computed
// in parseBankParams, once.
var bankOptions = option.Set{
	{Name: "accounts", Kind: option.Int, Min: 2, Max: 1_000_000, Default: "100", Doc: "accounts per node"},
	{Name: "balance", Kind: option.Int, Min: 1, Max: 1e15, Default: "1000", Doc: "initial balance of every account"},
	{Name: "amount-max", Kind: option.Int, Min: 1, Max: 1e12, Default: "20", Doc: "transfers move 1..amount-max"},
	{Name: "readers", Kind: option.Int, Min: 0, Max: 100, Default: "2", Doc: "concurrent reader processes (0 = none)"},
	{Name: "read-every", Kind: option.Int, Min: 0, Max: 1e9, Default: "4", Doc: "one reader snapshot per this many transfers (0 = none)"},
	{Name: "lock-timeout", Kind: option.Duration, Min: float64(time.Millisecond), Max: float64(time.Hour),
		Doc: "PostgreSQL lock_timeout of transfers (default op-timeout/2, at least 50ms): how long a transfer waits for a row an in-doubt transaction holds"},
	{Name: "transfer-timeout", Kind: option.Duration, Min: float64(time.Millisecond), Max: float64(time.Hour),
		Doc: "bound of one whole transfer, retries included (default 10×op-timeout)"},
	{Name: "recover-every", Kind: option.Duration, Max: float64(time.Hour), Default: "0s",
		Doc: "background recovery period (a recovery cron for implementations without services; 0 = recovery only after the load)"},
	{Name: "recover-min-age", Kind: option.Duration, Max: float64(time.Hour),
		Doc: "background recovery leaves younger in-doubt work alone (default 2×op-timeout)"},
	{Name: "indoubt-poll", Kind: option.Duration, Min: float64(time.Millisecond), Max: float64(time.Minute), Default: "50ms",
		Doc: "how often pg_prepared_xacts is polled to measure in-doubt time"},
	{Name: "blocked-min", Kind: option.Duration, Max: float64(time.Hour), Default: "100ms",
		Doc: "a transfer on an in-doubt row that took this long or failed counts as blocked"},
	{Name: "kill-after-prepare", Kind: option.Text,
		Doc: "kill this participant node (e.g. pg-2) after every participant prepared, before the decision (implementations with a prepare phase); restarted after kill-for. The injected transfer credits that node (2pc prepares only the credit: its debit is the last resource); one that fails before the kill passes the fault to the next"},
	{Name: "inject-failover", Kind: option.Text,
		Doc: "--topology pg-standby: fail participant A over when the injected transfer ends (after its crash-at crash, so it is in doubt): kill = SIGKILL the primary, promote the standby; lossy = first cut the primary's replication link before that transfer (what the primary acknowledges then never reaches the standby). The injected transfer moves money from B to A"},
	{Name: "kill-for", Kind: option.Duration, Max: float64(time.Hour), Default: "500ms", Doc: "how long kill-after-prepare keeps the node down"},
	{Name: "inject-after", Kind: option.Int, Min: 1, Max: 1e12, Default: "10", Doc: "the injected fault hits transfer number N of the phase (once)"},
	{Name: "inject-every", Kind: option.Int, Min: 1, Max: 1e12, Doc: "the injected fault hits every Nth transfer (no cap unless inject-max)"},
	{Name: "inject-prob", Kind: option.Float, Min: 0, Max: 1, Doc: "the injected fault hits each transfer with this probability (no cap unless inject-max)"},
	{Name: "inject-max", Kind: option.Int, Min: 0, Max: 1e12,
		Doc: "at most this many injected faults (default 1 with inject-after, else unlimited)"},
}

// Options are the bank's workload options (--opt k=v). The injected faults
// themselves (crash-at, late-try…) are the implementations' options
// (--txn-opt, txn.Info.Options).
func (*bankWorkload) Options() option.Set { return bankOptions }

// bankParams are the bank's settings.
type bankParams struct {
	accounts                int   // per node
	balance                 int64 // initial, per account
	amountMax               int64
	readers, readEvery      int
	lockTimeout             time.Duration
	transferTimeout         time.Duration
	recoverEvery, minAge    time.Duration
	poll, blockedMin        time.Duration
	killNode                string
	killFor                 time.Duration
	failover                string // inject-failover: kill | lossy ("" = none)
	after, every, maxInject int64
	prob                    float64
	// faults are the implementation's injected faults (--txn-opt).
	faults txn.Options
}

// splitBankParams separates a phase's settings: opts are the workload's
// (--opt), params the implementation's (--txn-opt). A workload option
// among params (the deprecated --lock-opt route) moves to opts.
func splitBankParams(t Target) (opts, params map[string]string) {
	opts, params = map[string]string{}, map[string]string{}
	for k, v := range t.Opts {
		opts[k] = v
	}
	for k, v := range t.Params {
		if _, ok := bankOptions.Lookup(k); ok {
			if _, set := opts[k]; !set {
				opts[k] = v
			}
			continue
		}
		params[k] = v
	}
	return opts, params
}

// parseBankParams reads the workload options (checked against
// bankOptions) and the implementation's options (checked against
// info.Options) of t; every default is set here, once.
func parseBankParams(t Target, info txn.Info) (bankParams, error) {
	opts, params := splitBankParams(t)
	errs := []error{bankOptions.Check("workload bank", opts), info.Options.Check("txn "+info.Name, params)}
	var p bankParams
	errs = append(errs, p.faults.Apply(params))
	if err := errors.Join(errs...); err != nil {
		return p, err
	}
	op := t.OpTimeout
	if op <= 0 {
		op = time.Second
	}
	val := func(name string) (string, bool) {
		if v, ok := opts[name]; ok {
			return strings.TrimSpace(v), true
		}
		s, _ := bankOptions.Lookup(name)
		return s.Default, s.Default != ""
	}
	num := func(name string, def int64) int64 {
		v, ok := val(name)
		if !ok {
			return def
		}
		n, _ := strconv.ParseInt(v, 10, 64) // checked above
		return n
	}
	dur := func(name string, def time.Duration) time.Duration {
		v, ok := val(name)
		if !ok {
			return def
		}
		d, _ := time.ParseDuration(v)
		return d
	}
	p.accounts = int(num("accounts", 0))
	p.balance = num("balance", 0)
	p.amountMax = num("amount-max", 0)
	p.readers = int(num("readers", 0))
	p.readEvery = int(num("read-every", 0))
	p.lockTimeout = dur("lock-timeout", max(op/2, 50*time.Millisecond))
	p.transferTimeout = dur("transfer-timeout", 10*op)
	p.recoverEvery = dur("recover-every", 0)
	p.minAge = dur("recover-min-age", 2*op)
	p.poll = dur("indoubt-poll", 0)
	p.blockedMin = dur("blocked-min", 0)
	p.killFor = dur("kill-for", 0)
	p.after = num("inject-after", 0)
	p.every = num("inject-every", 0)
	if v, ok := val("inject-prob"); ok {
		p.prob, _ = strconv.ParseFloat(v, 64)
	}
	p.maxInject = num("inject-max", 0)
	if _, set := val("inject-max"); !set && p.every == 0 && p.prob == 0 {
		p.maxInject = 1
	}
	if v, ok := val("kill-after-prepare"); ok {
		if _, found := t.Env.Node(v); !found {
			return p, fmt.Errorf("workload bank option kill-after-prepare=%q: no such node in the environment", v)
		}
		p.killNode = v
	}
	if v, ok := val("inject-failover"); ok {
		if v != failoverKill && v != failoverLossy {
			return p, fmt.Errorf("workload bank option inject-failover=%q: want %s or %s", v, failoverKill, failoverLossy)
		}
		if bankStandby(t.Env) == nil {
			return p, fmt.Errorf("workload bank option inject-failover=%s needs --topology %s", v, infra.TopologyPGStandby)
		}
		p.failover = v
	}
	return p, nil
}

// The inject-failover modes.
const (
	failoverKill  = "kill"
	failoverLossy = "lossy"
)

// injecting says whether some fault is injected into chosen transfers.
func (p bankParams) injecting() bool {
	return p.faults.Injects() || p.killNode != "" || p.failover != ""
}

// describe names the injected faults (for the invoke's "inject" attr).
func (p bankParams) describe() string {
	var s []string
	f := p.faults
	if f.CrashAt != "" {
		s = append(s, "crash-at="+string(f.CrashAt))
	}
	if f.TCC.LateTry != "" {
		s = append(s, "late-try="+f.TCC.LateTry)
	}
	if f.TCC.DuplicateConfirm {
		s = append(s, "dup-confirm")
	}
	if f.TCC.DuplicateCancel {
		s = append(s, "dup-cancel")
	}
	if f.TCC.LostConfirmReply {
		s = append(s, "lost-confirm-reply")
	}
	if p.killNode != "" {
		s = append(s, "kill-after-prepare="+p.killNode)
	}
	if p.failover != "" {
		s = append(s, "inject-failover="+p.failover)
	}
	return strings.Join(s, ",")
}
