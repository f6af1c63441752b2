package txn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/faultline-dev/faultline/impl/internal/execproc"
)

// An exec: transaction implementation is an executable speaking faultline's
// process protocol (docs/protocol.md) whose init reply declares kind txn:
// one OS process per Transferer (a coordinator process), transfer and
// recover requests, the bank schema set up by the harness (Setup).

// ErrProcessLost is wrapped by every error of an exec: Transferer whose
// process is gone (died, missed a deadline, broke the protocol). A lost
// coordinator process is a crashed coordinator: the error also wraps
// ErrCrashed (indeterminate, and the caller continues with a new process).
var ErrProcessLost = errors.New("txn: implementation process lost")

// ProcessError is an exec: Transferer's lost process.
type ProcessError struct {
	// Kind is how: process-died, no-reply, protocol-error or canceled.
	Kind string
	Err  error
}

func (e *ProcessError) Error() string   { return e.Err.Error() }
func (e *ProcessError) Unwrap() []error { return []error{ErrProcessLost, ErrCrashed, e.Err} }

// lookupExec describes an exec: executable (once) and returns its Info.
func lookupExec(name string) (Info, error) {
	spec, decl, err := execproc.Describe(context.Background(), name)
	if err != nil {
		return Info{}, fmt.Errorf("txn implementation %w", err)
	}
	if decl.Kind != "txn" {
		return Info{}, fmt.Errorf("%s declares kind %q, not txn: use it with a workload of its kind", name, decl.Kind)
	}
	if decl.PostgresNodes < 2 {
		return Info{}, fmt.Errorf("%s declares postgres_nodes %d: the bank needs 2 participants", name, decl.PostgresNodes)
	}
	doc := decl.Doc
	if doc == "" {
		doc = "executable " + spec.Path
	}
	return Info{Name: name, Doc: doc, Mutant: decl.Mutant, PostgresNodes: decl.PostgresNodes,
		RedisNodes: decl.RedisNodes, Baseline: "single-db", Options: twoPCOptions, New: execFactory(spec)}, nil
}

// execFactory starts one coordinator process per Transferer. Injected
// coordinator crashes (Options.CrashAt, for the transfers Options.Match
// picks) are sent as the transfer's "crash_at": the process is expected to
// die right there (SIGKILL itself), a real crash.
func execFactory(spec execproc.Spec) Factory {
	var n atomic.Int64 // coordinator processes started, for labels
	return func(ctx context.Context, ep Endpoints, opt Options) (Transferer, error) {
		opt = opt.withDefaults()
		proc := int(n.Add(1) - 1)
		label := fmt.Sprintf("%s coordinator %d", spec.Spec, proc)
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
		}
		p, err := execproc.Start(ctx, execproc.Config{Path: spec.Path, Label: label,
			LogFile: spec.LogFile(opt.LogDir, fmt.Sprintf("coordinator%d", proc)),
			Env:     []string{"FAULTLINE_PROTOCOL=" + strconv.Itoa(execproc.Version), "FAULTLINE_PROCESS=" + strconv.Itoa(proc)}})
		if err != nil {
			return nil, err
		}
		in := execproc.InitRequest{Process: proc, Name: spec.Name, Options: map[string]string{
			"op-timeout-ms":   strconv.FormatInt(opt.OpTimeout.Milliseconds(), 10),
			"lock-timeout-ms": strconv.FormatInt(opt.LockTimeout.Milliseconds(), 10),
		}}
		for k, v := range opt.Params {
			in.Options[k] = v
		}
		for _, pe := range ep.Participants {
			in.Endpoints.Postgres = append(in.Endpoints.Postgres, execproc.Endpoint{Name: pe.Name, DSN: pe.DSN})
		}
		coord, err := ep.CoordinatorDSN()
		if err != nil {
			p.Kill(err)
			return nil, err
		}
		in.Endpoints.Coordinator = &execproc.Endpoint{Name: "coordinator", DSN: coord}
		in.Endpoints.KeyPrefix = ep.KeyPrefix
		in.Endpoints.GIDPrefix = ep.PreparedPrefix()
		for _, r := range ep.Redis {
			in.Endpoints.Redis = append(in.Endpoints.Redis, execproc.Endpoint{Name: r.Name, Addr: r.Addr, Password: r.Password})
		}
		decl, err := execproc.Init(ctx, p, in)
		if err != nil {
			p.Kill(err)
			return nil, err
		}
		if decl.Kind != "txn" {
			p.Kill(errors.New("wrong kind"))
			return nil, fmt.Errorf("%s: init declares kind %q, not txn", label, decl.Kind)
		}
		return &execTransferer{p: p, opt: opt}, nil
	}
}

// execTransferer is one coordinator process.
type execTransferer struct {
	p   *execproc.Proc
	opt Options
}

type execTxnReply struct {
	Phases []struct {
		Name string  `json:"name"`
		MS   float64 `json:"ms"`
	} `json:"phases"`
	Incomplete bool `json:"incomplete"`
}

func (e *execTransferer) call(ctx context.Context, op string, fields map[string]any) (execproc.Reply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}
	r, err := e.p.Call(ctx, op, fields)
	if err != nil {
		if kind, lost := execproc.Lost(err); lost {
			return r, &ProcessError{Kind: kind, Err: err}
		}
		return r, fmt.Errorf("%w: %w", ErrIndeterminate, err)
	}
	return r, nil
}

func (e *execTransferer) broken(r execproc.Reply, why string) error {
	return &ProcessError{Kind: "protocol-error", Err: e.p.Broken(r, why)}
}

// Transfer sends transfer (with crash_at when an injected crash picks it).
func (e *execTransferer) Transfer(ctx context.Context, t Transfer) (Outcome, error) {
	start := time.Now()
	fields := map[string]any{"transfer": t}
	if e.opt.CrashAt != "" && e.opt.match(t) {
		fields["crash_at"] = string(e.opt.CrashAt)
	}
	r, err := e.call(ctx, "transfer", fields)
	out := Outcome{Total: time.Since(start)}
	if err != nil {
		return out, err
	}
	var tr execTxnReply
	if err := json.Unmarshal(r.Raw, &tr); err != nil {
		return out, e.broken(r, "transfer reply does not decode: "+err.Error())
	}
	for _, ph := range tr.Phases {
		out.Phases = append(out.Phases, Phase{Name: ph.Name, Duration: time.Duration(ph.MS * float64(time.Millisecond))})
	}
	out.Incomplete = tr.Incomplete
	switch r.Outcome {
	case "ok":
		return out, nil
	case "aborted":
		return out, fmt.Errorf("%w: %s", ErrAborted, r.Message)
	case "indeterminate":
		return out, fmt.Errorf("%w: %s", ErrIndeterminate, r.Message)
	}
	return out, e.broken(r, fmt.Sprintf("outcome %q is not one of ok, aborted, indeterminate for transfer", r.Outcome))
}

// Recover sends recover.
func (e *execTransferer) Recover(ctx context.Context) error {
	r, err := e.call(ctx, "recover", map[string]any{})
	if err != nil {
		return err
	}
	switch r.Outcome {
	case "ok":
		return nil
	case "indeterminate":
		return fmt.Errorf("%w: recover: %s", ErrIndeterminate, r.Message)
	}
	return e.broken(r, fmt.Sprintf("outcome %q is not one of ok, indeterminate for recover", r.Outcome))
}

// Close closes the process's stdin and gives it a second to leave.
func (e *execTransferer) Close() error { return e.p.Close(time.Second) }
