//go:build linux

package blockconn

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer starts a real redis-server on a free loopback port (stopped
// with the test) and returns its address and process.
func redisServer(tb testing.TB) (string, *os.Process) {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Skip("redis-server not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tb.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Ready once it logs that it accepts connections.
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Ready to accept connections") {
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return addr, cmd.Process
		}
	}
	tb.Fatalf("redis-server on %s did not become ready", addr)
	return "", nil
}

// silentServer accepts connections and never answers: a peer that stops
// answering. Its connections close with the test.
func silentServer(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	tb.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	return l.Addr().String()
}

func dialBlocking(tb testing.TB, addr string) *Conn {
	tb.Helper()
	nc, err := Dial(context.Background(), &net.Dialer{Timeout: time.Second}, "tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	c, ok := nc.(*Conn)
	if !ok {
		tb.Fatalf("Dial gave %T, want *Conn", nc)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// A read from a peer that never answers times out at its deadline, not
// before and not much after, for short deadlines (ppoll) and long ones
// (the socket timeout), also when the deadline shrinks after a long one
// (the socket timeout must be lowered, not kept).
func TestReadTimesOutAtItsDeadline(t *testing.T) {
	c := dialBlocking(t, silentServer(t))
	buf := make([]byte, 64)
	for _, d := range []time.Duration{15 * time.Millisecond, 120 * time.Millisecond, 400 * time.Millisecond, 90 * time.Millisecond, 60 * time.Millisecond, 15 * time.Millisecond} {
		start := time.Now()
		if err := c.SetReadDeadline(start.Add(d)); err != nil {
			t.Fatal(err)
		}
		n, err := readWithin(t, c, buf, d+5*time.Second)
		took := time.Since(start)
		var ne net.Error
		if n != 0 || !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("deadline %v: Read = %d, %v; want a timeout", d, n, err)
		}
		// Late by scheduling only (at a load average of 15 on 2 cores, tens of ms).
		if took < d || took > d+100*time.Millisecond {
			t.Errorf("deadline %v: timed out after %v", d, took)
		}
	}
	// A deadline already past fails at once.
	_ = c.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("past deadline: %v", err)
	}
}

// readWithin is c.Read(buf), failing the test if it has not returned
// after limit (a read that ignores its deadline would otherwise hang the
// test; Close then ends it).
func readWithin(t *testing.T, c *Conn, buf []byte, limit time.Duration) (int, error) {
	t.Helper()
	type result struct {
		n   int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		n, err := c.Read(buf)
		ch <- result{n, err}
	}()
	select {
	case r := <-ch:
		return r.n, r.err
	case <-time.After(limit):
		c.Close()
		t.Fatalf("Read did not return within %v", limit)
		return 0, nil
	}
}

// A write that cannot proceed (the peer reads nothing, the buffers fill)
// fails at its deadline.
func TestWriteTimesOutAtItsDeadline(t *testing.T) {
	c := dialBlocking(t, silentServer(t))
	d := 150 * time.Millisecond
	start := time.Now()
	_ = c.SetWriteDeadline(start.Add(d))
	chunk := make([]byte, 1<<20)
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		_, err = c.Write(chunk)
	}
	took := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write: %v, want a timeout", err)
	}
	if took < d || took > d+100*time.Millisecond {
		t.Errorf("write deadline %v: timed out after %v", d, took)
	}
}

// inRecv reports whether thread tid is blocked in recvfrom (or ppoll).
func inRecv(tid int) bool {
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/syscall")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 0 && (f[0] == strconv.Itoa(syscall.SYS_RECVFROM) || f[0] == strconv.Itoa(syscall.SYS_PPOLL))
}

// Close wakes a Read blocked in the kernel with no deadline (Ctrl-C's path:
// the harness closes its clients) and the Read reports the close.
func TestCloseUnblocksBlockedRead(t *testing.T) {
	c := dialBlocking(t, silentServer(t))
	tids := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tids <- syscall.Gettid()
		_, err := c.Read(make([]byte, 64))
		done <- err
	}()
	tid := <-tids
	for limit := time.Now().Add(10 * time.Second); !inRecv(tid); runtime.Gosched() {
		if time.Now().After(limit) {
			t.Fatal("the reader never blocked in the kernel")
		}
	}
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-done:
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close: %v, want net.ErrClosed", err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("Close took %v to unblock the read", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock the read")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}

// The peer closing gives io.EOF.
func TestPeerCloseIsEOF(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if s, err := l.Accept(); err == nil {
			_, _ = s.Write([]byte("+OK\r\n"))
			s.Close()
		}
	}()
	c := dialBlocking(t, l.Addr().String())
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "+OK\r\n" {
		t.Errorf("ReadAll = %q, %v; want the reply then EOF", got, err)
	}
}

func blockingClient(addr string, readTimeout time.Duration) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, Protocol: 2, MaxRetries: -1, PoolSize: 1,
		DialTimeout: time.Second, ReadTimeout: readTimeout, WriteTimeout: readTimeout, PoolTimeout: time.Second,
		Dialer: Dialer(&net.Dialer{Timeout: time.Second}),
	})
}

// go-redis over a blocking Conn against a real server: commands work, the
// pooled connection's health check (a MSG_PEEK through SyscallConn) passes,
// and when the server stops answering (SIGSTOP) a command fails at the
// read timeout; after SIGCONT the server answers again on a new connection.
func TestGoRedisOverBlockingConn(t *testing.T) {
	addr, proc := redisServer(t)
	ctx := context.Background()
	rc := blockingClient(addr, 300*time.Millisecond)
	defer rc.Close()
	for i := range 50 {
		if err := rc.Set(ctx, "k", i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := rc.Get(ctx, "k").Int(); err != nil || v != i {
			t.Fatalf("GET = %d, %v; want %d", v, err, i)
		}
	}
	if err := proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := rc.Ping(ctx).Err()
	took := time.Since(start)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("PING to a stopped server: %v, want a timeout", err)
	}
	if took < 300*time.Millisecond || took > 450*time.Millisecond {
		t.Errorf("PING to a stopped server failed after %v, want 300 ms", took)
	}
	if err := proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := rc.Ping(ctx).Err(); err != nil {
		t.Errorf("PING after SIGCONT: %v", err)
	}
}

// One client's sequential PINGs, netpoller against blocking connections,
// on a real server: `go test -bench Ping -count 10 | benchstat`.
func BenchmarkPing(b *testing.B) {
	addr, _ := redisServer(b)
	for _, mode := range []string{"netpoll", "blocking"} {
		b.Run(mode, func(b *testing.B) {
			o := &redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, PoolSize: 1,
				DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second}
			if mode == "blocking" {
				o.Dialer = Dialer(&net.Dialer{Timeout: time.Second})
			}
			rc := redis.NewClient(o)
			defer rc.Close()
			conn := rc.Conn()
			defer conn.Close()
			ctx := context.Background()
			for b.Loop() {
				if err := conn.Ping(ctx).Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
