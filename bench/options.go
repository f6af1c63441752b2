package bench

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/internal/option"
)

// Options of a run, each checked against what its owner declares before
// anything starts: --opt k=v (Config.Opts) against the workload's options
// (workload.Optioner), --txn-opt (Config.TxnOpts) against the transaction
// implementations' (txn.Info.Options), --lock-opt (Config.LockOpts)
// against the locks' (lock.CommonOptions and lock.Info.Options). An
// implementation option must be declared by at least one implementation
// of the run; each implementation receives only the options it declares
// (an exec: lock declares none up front and receives them all).

// implFlag is the flag of wl's implementation options.
func implFlag(wl workload.Workload) string {
	if workload.DescribeWorkload(wl).Kind == results.KindTxn {
		return "--txn-opt"
	}
	return "--lock-opt"
}

// implOpts are c's implementation options for wl.
func (c Config) implOpts(wl workload.Workload) map[string]string {
	if implFlag(wl) == "--txn-opt" {
		return c.TxnOpts
	}
	return c.LockOpts
}

// RouteOptions moves the workload options of a transaction workload
// given the old way, as --lock-opt, to --opt (the rest to --txn-opt),
// with a deprecation note. Call it after WithDefaults.
func (c Config) RouteOptions() Config {
	wl, err := workload.Lookup(c.Workload)
	if err != nil || implFlag(wl) != "--txn-opt" || len(c.LockOpts) == 0 {
		return c
	}
	var wopts option.Set
	if o, ok := wl.(workload.Optioner); ok {
		wopts = o.Options()
	}
	c.Opts, c.TxnOpts = maps.Clone(c.Opts), maps.Clone(c.TxnOpts)
	if c.Opts == nil {
		c.Opts = map[string]string{}
	}
	if c.TxnOpts == nil {
		c.TxnOpts = map[string]string{}
	}
	var moved []string
	for _, k := range slices.Sorted(maps.Keys(c.LockOpts)) {
		flag := "--txn-opt"
		if _, ok := wopts.Lookup(k); ok {
			flag = "--opt"
			c.Opts[k] = c.LockOpts[k]
		} else {
			c.TxnOpts[k] = c.LockOpts[k]
		}
		moved = append(moved, fmt.Sprintf("%s %s=%s", flag, k, c.LockOpts[k]))
	}
	c.LockOpts = nil
	c.Notes = append(c.Notes, fmt.Sprintf("--lock-opt for workload %s is deprecated: read as %s", wl.Name(), strings.Join(moved, ", ")))
	return c
}

// checkOptions checks c's options against the declarations (see above).
func (c Config) checkOptions(wl workload.Workload) error {
	var wopts option.Set
	if o, ok := wl.(workload.Optioner); ok {
		wopts = o.Options()
	}
	if len(c.Opts) > 0 && len(wopts) == 0 {
		return usagef("--opt: workload %s has no options", wl.Name())
	}
	if err := wopts.Check("--opt: workload "+wl.Name(), c.Opts); err != nil {
		return usagef("%v", err)
	}
	flag := implFlag(wl)
	if flag == "--txn-opt" && len(c.LockOpts) > 0 {
		return usagef("--lock-opt: workload %s runs transactions: use --txn-opt (or --opt for the workload's own options)", wl.Name())
	}
	if flag == "--lock-opt" && len(c.TxnOpts) > 0 {
		return usagef("--txn-opt: workload %s runs locks: use --lock-opt", wl.Name())
	}
	opts := c.implOpts(wl)
	declared := option.Set{}
	open := false // an implementation that takes any option (exec: locks)
	var names []string
	for _, impl := range c.Impls {
		info, err := workload.Impl(wl, impl)
		if err != nil {
			return usagef("%v", err)
		}
		names = append(names, impl)
		open = open || (flag == "--lock-opt" && workload.IsExec(impl))
		for _, s := range info.Options {
			if _, dup := declared.Lookup(s.Name); !dup {
				declared = append(declared, s)
			}
		}
	}
	if open {
		for k, v := range opts {
			if s, ok := declared.Lookup(k); ok {
				if err := s.Check(v); err != nil {
					return usagef("%s %s=%q: %v", flag, k, v, err)
				}
			}
		}
		return nil
	}
	if err := declared.Check(flag+": "+strings.Join(names, ", "), opts); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// implParams are the implementation options impl receives: the ones it
// declares (all of them for an implementation that declares none up front,
// an exec: lock).
func (c Config) implParams(wl workload.Workload, impl string) map[string]string {
	opts := c.implOpts(wl)
	info, err := workload.Impl(wl, impl)
	if err != nil || (implFlag(wl) == "--lock-opt" && workload.IsExec(impl)) {
		return maps.Clone(opts)
	}
	out := map[string]string{}
	for k, v := range opts {
		if _, ok := info.Options.Lookup(k); ok {
			out[k] = v
		}
	}
	if _, ok := info.Options.Lookup(lock.OptIO); ok && out[lock.OptIO] == "" {
		out[lock.OptIO] = RedisIO(c.Clients)
	}
	return out
}

// RedisIO is how faultline's Redis connections wait for replies with
// clients concurrent clients, where the implementation lets it choose (the
// "io" lock option; --lock-opt io=netpoll turns it off): blocking in the
// kernel with one client (one request in flight: 2 syscalls and 1 thread
// wake-up per request instead of the netpoller's ~6 and ~1.5), the
// netpoller with more (every waiting connection would hold a thread).
// `faultline ceiling` and the calibration's PING use the same rule.
func RedisIO(clients int) string {
	if clients == 1 {
		return lock.IOBlocking
	}
	return lock.IONetpoll
}

// forImpl is c for impl's phase alone: the implementation options it
// declares (a run's option needs only one implementation declaring it).
func (c Config) forImpl(wl workload.Workload, impl string) Config {
	c.Impls = []string{impl}
	p := c.implParams(wl, impl)
	if implFlag(wl) == "--txn-opt" {
		c.TxnOpts = p
	} else {
		c.LockOpts = p
	}
	return c
}
