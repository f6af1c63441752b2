package lock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// rnode is redlock's connection to one node: a single pipelined RESP2
// connection. The caller writes a command straight to the socket (no pool,
// no hand-off to another goroutine) and one reader goroutine per connection
// reads the replies in order and hands each to its command's callback.
// Commands this Locker sends to a node therefore run there in the order it
// sent them — a release never overtakes the acquire it undoes — without
// waiting for each other's replies.
//
// Deadlines: every write has the write timeout; a command's reply is
// bounded by the deadline its sender gives it: the sender closes the
// connection when it passes (rnode.expire), as does the next send that
// finds an overdue command at the head of the queue, and Close. Closing
// fails every command waiting on the connection (outcome unknown); the
// next send finds no connection, is not sent (errNoConn) and starts a
// redial in the background (dial timeout, then at most one dial per
// redialGap).
type rnode struct {
	addr, password            string
	dialTimeout, writeTimeout time.Duration
	inflight                  *atomic.Int64 // commands sent, reply not yet handed over (per Locker)

	mu       sync.Mutex
	conn     *rconn // nil: not connected
	dialing  bool
	nextDial time.Time
	closed   bool
}

// rconn is one connection of an rnode; its fields are guarded by rnode.mu
// (the reader goroutine owns br).
type rconn struct {
	nc    net.Conn
	br    *bufio.Reader
	buf   []byte    // write buffer
	wdl   time.Time // the write deadline set on nc
	queue []*rreq   // sent, reply not yet read, in order
	cause error     // why the connection was closed on purpose
	dead  bool      // failed: its commands were handed their error
}

// rreq is one command awaiting its reply.
type rreq struct {
	deadline time.Time
	done     func(reply, error)
}

// reply is a RESP2 reply: '+' simple string, ':' integer n, '$' bulk
// string of length n (-1: nil), '-' error (the callback gets it as
// respError).
type reply struct {
	kind byte
	n    int64
}

// respError is an error reply from the server; the connection stays usable.
type respError string

func (e respError) Error() string { return string(e) }

// redialGap is the shortest time between two dials of one node.
const redialGap = 50 * time.Millisecond

// errNoConn: the node has no connection (down, or reconnecting); the
// command was not sent.
var errNoConn = fmt.Errorf("%w: node not connected (reconnecting)", errNotSent)

// connect dials the node (and authenticates) within ctx and the dial timeout.
func (n *rnode) connect(ctx context.Context) (*rconn, error) {
	ctx, cancel := context.WithTimeout(ctx, n.dialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", n.addr)
	if err != nil {
		return nil, fmt.Errorf("lock: redlock node %s: %w", n.addr, err)
	}
	c := &rconn{nc: nc, br: bufio.NewReaderSize(nc, 1024)}
	if n.password != "" {
		dl, _ := ctx.Deadline()
		_ = nc.SetDeadline(dl)
		_, err = nc.Write(appendCommand(nil, "AUTH", n.password))
		var rep reply
		var rerr error
		if err == nil {
			rep, rerr, err = readReply(c.br)
		}
		if err == nil && (rerr != nil || rep.kind != '+') {
			err = fmt.Errorf("AUTH refused: %v", rerr)
		}
		if err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("lock: redlock node %s: %w", n.addr, err)
		}
		_ = nc.SetDeadline(time.Time{})
	}
	return c, nil
}

// start makes c the node's connection and starts its reader.
func (n *rnode) start(c *rconn) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		_ = c.nc.Close()
		return
	}
	n.conn = c
	n.mu.Unlock()
	go n.read(c)
}

// dialLocked starts a background dial unless one runs or the last failed
// less than redialGap ago. n.mu is held.
func (n *rnode) dialLocked() {
	now := time.Now()
	if n.dialing || n.closed || now.Before(n.nextDial) {
		return
	}
	n.dialing = true
	n.nextDial = now.Add(redialGap)
	go func() {
		c, err := n.connect(context.Background())
		n.mu.Lock()
		n.dialing = false
		n.mu.Unlock()
		if err == nil {
			n.start(c)
		}
	}()
}

// send writes the command args to the node; done gets its reply (or the
// error that ended the connection) from the reader goroutine, or errNoConn
// at once when there is no connection. It returns the connection the
// command went out on (nil: not sent).
func (n *rnode) send(deadline time.Time, done func(reply, error), args ...string) *rconn {
	now := time.Now()
	n.mu.Lock()
	c := n.conn
	if c != nil && len(c.queue) > 0 && c.queue[0].deadline.Before(now) {
		// The oldest command is overdue: the node is stuck or cut off.
		n.expireLocked(c, errors.New("no reply within the node timeout"))
		c = nil
	}
	if c == nil || n.closed {
		n.dialLocked()
		n.mu.Unlock()
		done(reply{}, errNoConn)
		return nil
	}
	c.buf = appendCommand(c.buf[:0], args...)
	if c.wdl.Sub(now) < n.writeTimeout/2 {
		c.wdl = now.Add(n.writeTimeout)
		_ = c.nc.SetWriteDeadline(c.wdl)
	}
	c.queue = append(c.queue, &rreq{deadline: deadline, done: done})
	n.inflight.Add(1)
	if _, err := c.nc.Write(c.buf); err != nil {
		n.expireLocked(c, fmt.Errorf("write: %w", err)) // the reader hands the error to every queued command
	}
	n.mu.Unlock()
	return c
}

// expireOverdue closes the connection when its oldest command is overdue.
func (n *rnode) expireOverdue() {
	n.mu.Lock()
	if c := n.conn; c != nil && len(c.queue) > 0 && c.queue[0].deadline.Before(time.Now()) {
		n.expireLocked(c, errors.New("no reply within the node timeout"))
	}
	n.mu.Unlock()
}

// expire closes c (if still open) because a command sent on it is overdue;
// the reader then fails every command queued on it.
func (n *rnode) expire(c *rconn, cause error) {
	n.mu.Lock()
	n.expireLocked(c, cause)
	n.mu.Unlock()
}

func (n *rnode) expireLocked(c *rconn, cause error) {
	if c.dead || c.cause != nil {
		return
	}
	c.cause = cause
	if n.conn == c {
		n.conn = nil
	}
	_ = c.nc.Close()
}

// read hands each reply on c to the oldest queued command until c fails.
func (n *rnode) read(c *rconn) {
	for {
		rep, rerr, err := readReply(c.br)
		n.mu.Lock()
		if err == nil && len(c.queue) == 0 {
			err = errors.New("reply to no command")
		}
		if err != nil {
			if c.cause != nil {
				err = c.cause
			}
			c.dead = true
			q := c.queue
			c.queue = nil
			if n.conn == c {
				n.conn = nil
			}
			n.mu.Unlock()
			_ = c.nc.Close()
			err = fmt.Errorf("lock: redlock node %s: %w", n.addr, err)
			for _, r := range q {
				r.done(reply{}, err)
				n.inflight.Add(-1)
			}
			return
		}
		r := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		n.mu.Unlock()
		r.done(rep, rerr)
		n.inflight.Add(-1)
	}
}

// close closes the node's connection for good.
func (n *rnode) close() {
	n.mu.Lock()
	n.closed = true
	if c := n.conn; c != nil {
		n.expireLocked(c, errors.New("locker closed"))
	}
	n.mu.Unlock()
}

// appendCommand appends args as a RESP2 array of bulk strings.
func appendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

// readReply reads one RESP2 reply that is not an array. rerr is an error
// reply (the connection stays usable); err a broken connection or protocol.
func readReply(br *bufio.Reader) (rep reply, rerr, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return reply{}, nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return reply{}, nil, fmt.Errorf("protocol error: bad line %q", line)
	}
	body := line[1 : len(line)-2]
	rep.kind = line[0]
	switch rep.kind {
	case '+':
	case '-':
		rerr = respError(body)
	case ':', '$':
		rep.n, err = strconv.ParseInt(string(body), 10, 64)
		if err != nil {
			return reply{}, nil, fmt.Errorf("protocol error: %q: %w", line, err)
		}
		if rep.kind == '$' && rep.n >= 0 {
			if _, err := br.Discard(int(rep.n) + 2); err != nil {
				return reply{}, nil, err
			}
		}
	default:
		return reply{}, nil, fmt.Errorf("protocol error: unexpected reply %q", line)
	}
	return rep, rerr, nil
}

// setNXResult reads SET NX's reply: nil when set, ErrNotAcquired when the
// key exists (or a demoted primary refused the write).
func setNXResult(rep reply, rerr error) error {
	switch {
	case rerr != nil && isReadOnly(rerr):
		return fmt.Errorf("%w: %w", ErrNotAcquired, rerr)
	case rerr != nil:
		return rerr
	case rep.kind == '+':
		return nil
	case rep.kind == '$' && rep.n < 0:
		return ErrNotAcquired
	}
	return fmt.Errorf("lock: SET NX: unexpected reply %q", rep.kind)
}

// scriptResult reads the reply of a compare-and-X script: nil on 1,
// ErrNotHeld on 0.
func scriptResult(rep reply, rerr error) error {
	switch {
	case rerr != nil:
		return rerr
	case rep.kind == ':' && rep.n == 1:
		return nil
	case rep.kind == ':' && rep.n == 0:
		return ErrNotHeld
	}
	return fmt.Errorf("lock: script: unexpected reply %q %d", rep.kind, rep.n)
}
