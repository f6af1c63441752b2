//go:build linux

package blockconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// tickMargin is how far below a deadline a socket timeout (SO_RCVTIMEO)
// is set: the kernel rounds it up to its tick and may expire it a tick
// late (4 ms each at HZ=250, 10 ms at HZ=100). The rest is waited with
// ppoll, whose timeout is exact.
const tickMargin = 25 * time.Millisecond

// Dial connects to addr with d and returns a Conn over a blocking socket
// for the tcp networks (the connect itself goes through d, so d's timeout
// and ctx bound it); any other network gets d's connection as it is.
func Dial(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil || !strings.HasPrefix(network, "tcp") {
		return nc, err
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc, nil
	}
	c, err := fromTCP(tc)
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("blockconn: %s: %w", addr, err)
	}
	return c, nil
}

// fromTCP takes tc's socket out of the netpoller: a duplicate descriptor
// (close-on-exec) in blocking mode; tc is closed (the socket stays open
// through the duplicate, and Go's close removes it from epoll).
func fromTCP(tc *net.TCPConn) (*Conn, error) {
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, f, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = os.NewSyscallError("fcntl", e)
			return
		}
		fd = int(r)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	c := &Conn{fd: fd, laddr: tc.LocalAddr(), raddr: tc.RemoteAddr()}
	if err := tc.Close(); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	return c, nil
}

// Conn is a TCP connection over a blocking socket outside Go's netpoller
// (see the package comment). Read and Write may each be called from one
// goroutine at a time; Close and the deadline setters from any. Unlike a
// netpoller connection, a deadline set while a Read or Write is waiting
// applies from its next wait: the wait in progress ends at the deadline it
// started with, on data, or on Close (go-redis sets deadlines only between
// its reads and writes, never during one).
type Conn struct {
	fd           int
	laddr, raddr net.Addr
	// mu is held shared by every Read, Write and raw call while it uses fd,
	// and exclusively by Close to close it.
	mu     sync.RWMutex
	closed atomic.Bool
	// rdl and wdl are the read and write deadlines, Unix nanoseconds (0:
	// none).
	rdl, wdl atomic.Int64
	// rcvTimeo is the socket's SO_RCVTIMEO (0: none); only Read sets it.
	rcvTimeo time.Duration
}

var _ net.Conn = (*Conn)(nil)

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.laddr, Addr: c.raddr, Err: err}
}

// remaining is the time left to deadline dl (Unix ns; 0: none, ok).
func remaining(dl int64) (time.Duration, bool) {
	if dl == 0 {
		return 0, true
	}
	rem := time.Duration(dl - time.Now().UnixNano())
	return rem, rem > 0
}

// Read reads into b, waiting in the kernel until data, EOF, an error, the
// read deadline or Close.
func (c *Conn) Read(b []byte) (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() {
		return 0, c.opError("read", net.ErrClosed)
	}
	if len(b) == 0 {
		return 0, nil
	}
	for {
		rem, ok := remaining(c.rdl.Load())
		if !ok {
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		}
		var n uintptr
		var e syscall.Errno
		if rem == 0 || rem > 2*tickMargin {
			// Far from the deadline (or none): one blocking recv, its socket
			// timeout below the deadline by tickMargin.
			if err := c.setRcvTimeo(rem); err != nil {
				return 0, c.opError("read", err)
			}
			n, _, e = syscall.Syscall6(syscall.SYS_RECVFROM, uintptr(c.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
		} else {
			// Near it: wait exactly with ppoll, then take what is there.
			if e = ppoll(c.fd, pollIn, rem); e == 0 {
				n, _, e = syscall.Syscall6(syscall.SYS_RECVFROM, uintptr(c.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), syscall.MSG_DONTWAIT, 0, 0)
			}
		}
		if c.closed.Load() {
			return 0, c.opError("read", net.ErrClosed)
		}
		switch e {
		case 0:
			if n == 0 {
				return 0, io.EOF
			}
			return int(n), nil
		case syscall.EINTR, syscall.EAGAIN:
			// A signal, the socket timeout (set below the deadline) or a
			// spurious wake-up: check the deadline again.
		default:
			return 0, c.opError("read", os.NewSyscallError("recvfrom", e))
		}
	}
}

// setRcvTimeo makes SO_RCVTIMEO at most rem-tickMargin (rem 0: none),
// keeping the current one when it is at most 1/32 (or 5 ms) shorter: a
// client that sets its deadline to now+timeout before every request keeps
// one socket timeout and makes no setsockopt per request.
func (c *Conn) setRcvTimeo(rem time.Duration) error {
	want := time.Duration(0)
	if rem > 0 {
		want = rem - tickMargin
	}
	cur := c.rcvTimeo
	if want == 0 && cur == 0 {
		return nil
	}
	slack := max(want/32, 5*time.Millisecond)
	if want > 0 && cur > 0 && cur <= want && cur >= want-slack {
		return nil
	}
	if want > 0 {
		want -= slack / 2
	}
	tv := syscall.NsecToTimeval(int64(want))
	if err := syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		c.rcvTimeo = -1 // unknown: set it again next time
		return os.NewSyscallError("setsockopt", err)
	}
	c.rcvTimeo = want
	return nil
}

// Write writes b, waiting (ppoll, up to the write deadline) while the send
// buffer is full.
func (c *Conn) Write(b []byte) (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	done := 0
	for done < len(b) {
		if c.closed.Load() {
			return done, c.opError("write", net.ErrClosed)
		}
		// Never blocks (MSG_DONTWAIT), so it need not leave the scheduler.
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(c.fd), uintptr(unsafe.Pointer(&b[done])), uintptr(len(b)-done),
			syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			done += int(n)
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
		default:
			return done, c.opError("write", os.NewSyscallError("sendto", e))
		}
		rem, ok := remaining(c.wdl.Load())
		if !ok {
			return done, c.opError("write", os.ErrDeadlineExceeded)
		}
		if e := ppoll(c.fd, pollOut, rem); e != 0 && e != syscall.EINTR {
			return done, c.opError("write", os.NewSyscallError("ppoll", e))
		}
	}
	return done, nil
}

// Close wakes any Read or Write waiting in the kernel (shutdown), waits
// for them to return and closes the socket.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return c.opError("close", net.ErrClosed)
	}
	_ = syscall.Shutdown(c.fd, syscall.SHUT_RDWR)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := syscall.Close(c.fd); err != nil {
		return c.opError("close", os.NewSyscallError("close", err))
	}
	return nil
}

// LocalAddr is the local address.
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// SetDeadline sets both deadlines (zero: none).
func (c *Conn) SetDeadline(t time.Time) error {
	c.rdl.Store(unixNano(t))
	c.wdl.Store(unixNano(t))
	return nil
}

// SetReadDeadline bounds Read (zero: none). It makes no syscall: Read
// adjusts the socket timeout when it has to.
func (c *Conn) SetReadDeadline(t time.Time) error { c.rdl.Store(unixNano(t)); return nil }

// SetWriteDeadline bounds Write (zero: none).
func (c *Conn) SetWriteDeadline(t time.Time) error { c.wdl.Store(unixNano(t)); return nil }

// SyscallConn gives raw access to the socket (go-redis' connection health
// check peeks with it).
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return rawConn{c}, nil }

const (
	pollIn  = 0x1 // POLLIN
	pollOut = 0x4 // POLLOUT
)

// ppoll waits until fd is ready for events, or rem (0: no limit) passed.
func ppoll(fd int, events int16, rem time.Duration) syscall.Errno {
	p := struct {
		fd      int32
		events  int16
		revents int16
	}{int32(fd), events, 0}
	var ts *syscall.Timespec
	if rem > 0 {
		t := syscall.NsecToTimespec(int64(rem))
		ts = &t
	}
	_, _, e := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&p)), 1, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	return e
}

// rawConn is Conn's syscall.RawConn: f runs with the descriptor while
// Close cannot close it; Read and Write wait (ppoll, up to the deadline)
// while f returns false.
type rawConn struct{ c *Conn }

func (r rawConn) Control(f func(fd uintptr)) error {
	r.c.mu.RLock()
	defer r.c.mu.RUnlock()
	if r.c.closed.Load() {
		return net.ErrClosed
	}
	f(uintptr(r.c.fd))
	return nil
}

func (r rawConn) Read(f func(fd uintptr) bool) error  { return r.wait(f, pollIn, &r.c.rdl) }
func (r rawConn) Write(f func(fd uintptr) bool) error { return r.wait(f, pollOut, &r.c.wdl) }

func (r rawConn) wait(f func(fd uintptr) bool, events int16, dl *atomic.Int64) error {
	r.c.mu.RLock()
	defer r.c.mu.RUnlock()
	for {
		if r.c.closed.Load() {
			return net.ErrClosed
		}
		if f(uintptr(r.c.fd)) {
			return nil
		}
		rem, ok := remaining(dl.Load())
		if !ok {
			return os.ErrDeadlineExceeded
		}
		if e := ppoll(r.c.fd, events, rem); e != 0 && !errors.Is(e, syscall.EINTR) {
			return os.NewSyscallError("ppoll", e)
		}
	}
}

// PollRead waits until at least one of conns has something to read (data,
// EOF or an error), or timeout passes (timeout <= 0: it only looks), and
// sets ready[i] for each conn that has. A closed conn is ready (its Read
// fails at once), and Close of a conn in the set wakes the wait. It is how
// one goroutine waits on several blocking sockets at once (a fan-out
// collecting its own replies) with one syscall and no netpoller: a ready
// conn's Read then returns without waiting. ready has len(conns) entries.
// An interrupted wait (EINTR) returns with nothing ready.
func PollRead(conns []*Conn, ready []bool, timeout time.Duration) error {
	type pollFd struct {
		fd      int32
		events  int16
		revents int16
	}
	var fixed [8]pollFd
	fds := fixed[:0]
	closed := false
	for i, c := range conns {
		ready[i] = false
		c.mu.RLock()
		defer c.mu.RUnlock()
		if c.closed.Load() {
			ready[i], closed = true, true
		}
		fds = append(fds, pollFd{fd: int32(c.fd), events: pollIn})
	}
	if closed || len(fds) == 0 {
		return nil
	}
	t := syscall.NsecToTimespec(int64(max(timeout, 0)))
	var e syscall.Errno
	if timeout > 0 {
		_, _, e = syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)), uintptr(unsafe.Pointer(&t)), 0, 0, 0)
	} else {
		_, _, e = syscall.RawSyscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)), uintptr(unsafe.Pointer(&t)), 0, 0, 0)
	}
	switch e {
	case 0:
	case syscall.EINTR:
		return nil
	default:
		return os.NewSyscallError("ppoll", e)
	}
	for i, p := range fds {
		ready[i] = p.revents != 0 || conns[i].closed.Load()
	}
	return nil
}
