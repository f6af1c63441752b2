// Package blockconn is a TCP net.Conn that waits for its peer in the
// kernel (a blocking recv on the calling goroutine's thread) instead of
// Go's netpoller, for latency-bound clients with one request in flight.
//
// A netpoller read of a reply that has not arrived yet costs a read that
// finds nothing (EAGAIN), a park of the goroutine, an epoll_pwait on
// another path of the scheduler and a wake-up of the goroutine on whichever
// thread took the event; the socket stays registered with epoll, so even a
// reply read directly wakes a thread blocked in epoll_pwait. With one
// client on loopback that is about 6 syscalls and 1.5 thread wake-ups per
// request, against 2 and 1 here (send, recv), and redis-benchmark's 1
// wake-up. With many connections it is the other way round: each waiting
// connection holds an OS thread, so use it where one or two requests are in
// flight at a time and the netpoller elsewhere (Dialer's callers choose).
//
// Every deadline is honoured: a read or write never waits past its deadline
// (socket timeouts are set below the deadline with a margin for the
// kernel's tick, re-set only when the deadline moves by more than a few
// percent, and the last stretch before a deadline is waited with ppoll's
// nanosecond timeout), and Close wakes a read or write blocked in the
// kernel (shutdown) before it closes the descriptor, which it does only
// once no read or write uses it.
package blockconn

import (
	"context"
	"net"
)

// DialFunc is the signature of go-redis' Options.Dialer.
type DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// Dialer returns a DialFunc that connects with d (its timeout and ctx
// bound the connect) and returns a blocking Conn for TCP; other networks,
// and platforms without blocking sockets, get d's connection unchanged.
func Dialer(d *net.Dialer) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return Dial(ctx, d, network, addr)
	}
}
