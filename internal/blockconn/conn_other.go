//go:build !linux

package blockconn

import (
	"context"
	"net"
)

// Dial connects to addr with d; off Linux the connection is the usual
// netpoller one.
func Dial(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	return d.DialContext(ctx, network, addr)
}
