package infra

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// tempPrefix starts the name of every temp dir faultline creates, so leftovers
// are recognisable (and the cleanup test can look for them).
const tempPrefix = "faultline-"

// logTailLines is how many log lines an error quotes.
const logTailLines = 20

// freePort asks the kernel for a free TCP port on 127.0.0.1. The port is free
// when this returns; a server that loses the race to bind it is restarted on
// another port by the caller.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// createTries is how many ports a proxy tries before giving up.
const createTries = 20

// stablePorts returns n random ports for listeners that stop and listen
// again on the same port: below the kernel's ephemeral range (its low end
// from /proc/sys/net/ipv4/ip_local_port_range, 32768 by default), from
// 10000 up, so no outgoing connection can take one as its source port
// meanwhile. Where the range starts too low for that, port 0 (the kernel
// picks) is the only one.
func stablePorts(n int) []int {
	low := ephemeralLow()
	if low <= stablePortMin+n {
		return []int{0}
	}
	ports := make([]int, n)
	for i := range ports {
		ports[i] = stablePortMin + mrand.IntN(low-stablePortMin)
	}
	return ports
}

// stablePortMin is the lowest port stablePorts picks.
const stablePortMin = 10000

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low <= 0 {
		return 32768
	}
	return low
}

// randomHex returns n random bytes as hex (2n characters), from crypto/rand.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand.Read never fails on Linux (it panics internally if
		// the kernel refuses); keep the error path explicit anyway.
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

// newPassword returns a random password safe in URLs and Redis configs.
func newPassword() string { return randomHex(16) }

// fileTail returns the last n lines of the file at path, reading at most the
// last 64 KiB of it ("" when the file is missing or empty).
func fileTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxRead = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxRead {
		if _, err := f.Seek(st.Size()-maxRead, io.SeekStart); err != nil {
			return ""
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	return lastLines(data, n)
}

// fileFrom returns the file's content from byte offset off (at most 64 KiB).
func fileFrom(path string, off int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	data, _ := io.ReadAll(io.LimitReader(f, 64<<10))
	return string(data)
}

func lastLines(data []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// indent prefixes every line of s, for log tails quoted inside errors.
func indent(s string) string {
	if s == "" {
		return "    (log is empty)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// pollEvery calls probe until it returns nil, ctx ends, or stop is closed,
// waiting interval between attempts. It returns the last probe error when ctx
// ends, or errStopped when stop closes.
func pollEvery(ctx context.Context, interval time.Duration, stop <-chan struct{}, probe func(context.Context) error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	var last error
	for {
		if last = probe(ctx); last == nil {
			return nil
		}
		select { // the process's exit explains a failed probe best
		case <-stop:
			return errStopped
		default:
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), last)
		case <-stop:
			return errStopped
		case <-t.C:
		}
	}
}

// errStopped says the process being polled exited.
var errStopped = errors.New("process exited")

// redisPing sends AUTH and PING over one short connection and wants +OK
// and +PONG: a loading server (-LOADING) is not ready, and Docker's port
// proxy accepts connections before the server listens, so only a real
// answer counts. ctx bounds the whole exchange.
func redisPing(ctx context.Context, addr, password string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	defer context.AfterFunc(ctx, func() { c.Close() })() // cancel unblocks reads
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n", len(password), password); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	for _, want := range []string{"+OK", "+PONG"} {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("read reply: %w", err)
		}
		if got := strings.TrimSpace(line); got != want {
			return fmt.Errorf("redis answered %q, want %q", got, want)
		}
	}
	return nil
}
