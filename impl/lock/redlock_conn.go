package lock

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faultline-dev/faultline/internal/blockconn"
)

// rnode is redlock's connection to one node: a single pipelined RESP2
// connection. The caller writes a command straight to the socket (no pool,
// no hand-off to another goroutine) and one reader goroutine per connection
// reads the replies in order and hands each to its command's handler.
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
//
// A polled node (polled set: the Locker's io=blocking) has no reader
// goroutine: its connection is a blocking socket (internal/blockconn) and
// the goroutine running a round reads the replies itself (readReady, after
// blockconn.PollRead over the round's nodes), each to the command at the
// head of the queue — a reply still owed to an earlier round is read, and
// handed to that round's handler, before the next one — and closing such
// a connection fails its queued commands on the spot (unlock delivers the
// errors). Only one goroutine at a time may read a polled node's
// connection (the Locker's roundMu).
type rnode struct {
	addr, password            string
	dialTimeout, writeTimeout time.Duration
	inflight                  *atomic.Int64 // commands sent, reply not yet handed over (per Locker)
	polled                    bool          // connections are read by their callers, not a reader goroutine

	mu       sync.Mutex
	conn     *rconn // nil: not connected
	dialing  bool
	nextDial time.Time
	closed   bool
	failed   []failedReq // commands of a closed polled connection: unlock hands them their error
}

// failedReq is a command whose connection was closed, and why.
type failedReq struct {
	r   rreq
	err error
}

// rconn is one connection of an rnode; its fields are guarded by rnode.mu
// (the reader goroutine owns br).
type rconn struct {
	nc    net.Conn
	bc    *blockconn.Conn // nc when polled: read by the round's caller, no reader goroutine
	br    *bufio.Reader
	buf   []byte    // write buffer
	wdl   time.Time // the write deadline set on nc
	queue []rreq    // sent, reply not yet read, in order, from queue[head] on
	head  int
	cause error // why the connection was closed on purpose
	dead  bool  // failed: its commands were handed their error
}

// rreq is one command awaiting its reply: h gets it as node's.
type rreq struct {
	deadline time.Time
	h        replyHandler
	node     int
	script   *rscript // an EVALSHA of this script: on NOSCRIPT it is sent again as EVAL
	args     []string // the EVALSHA's arguments after the script's hash (numkeys, keys, args)
}

// replyHandler gets the reply of a command sent to a node (or the error
// that ended its connection, or errNoConn when it was not sent). It runs on
// the connection's reader goroutine (or the sender's, when not sent) and
// must not block.
type replyHandler interface {
	handle(node int, rep reply, err error)
}

// ignoreReply is the handler of a command whose answer nobody waits for.
type ignoreReply struct{}

func (ignoreReply) handle(int, reply, error) {}

// rscript is a Lua script sent by hash (EVALSHA); a node that does not know
// it yet (a new server, or its script cache flushed) answers NOSCRIPT and
// gets it once as EVAL, which also caches it there.
type rscript struct {
	src, sha string
}

func newRScript(src string) *rscript {
	h := sha1.Sum([]byte(src))
	return &rscript{src: src, sha: hex.EncodeToString(h[:])}
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

// connect dials the node, authenticates and loads the scripts sent by
// hash (preloaded: the first EVALSHA on a new connection, as after a
// restart, needs no NOSCRIPT round trip), within ctx and the dial timeout.
func (n *rnode) connect(ctx context.Context) (*rconn, error) {
	ctx, cancel := context.WithTimeout(ctx, n.dialTimeout)
	defer cancel()
	var d net.Dialer
	var nc net.Conn
	var err error
	if n.polled {
		nc, err = blockconn.Dial(ctx, &d, "tcp", n.addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", n.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("lock: redlock node %s: %w", n.addr, err)
	}
	c := &rconn{nc: nc, br: bufio.NewReaderSize(nc, 1024)}
	c.bc, _ = nc.(*blockconn.Conn) // off Linux: a netpoller conn with a reader goroutine
	dl, _ := ctx.Deadline()
	_ = nc.SetDeadline(dl)
	var b []byte
	if n.password != "" {
		b = appendCommand(b, "AUTH", n.password)
	}
	for _, sc := range preloaded {
		b = appendCommand(b, "SCRIPT", "LOAD", sc.src)
	}
	_, err = nc.Write(b)
	if err == nil && n.password != "" {
		var rep reply
		var rerr error
		rep, rerr, err = readReply(c.br)
		if err == nil && (rerr != nil || rep.kind != '+') {
			err = fmt.Errorf("AUTH refused: %v", rerr)
		}
	}
	for range preloaded {
		if err == nil {
			_, _, err = readReply(c.br) // an error reply (scripting refused) leaves it to EVALSHA
		}
	}
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("lock: redlock node %s: %w", n.addr, err)
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// start makes c the node's connection and starts its reader (unless its
// callers read it).
func (n *rnode) start(c *rconn) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		_ = c.nc.Close()
		return
	}
	n.conn = c
	n.mu.Unlock()
	if c.bc == nil {
		go n.read(c)
	}
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

// send writes the command args to the node; h gets its reply (or the
// error that ended the connection) from the reader goroutine, or errNoConn
// at once when there is no connection. It returns the connection the
// command went out on (nil: not sent).
func (n *rnode) send(deadline time.Time, h replyHandler, node int, args ...string) *rconn {
	return n.sendReq(rreq{deadline: deadline, h: h, node: node}, args)
}

// sendScript sends EVALSHA of sc with args (numkeys, keys, arguments); a
// NOSCRIPT answer sends it again as EVAL (on the same connection, after
// the commands sent there since) and h gets that reply.
func (n *rnode) sendScript(deadline time.Time, h replyHandler, node int, sc *rscript, args ...string) *rconn {
	return n.sendReq(rreq{deadline: deadline, h: h, node: node, script: sc, args: args}, nil)
}

// sendReq sends args, or for a script request EVALSHA and its arguments.
func (n *rnode) sendReq(req rreq, args []string) *rconn {
	now := time.Now()
	n.mu.Lock()
	c := n.conn
	if c != nil && c.bc != nil && c.overdue(now) {
		// Replies nobody needed may have waited in the socket since:
		// read them before calling the node stuck.
		n.mu.Unlock()
		n.readArrived(c)
		n.mu.Lock()
		c = n.conn
	}
	if c != nil && c.overdue(now) {
		// The oldest command is overdue: the node is stuck or cut off.
		n.expireLocked(c, errors.New("no reply within the node timeout"))
		c = nil
	}
	if c == nil || n.closed {
		n.dialLocked()
		n.unlock()
		req.h.handle(req.node, reply{}, errNoConn)
		return nil
	}
	if req.script != nil {
		c.buf = appendScript(c.buf[:0], "EVALSHA", req.script.sha, req.args)
	} else {
		c.buf = appendCommand(c.buf[:0], args...)
	}
	n.writeLocked(c, now, req)
	n.unlock()
	return c
}

// unlock releases n.mu, then hands the commands of the polled connections
// closed meanwhile their error (no reader goroutine does).
func (n *rnode) unlock() {
	q := n.failed
	n.failed = nil
	n.mu.Unlock()
	for _, f := range q {
		f.r.h.handle(f.r.node, reply{}, f.err)
		n.inflight.Add(-1)
	}
}

// writeLocked queues req on c and writes c.buf. n.mu is held.
func (n *rnode) writeLocked(c *rconn, now time.Time, req rreq) {
	if c.wdl.Sub(now) < n.writeTimeout/2 {
		c.wdl = now.Add(n.writeTimeout)
		_ = c.nc.SetWriteDeadline(c.wdl)
	}
	c.queue = append(c.queue, req)
	n.inflight.Add(1)
	if _, err := c.nc.Write(c.buf); err != nil {
		n.expireLocked(c, fmt.Errorf("write: %w", err)) // the reader hands the error to every queued command
	}
}

// overdue: c's oldest command waits for its reply past its deadline. n.mu
// is held.
func (c *rconn) overdue(now time.Time) bool {
	return c.head < len(c.queue) && c.queue[c.head].deadline.Before(now)
}

// expireOverdue closes the connection when its oldest command is overdue
// (a polled one once the replies that arrived are read).
func (n *rnode) expireOverdue() {
	if c := n.owed(); c != nil {
		n.readArrived(c)
	}
	n.mu.Lock()
	if c := n.conn; c != nil && c.overdue(time.Now()) {
		n.expireLocked(c, errors.New("no reply within the node timeout"))
	}
	n.unlock()
}

// expire closes c (if still open) because a command sent on it is overdue;
// the reader then fails every command queued on it.
func (n *rnode) expire(c *rconn, cause error) {
	n.mu.Lock()
	n.expireLocked(c, cause)
	n.unlock()
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
	if c.bc != nil {
		// No reader goroutine: its commands fail now (unlock hands them
		// the error); no reply is read from c any more.
		c.dead = true
		err := fmt.Errorf("lock: redlock node %s: %w", n.addr, cause)
		for _, r := range c.queue[c.head:] {
			n.failed = append(n.failed, failedReq{r, err})
		}
		c.queue, c.head = nil, 0
	}
}

// read hands each reply on c to the oldest queued command until c fails.
func (n *rnode) read(c *rconn) {
	for {
		rep, rerr, err := readReply(c.br)
		if !n.deliver(c, rep, rerr, err) {
			return
		}
	}
}

// readReady reads the replies of polled connection c that have arrived
// (at least one: blockconn.PollRead said c is ready; a partial reply waits
// for its rest up to deadline), each handed to the oldest queued command,
// while its read buffer holds more. It returns false when c failed. Only
// the goroutine holding the Locker's roundMu calls it.
func (n *rnode) readReady(c *rconn, deadline time.Time) bool {
	_ = c.nc.SetReadDeadline(deadline)
	for {
		rep, rerr, err := readReply(c.br)
		if !n.deliver(c, rep, rerr, err) {
			return false
		}
		if c.br.Buffered() == 0 {
			return true
		}
	}
}

// deliver hands reply rep (rerr), or read error err, of connection c to
// its command: the oldest queued one (a NOSCRIPT reply resends the script
// in full instead). An error fails every command queued on c, closes c and
// returns false.
func (n *rnode) deliver(c *rconn, rep reply, rerr, err error) bool {
	n.mu.Lock()
	if err == nil && c.head == len(c.queue) {
		err = errors.New("reply to no command")
	}
	if err != nil {
		if c.cause != nil {
			err = c.cause
		}
		c.dead = true
		q := c.queue[c.head:]
		c.queue, c.head = nil, 0
		if n.conn == c {
			n.conn = nil
		}
		n.unlock()
		_ = c.nc.Close()
		err = fmt.Errorf("lock: redlock node %s: %w", n.addr, err)
		for _, r := range q {
			r.h.handle(r.node, reply{}, err)
			n.inflight.Add(-1)
		}
		return false
	}
	r := c.queue[c.head]
	c.queue[c.head] = rreq{}
	switch c.head++; {
	case c.head == len(c.queue):
		c.queue, c.head = c.queue[:0], 0
	case c.head >= 64 && 2*c.head >= len(c.queue): // never drained: move the rest to the front
		k := copy(c.queue, c.queue[c.head:])
		clear(c.queue[k:])
		c.queue, c.head = c.queue[:k], 0
	}
	if r.script != nil && isNoScript(rerr) && !c.dead && c.cause == nil {
		// The node does not know the script: send it whole, once.
		c.buf = appendScript(c.buf[:0], "EVAL", r.script.src, r.args)
		r.script = nil
		n.writeLocked(c, time.Now(), r)
		n.unlock()
		n.inflight.Add(-1) // the EVAL counts instead
		return true
	}
	n.unlock()
	r.h.handle(r.node, rep, rerr)
	n.inflight.Add(-1)
	return true
}

// readArrived reads the replies that have arrived on polled connection c,
// without waiting. Only the goroutine holding the Locker's roundMu calls
// it.
func (n *rnode) readArrived(c *rconn) {
	conns, ready := []*blockconn.Conn{c.bc}, []bool{false}
	if err := blockconn.PollRead(conns, ready, 0); err == nil && ready[0] {
		n.readReady(c, time.Now().Add(redialGap)) // a reply cut in two: its rest within 50 ms
	}
}

// owed is n's polled connection when commands on it await their reply
// (nil otherwise).
func (n *rnode) owed() *rconn {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c := n.conn; c != nil && c.bc != nil && c.head < len(c.queue) {
		return c
	}
	return nil
}

// isNoScript: the server does not have the script of an EVALSHA.
func isNoScript(rerr error) bool {
	var re respError
	return errors.As(rerr, &re) && strings.HasPrefix(string(re), "NOSCRIPT")
}

// close closes the node's connection for good.
func (n *rnode) close() {
	n.mu.Lock()
	n.closed = true
	if c := n.conn; c != nil {
		n.expireLocked(c, errors.New("locker closed"))
	}
	n.unlock()
}

// appendCommand appends args as a RESP2 array of bulk strings.
func appendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = appendBulk(b, a)
	}
	return b
}

// appendScript appends cmd (EVAL or EVALSHA), the script (or its hash) and
// args as one RESP2 command.
func appendScript(b []byte, cmd, script string, args []string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(2+len(args)), 10)
	b = append(b, '\r', '\n')
	b = appendBulk(b, cmd)
	b = appendBulk(b, script)
	for _, a := range args {
		b = appendBulk(b, a)
	}
	return b
}

func appendBulk(b []byte, a string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(a)), 10)
	b = append(b, '\r', '\n')
	b = append(b, a...)
	return append(b, '\r', '\n')
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
