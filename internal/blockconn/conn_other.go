//go:build !linux

package blockconn

import (
	"context"
	"errors"
	"net"
	"time"
)

// Dial connects to addr with d; off Linux the connection is the usual
// netpoller one.
func Dial(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	return d.DialContext(ctx, network, addr)
}

// Conn is the blocking connection Dial returns on Linux; off Linux Dial
// never returns one.
type Conn struct{ net.Conn }

// PollRead is unsupported off Linux (Dial returns no *Conn there).
func PollRead(conns []*Conn, ready []bool, timeout time.Duration) error {
	return errors.ErrUnsupported
}
