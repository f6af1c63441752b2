package infra

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// node pairs a provider's server with its proxy and implements Node. Its
// Addr is the proxy's listen address, which never changes; after a restart
// the proxy's upstream follows the server's (possibly new) address.
type node struct {
	name     string
	kind     Kind
	password string
	srv      server
	px       nodeProxy

	// Topologies only: the node's peer proxy (see Link; owned and destroyed
	// by the Env's peerNet), the address the node announces to the others
	// (the peer proxy as they reach it), and whether the peer proxy's
	// upstream follows the server's address across restarts (local).
	peer        nodeProxy
	announce    string
	peerFollows bool

	// sharers re-points the proxies of the other nodes on this node's
	// server after a restart moved it (external: "resource" shares
	// redis-1's server); nil = no node shares it.
	sharers func(ctx context.Context, except *node) error

	// rejoin, when set, makes the next Start a rejoin of the topology
	// (pg-standby: an old primary rewound into a standby of the new one);
	// cleared once a Start has rejoined.
	rejoin rejoiner

	mu sync.Mutex // serialises lifecycle operations on this node
}

// rejoiner is a node's pending rejoin: what runs before and after its
// server starts.
type rejoiner interface {
	beforeStart(ctx context.Context, n *node) error
	afterStart(ctx context.Context, n *node) error
}

var _ Node = (*node)(nil)

func (n *node) Name() string       { return n.name }
func (n *node) Kind() Kind         { return n.kind }
func (n *node) Addr() string       { return n.px.Listen() }
func (n *node) DirectAddr() string { return n.srv.addr() }
func (n *node) Password() string   { return n.password }
func (n *node) Proxy() Proxy       { return n.px }

// DSN is a PostgreSQL connection string through the proxy ("" for Redis).
func (n *node) DSN() string { return n.dsn(n.Addr()) }

// DirectDSN is a PostgreSQL connection string to the server itself.
func (n *node) DirectDSN() string { return n.dsn(n.DirectAddr()) }

func (n *node) dsn(addr string) string {
	if n.kind != Postgres {
		return ""
	}
	if ext, ok := n.srv.(*externalServer); ok {
		return ext.dsnFor(addr)
	}
	return fmt.Sprintf("postgres://faultline:%s@%s/faultline?sslmode=disable&connect_timeout=5", n.password, addr)
}

func (n *node) String() string { return fmt.Sprintf("%s(%s %s)", n.name, n.kind, n.Addr()) }

func (n *node) Kill(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv.kill(ctx)
}

// Start restarts the server and re-points the proxy at its address; a
// pending rejoin (see rejoiner) runs around the start and Start returns
// once the node has rejoined.
func (n *node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rejoin != nil {
		if err := n.rejoin.beforeStart(ctx, n); err != nil {
			return err
		}
	}
	if err := n.srv.start(ctx); err != nil {
		return err
	}
	if n.peerFollows {
		if err := n.peer.setUpstream(ctx, n.srv.addr()); err != nil {
			return err
		}
	}
	if err := n.px.setUpstream(ctx, n.srv.addr()); err != nil {
		return err
	}
	if n.rejoin != nil {
		if err := n.rejoin.afterStart(ctx, n); err != nil {
			return err
		}
		n.rejoin = nil
	}
	if n.sharers != nil {
		return n.sharers(ctx, n)
	}
	return nil
}

func (n *node) Pause(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv.pause(ctx)
}

func (n *node) Resume(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv.resume(ctx)
}

func (n *node) Stop(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv.stop(ctx)
}

// destroy removes the proxy and the server; both steps always run. It does
// not wait for n.mu: a Start blocked on readiness must not delay cleanup (the
// server's destroy kills the process first, which ends that wait).
func (n *node) destroy(ctx context.Context) error {
	var errs []error
	if n.px != nil {
		errs = append(errs, n.px.destroy(ctx))
	}
	errs = append(errs, n.srv.destroy(ctx))
	return errors.Join(errs...)
}
