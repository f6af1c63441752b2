package lock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/faultline-dev/faultline/impl/internal/execproc"
)

// An exec: implementation is an executable in any language that speaks
// faultline's process protocol (docs/protocol.md): one OS process per
// Locker, one JSON request per line on its stdin, one reply per line on its
// stdout. Its init reply declares what it is (kind lock, nodes, fencing,
// mutant).

// ExecPrefix starts the name of an exec: implementation, lock or
// transaction: "exec:PATH" or "exec:PATH:NAME" (NAME selects one of several
// implementations inside the executable; it is sent in init).
const ExecPrefix = execproc.Prefix

// ErrProcessLost is wrapped by every error of an exec: Locker whose process
// is gone: it died, missed a deadline, broke the protocol, or the call was
// abandoned. The call's outcome is unknown; the Locker is dead and its
// caller continues with a new one (a new process), as after
// ErrSimulatedCrash. ProcessError says how.
var ErrProcessLost = errors.New("lock: implementation process lost")

// ProcessError is an exec: Locker's lost process.
type ProcessError struct {
	// Kind is how: process-died, no-reply, protocol-error or canceled.
	Kind string
	Err  error
}

func (e *ProcessError) Error() string   { return e.Err.Error() }
func (e *ProcessError) Unwrap() []error { return []error{ErrProcessLost, e.Err} }

// OSProcess is implemented by a Locker that runs in an OS process of its
// own (exec: implementations): the harness's holder faults act on the real
// process (SIGSTOP/SIGCONT, SIGKILL) instead of an in-process hook.
type OSProcess interface {
	// Pid is the OS process id.
	Pid() int
	// Stop and Continue send SIGSTOP and SIGCONT (on Windows, which has
	// neither, they fail).
	Stop() error
	Continue() error
	// Kill sends SIGKILL and waits until the process is gone.
	Kill() error
}

// InOpCrasher is implemented by exec: Lockers: CrashInNextAcquire makes
// the next acquire (or try_acquire) request carry "crash": true, asking the
// adapter to SIGKILL itself at its own crash point inside the operation if
// it has one (the seed lock's is between SETNX and EXPIRE); an adapter
// without one ignores it. The harness uses it for holder-crash faults.
type InOpCrasher interface {
	// CrashesInAcquire says whether the adapter declared a crash point
	// inside acquire (init's "crash_in_acquire"); when it did, holder-crash
	// faults strike there rather than after the holder's read.
	CrashesInAcquire() bool
	CrashInNextAcquire()
}

// ProcessOf returns l's OS process when it has one of its own.
func ProcessOf(l Locker) (OSProcess, bool) {
	p, ok := l.(OSProcess)
	return p, ok
}

// lookupExec describes the executable of an exec: name (once) and returns
// its Info.
func lookupExec(name string) (Info, error) {
	spec, decl, err := execproc.Describe(context.Background(), name)
	if err != nil {
		return Info{}, fmt.Errorf("lock implementation %w", err)
	}
	if decl.Kind != "lock" {
		return Info{}, fmt.Errorf("%s declares kind %q, not lock: use it with a workload of its kind", name, decl.Kind)
	}
	doc := decl.Doc
	if doc == "" {
		doc = "executable " + spec.Path
	}
	return Info{
		Name: name, Doc: doc, Mutant: decl.Mutant, Fencing: decl.Fencing,
		RedisNodes: decl.RedisNodes, PostgresNodes: decl.PostgresNodes,
		New: execFactory(spec),
	}, nil
}

// execFactory starts one process per Locker and sends it init. Reentrant
// and Watchdog are passed as options ("reentrant", "watchdog"): they are the
// implementation's business, inside its process.
func execFactory(spec execproc.Spec) Factory {
	losses := &atomic.Int64{} // lost processes of this factory's Lockers, for logging
	return func(ctx context.Context, ep Endpoints, opt Options) (Locker, error) {
		label := fmt.Sprintf("%s process %d", spec.Spec, opt.Process)
		cfg := execproc.Config{Path: spec.Path, Label: label,
			LogFile: spec.LogFile(opt.LogDir, fmt.Sprintf("p%d", opt.Process)),
			Env:     []string{"FAULTLINE_PROTOCOL=" + strconv.Itoa(execproc.Version), "FAULTLINE_PROCESS=" + strconv.Itoa(opt.Process)}}
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
		}
		p, err := execproc.Start(ctx, cfg)
		if err != nil {
			return nil, err
		}
		in := execproc.InitRequest{Process: opt.Process, Name: spec.Name, Options: map[string]string{}}
		for k, v := range opt.Params {
			in.Options[k] = v
		}
		if opt.Reentrant {
			in.Options["reentrant"] = "true"
		}
		if opt.Watchdog {
			in.Options["watchdog"] = "true"
		}
		in.Endpoints.KeyPrefix = ep.KeyPrefix
		for _, r := range ep.Redis {
			in.Endpoints.Redis = append(in.Endpoints.Redis, execproc.Endpoint{Name: r.Name, Addr: r.Addr, Password: r.Password})
		}
		for _, pg := range ep.Postgres {
			in.Endpoints.Postgres = append(in.Endpoints.Postgres, execproc.Endpoint{Name: pg.Name, DSN: pg.DSN})
		}
		decl, err := execproc.Init(ctx, p, in)
		if err != nil {
			p.Kill(err)
			return nil, err
		}
		if decl.Kind != "lock" {
			p.Kill(errors.New("wrong kind"))
			return nil, fmt.Errorf("%s: init declares kind %q, not lock", label, decl.Kind)
		}
		return &execLocker{p: p, clock: opt.Now, crashPoint: decl.CrashInAcquire, losses: losses}, nil
	}
}

// execLocker is one protocol process.
type execLocker struct {
	p     *execproc.Proc
	clock func() time.Time // the client clock (clock-drift faults); nil = real time
	crash atomic.Bool      // the next acquire asks the process to crash inside it
	// crashPoint: the adapter declared a crash point inside acquire.
	crashPoint bool
	losses     *atomic.Int64 // shared by the Lockers of one factory
}

// logLoss logs a process lost to a protocol error or a missed deadline:
// the first three of a factory in full, then every 100th as a count.
func (e *execLocker) logLoss(err error) {
	switch n := e.losses.Add(1); {
	case n <= 3:
		slog.Error("exec lock implementation lost a process (info; the worker goes on as a new process)",
			"process", e.p.Label(), "pid", e.p.Pid(), "err", err)
	case n%100 == 0:
		slog.Error("exec lock implementation keeps losing processes", "lost", n, "last", err)
	}
}

// CrashesInAcquire implements InOpCrasher.
func (e *execLocker) CrashesInAcquire() bool { return e.crashPoint }

// CrashInNextAcquire implements InOpCrasher.
func (e *execLocker) CrashInNextAcquire() { e.crash.Store(true) }

// reply is a lock reply's own fields.
type execLockReply struct {
	Token *string `json:"token"`
	Fence uint64  `json:"fence"`
	// WaitedMS: how long a blocking acquire waited before its successful
	// attempt began (optional); the lease's expiry counts from there.
	WaitedMS float64 `json:"waited_ms"`
}

// call sends op with fields and returns the reply or the process's loss.
func (e *execLocker) call(ctx context.Context, op string, fields map[string]any) (execproc.Reply, execLockReply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}
	if e.clock != nil {
		fields["now_ms"] = float64(e.clock().UnixMicro()) / 1000
	}
	r, err := e.p.Call(ctx, op, fields)
	if err != nil {
		kind, lost := execproc.Lost(err)
		if !lost {
			return r, execLockReply{}, err
		}
		if kind == "protocol-error" || kind == "no-reply" {
			e.logLoss(err)
		}
		return r, execLockReply{}, &ProcessError{Kind: kind, Err: err}
	}
	var lr execLockReply
	if err := json.Unmarshal(r.Raw, &lr); err != nil {
		return r, lr, e.broken(r, fmt.Sprintf("reply to %s does not decode: %v", op, err))
	}
	return r, lr, nil
}

// broken kills the process for an invalid reply.
func (e *execLocker) broken(r execproc.Reply, why string) error {
	err := e.p.Broken(r, why)
	e.logLoss(err)
	return &ProcessError{Kind: "protocol-error", Err: err}
}

// outcomeErr maps a reply's outcome to the Locker's errors; allowed lists
// the outcomes valid for op besides ok and indeterminate.
func (e *execLocker) outcomeErr(r execproc.Reply, op, key string, allowed ...string) error {
	switch {
	case r.Outcome == "ok":
		return nil
	case r.Outcome == "indeterminate":
		return fmt.Errorf("%s: %s %q indeterminate: %s", e.p.Label(), op, key, r.Message)
	}
	for _, a := range allowed {
		if r.Outcome != a {
			continue
		}
		switch a {
		case "not-acquired":
			return fmt.Errorf("%w: %s", ErrNotAcquired, r.Message)
		case "not-held":
			return fmt.Errorf("%w: %s", ErrNotHeld, r.Message)
		}
	}
	return e.broken(r, fmt.Sprintf("outcome %q is not one of ok, %s, indeterminate for %s", r.Outcome, strings.Join(allowed, ", "), op))
}

func (e *execLocker) acquire(ctx context.Context, op, key string, ttl time.Duration) (Lease, error) {
	if err := checkTTL(ttl); err != nil {
		return Lease{}, err
	}
	timeout := time.Duration(0)
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), 0)
	}
	start := time.Now()
	if e.clock != nil {
		start = e.clock()
	}
	fields := map[string]any{"key": key, "ttl_ms": ttl.Milliseconds(), "timeout_ms": timeout.Milliseconds()}
	if e.crash.Swap(false) {
		fields["crash"] = true
	}
	r, lr, err := e.call(ctx, op, fields)
	if err != nil {
		return Lease{}, err
	}
	if err := e.outcomeErr(r, op, key, "not-acquired"); err != nil {
		return Lease{}, err
	}
	if lr.Token == nil || *lr.Token == "" {
		return Lease{}, e.broken(r, "an ok reply to "+op+" needs a non-empty \"token\"")
	}
	waited := time.Duration(max(lr.WaitedMS, 0) * float64(time.Millisecond))
	return Lease{Key: key, Token: *lr.Token, Fence: lr.Fence, Expiry: start.Add(waited + ttl)}, nil
}

// Acquire sends acquire with the ctx deadline as timeout_ms.
func (e *execLocker) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return e.acquire(ctx, "acquire", key, ttl)
}

// TryAcquire sends try_acquire.
func (e *execLocker) TryAcquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return e.acquire(ctx, "try_acquire", key, ttl)
}

// Release sends release.
func (e *execLocker) Release(ctx context.Context, l Lease) error {
	r, _, err := e.call(ctx, "release", map[string]any{"key": l.Key, "token": l.Token, "fence": l.Fence})
	if err != nil {
		return err
	}
	return e.outcomeErr(r, "release", l.Key, "not-held")
}

// Refresh sends refresh.
func (e *execLocker) Refresh(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	if err := checkTTL(ttl); err != nil {
		return Lease{}, err
	}
	start := time.Now()
	if e.clock != nil {
		start = e.clock()
	}
	r, _, err := e.call(ctx, "refresh", map[string]any{"key": l.Key, "token": l.Token, "fence": l.Fence, "ttl_ms": ttl.Milliseconds()})
	if err != nil {
		return Lease{}, err
	}
	if err := e.outcomeErr(r, "refresh", l.Key, "not-held"); err != nil {
		return Lease{}, err
	}
	l.Expiry = start.Add(ttl)
	return l, nil
}

// Close closes the process's stdin and gives it a second to leave.
func (e *execLocker) Close() error { return e.p.Close(time.Second) }

// Pid implements OSProcess.
func (e *execLocker) Pid() int { return e.p.Pid() }

// Stop implements OSProcess (SIGSTOP).
func (e *execLocker) Stop() error { return e.p.Stop() }

// Continue implements OSProcess (SIGCONT).
func (e *execLocker) Continue() error { return e.p.Continue() }

// Kill implements OSProcess (SIGKILL, waits for the exit).
func (e *execLocker) Kill() error {
	e.p.Kill(fmt.Errorf("%w: %s (pid %d) was killed (SIGKILL) by the harness", execproc.ErrDied, e.p.Label(), e.p.Pid()))
	return nil
}
