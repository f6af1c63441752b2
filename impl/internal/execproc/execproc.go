// Package execproc runs one implementation process of faultline's process
// protocol (docs/protocol.md): it starts an executable, writes one JSON
// request per line on its stdin, reads one JSON reply per line from its
// stdout, sends its stderr to a log file, and turns every way the process
// can misbehave — dying, missing a deadline, writing something that is not
// a reply — into an error that names the process and, for bad output, the
// line. It never waits past a request's deadline plus a grace period.
//
// A Proc whose process misbehaved is dead for good: every later call fails
// at once with the same error, and the caller starts a new process (a new
// process id in the history, as Jepsen does with a crashed client).
package execproc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// Version is the protocol version faultline speaks (the "protocol" field of
// init).
const Version = 1

// Grace is how long past a request's deadline faultline waits for its reply
// before it declares the reply missing and kills the process.
const Grace = 500 * time.Millisecond

// maxLine bounds one reply line; a longer one is a protocol error.
const maxLine = 1 << 20

// Errors a call returns; each leaves the process dead (killed).
var (
	// ErrDied: the process exited (or was killed) with the request in flight.
	ErrDied = errors.New("implementation process died")
	// ErrNoReply: no reply by the request's deadline plus Grace.
	ErrNoReply = errors.New("implementation process did not reply in time")
	// ErrProtocol: the process wrote something that is not a valid reply.
	ErrProtocol = errors.New("implementation process broke the protocol")
	// errAbandoned: the caller's context was cancelled with the request in
	// flight (the run's hard stop); the process was killed.
	errAbandoned = errors.New("request abandoned")
)

// Config says what to run.
type Config struct {
	Path string   // the executable
	Args []string // its arguments
	// Label names the process in every error, e.g.
	// "exec:examples/python/seed_lock.py process 3".
	Label string
	// LogFile receives the process's stderr (appended); "" keeps only the
	// last few KB in memory, for error messages.
	LogFile string
	// Env is added to the inherited environment.
	Env []string
}

// Reply is one decoded reply line: the fields every reply has, and the
// whole line for the caller's own fields.
type Reply struct {
	ID      uint64 `json:"id"`
	Outcome string `json:"outcome"`
	Message string `json:"message"`
	// Line is the reply's line number on stdout (1-based) and Raw its text.
	Line int             `json:"-"`
	Raw  json.RawMessage `json:"-"`
}

// Proc is one running implementation process. Calls may be concurrent; the
// process answers them in any order, matched by id.
type Proc struct {
	cfg   Config
	cmd   *exec.Cmd
	stdin *os.File // non-blocking pipe: writes take a deadline
	tail  *tailBuffer
	logf  *os.File

	wmu sync.Mutex // one request line at a time

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan Reply
	err     error         // why the process is dead; nil while alive
	dead    chan struct{} // closed with err set
	exited  chan struct{} // closed when Wait returned
}

// Start starts the process. ctx bounds nothing after Start returns: the
// process lives until Close or a failure.
func Start(ctx context.Context, cfg Config) (*Proc, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.Path, cfg.Args...)
	cmd.Env = append(os.Environ(), cfg.Env...)
	// Its own process group (Unix), so SIGSTOP/SIGKILL reach whatever it
	// spawned; killed with faultline should faultline die first (Linux).
	cmd.SysProcAttr = ownGroupDyingWithUs()
	p := &Proc{cfg: cfg, cmd: cmd, tail: &tailBuffer{max: 4096}, pending: map[uint64]chan Reply{},
		dead: make(chan struct{}), exited: make(chan struct{})}
	var stderr io.Writer = p.tail
	if cfg.LogFile != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.LogFile), 0o755); err != nil {
			return nil, fmt.Errorf("%s: log directory: %w", cfg.Label, err)
		}
		f, err := os.OpenFile(cfg.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("%s: log file: %w", cfg.Label, err)
		}
		p.logf = f
		stderr = io.MultiWriter(f, p.tail)
	}
	cmd.Stderr = stderr
	// Our own pipe for stdin (os.Pipe is non-blocking and pollable), so a
	// write can carry a deadline without a goroutine per request.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		p.closeLog()
		return nil, fmt.Errorf("%s: %w", cfg.Label, err)
	}
	cmd.Stdin = stdinR
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		p.closeLog()
		return nil, fmt.Errorf("%s: %w", cfg.Label, err)
	}
	p.stdin = stdinW
	err = cmd.Start()
	stdinR.Close() // the child has its copy
	if err != nil {
		stdinW.Close()
		p.closeLog()
		return nil, fmt.Errorf("%s: start %s: %w", cfg.Label, cfg.Path, err)
	}
	go p.read(stdout)
	go func() {
		werr := cmd.Wait()
		close(p.exited)
		p.fail(fmt.Errorf("%w: %s (pid %d) exited: %v%s", ErrDied, cfg.Label, cmd.Process.Pid, werr, p.stderrTail()))
		p.closeLog()
	}()
	return p, nil
}

// Pid is the OS process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Label is the process's name in messages.
func (p *Proc) Label() string { return p.cfg.Label }

// Kill kills the process (killGroup) and waits (up to 5 s) until it is
// gone, failing every call in flight with cause.
func (p *Proc) Kill(cause error) {
	p.fail(cause)
	p.killGroup()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
	}
}

// Err is why the process is dead (nil while it is alive).
func (p *Proc) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Close asks the process to leave (stdin closed), waits up to wait for it
// to exit, then kills it.
func (p *Proc) Close(wait time.Duration) error {
	p.wmu.Lock()
	_ = p.stdin.Close()
	p.wmu.Unlock()
	select {
	case <-p.exited:
	case <-time.After(wait):
	}
	p.Kill(fmt.Errorf("%w: %s closed", ErrDied, p.cfg.Label))
	return nil
}

// Call sends one request (op and fields; id and deadline_ms are added) and
// waits for its reply until ctx's deadline plus Grace (ctx must have a
// deadline). On ErrDied, ErrNoReply and ErrProtocol the process is dead.
// A ctx cancelled before the deadline returns ctx's error and kills the
// process too: the request's outcome is unknown and a late reply must not
// be mistaken for another's.
func (p *Proc) Call(ctx context.Context, op string, fields map[string]any) (Reply, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return Reply{}, fmt.Errorf("%s: %s called without a deadline", p.cfg.Label, op)
	}
	ch := make(chan Reply, 1)
	p.mu.Lock()
	if p.err != nil {
		err := p.err
		p.mu.Unlock()
		return Reply{}, err
	}
	id := p.nextID
	p.nextID++
	p.pending[id] = ch
	p.mu.Unlock()

	req := make(map[string]any, len(fields)+3)
	for k, v := range fields {
		req[k] = v
	}
	req["id"], req["op"] = id, op
	req["deadline_ms"] = max(time.Until(deadline).Milliseconds(), 0)
	line, err := json.Marshal(req)
	if err != nil {
		p.forget(id)
		return Reply{}, fmt.Errorf("%s: encode %s request: %w", p.cfg.Label, op, err)
	}
	line = append(line, '\n')
	if err := p.write(line, deadline.Add(Grace)); err != nil {
		p.forget(id)
		return Reply{}, err
	}

	timer := time.NewTimer(time.Until(deadline) + Grace)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r, nil
	case <-p.dead:
		select {
		case r := <-ch: // the reply and the exit raced: the reply counts
			return r, nil
		default:
		}
		return Reply{}, p.Err()
	case <-timer.C:
		err := fmt.Errorf("%w: %s (pid %d) sent no reply to request %d (%s) within its deadline plus %v; killed",
			ErrNoReply, p.cfg.Label, p.Pid(), id, op, Grace)
		p.Kill(err)
		return Reply{}, err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The deadline itself: keep waiting for the grace period.
			select {
			case r := <-ch:
				return r, nil
			case <-p.dead:
				return Reply{}, p.Err()
			case <-timer.C:
				err := fmt.Errorf("%w: %s (pid %d) sent no reply to request %d (%s) within its deadline plus %v; killed",
					ErrNoReply, p.cfg.Label, p.Pid(), id, op, Grace)
				p.Kill(err)
				return Reply{}, err
			}
		}
		err := fmt.Errorf("%w: %s: request %d (%s) abandoned, process killed: %w", errAbandoned, p.cfg.Label, id, op, context.Cause(ctx))
		p.Kill(err)
		return Reply{}, err
	}
}

// write sends one request line; a process that does not read its stdin
// by until is killed.
func (p *Proc) write(line []byte, until time.Time) error {
	p.wmu.Lock()
	_ = p.stdin.SetWriteDeadline(until)
	_, err := p.stdin.Write(line)
	p.wmu.Unlock()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w: %s (pid %d) does not read its stdin; killed", ErrNoReply, p.cfg.Label, p.Pid())
	default:
		if perr := p.Err(); perr != nil {
			return perr
		}
		err = fmt.Errorf("%w: %s (pid %d): write request: %v%s", ErrDied, p.cfg.Label, p.Pid(), err, p.stderrTail())
	}
	p.Kill(err)
	return err
}

func (p *Proc) forget(id uint64) {
	p.mu.Lock()
	delete(p.pending, id)
	p.mu.Unlock()
}

// read decodes reply lines until stdout ends or a line is bad.
func (p *Proc) read(stdout io.Reader) {
	br := bufio.NewReaderSize(stdout, 64<<10)
	for n := 1; ; n++ {
		line, err := readLine(br)
		if err != nil {
			if errors.Is(err, errLong) {
				p.Kill(fmt.Errorf("%w: %s (pid %d): stdout line %d is longer than %d bytes", ErrProtocol, p.cfg.Label, p.Pid(), n, maxLine))
			}
			return // EOF: Wait reports the exit
		}
		if len(bytes.TrimSpace(line)) == 0 {
			p.Kill(fmt.Errorf("%w: %s (pid %d): stdout line %d is empty (want one JSON reply per line)", ErrProtocol, p.cfg.Label, p.Pid(), n))
			return
		}
		var r struct {
			ID      *uint64 `json:"id"`
			Outcome string  `json:"outcome"`
			Message string  `json:"message"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			p.Kill(fmt.Errorf("%w: %s (pid %d): stdout line %d is not a JSON reply (%v): %s", ErrProtocol, p.cfg.Label, p.Pid(), n, err, quote(line)))
			return
		}
		if r.ID == nil {
			p.Kill(fmt.Errorf("%w: %s (pid %d): stdout line %d has no \"id\": %s", ErrProtocol, p.cfg.Label, p.Pid(), n, quote(line)))
			return
		}
		p.mu.Lock()
		ch, ok := p.pending[*r.ID]
		delete(p.pending, *r.ID)
		p.mu.Unlock()
		if !ok {
			p.Kill(fmt.Errorf("%w: %s (pid %d): stdout line %d answers id %d, which no request in flight has: %s",
				ErrProtocol, p.cfg.Label, p.Pid(), n, *r.ID, quote(line)))
			return
		}
		ch <- Reply{ID: *r.ID, Outcome: r.Outcome, Message: r.Message, Line: n, Raw: append(json.RawMessage(nil), line...)}
	}
}

var errLong = errors.New("line too long")

// readLine reads one '\n'-terminated line (without it), at most maxLine.
func readLine(br *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxLine {
			return nil, errLong
		}
		switch {
		case err == nil:
			return bytes.TrimRight(buf, "\r\n"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) > 0:
			return bytes.TrimRight(buf, "\r\n"), nil // last line without '\n'
		default:
			return nil, err
		}
	}
}

// fail marks the process dead with err (the first cause wins) and wakes
// every call in flight.
func (p *Proc) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return
	}
	p.err = err
	close(p.dead)
}

func (p *Proc) closeLog() {
	if p.logf != nil {
		_ = p.logf.Close()
	}
}

// stderrTail is the end of the process's stderr, for messages.
func (p *Proc) stderrTail() string {
	s := bytes.TrimSpace(p.tail.Bytes())
	if len(s) == 0 {
		return ""
	}
	where := ""
	if p.cfg.LogFile != "" {
		where = " (" + p.cfg.LogFile + ")"
	}
	return "; stderr" + where + ": " + string(s)
}

// quote renders a bad line for a message, cut at 200 bytes.
func quote(line []byte) string {
	if len(line) > 200 {
		return fmt.Sprintf("%q…", line[:200])
	}
	return fmt.Sprintf("%q", line)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, b...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.b...)
}
