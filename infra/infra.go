// Package infra starts, stops, kills, pauses and restarts the Redis and
// PostgreSQL servers a scenario runs against. Every server is a Node reached
// through its own Toxiproxy proxy; an Env holds the nodes of one run.
//
// infra imports nothing else of faultline.
package infra

import (
	"context"
	"time"
)

// Kind is the kind of server a node runs.
type Kind string

// The server kinds faultline can start.
const (
	Redis    Kind = "redis"
	Postgres Kind = "postgres"
)

// NodeSpec asks for one server.
type NodeSpec struct {
	Name string // unique in the environment, e.g. "redis-1", "pg-1", "resource"
	Kind Kind
}

// Spec describes an environment: which nodes, which provider, which options.
type Spec struct {
	Nodes    []NodeSpec
	Provider string // "auto" (default), "local", "docker" or "external"

	// External are the servers of provider "external" (see ExternalTarget);
	// Namespace names the run's key prefix and schema there (KeyPrefix,
	// Schema; CheckNamespace).
	External  []ExternalTarget
	Namespace string

	// PostgresFsync turns fsync on (off by default: faster, and a kill of
	// the server process alone does not lose committed data).
	PostgresFsync bool
	// RedisAppendOnly turns AOF persistence on; by default Redis keeps no
	// persistence, so a killed node comes back empty (the Redlock restart case).
	RedisAppendOnly bool
	// ExternalToxiproxy is the address of a toxiproxy-server to use instead of
	// the embedded one ("" = embedded).
	ExternalToxiproxy string
	// RedisImage and PostgresImage override the docker provider's images.
	RedisImage, PostgresImage string
	// ReadyTimeout bounds each server's start-up (default 30s).
	ReadyTimeout time.Duration

	// Topology, when set, starts a replicated set of nodes (see Topology);
	// Nodes then holds only independent extras (e.g. a workload resource
	// node); the topology names its own nodes.
	Topology Topology
	// Replication tunes the topology (Sentinel timeouts, synchronous standby).
	Replication ReplicationOptions
}

// Node is one Redis or PostgreSQL server behind its Toxiproxy proxy.
type Node interface {
	Name() string
	Kind() Kind
	// Addr is the proxied host:port clients use; it never changes for the
	// life of the environment, across kills and restarts.
	Addr() string
	// DirectAddr is the server's own host:port, bypassing the proxy. It may
	// change after a restart (docker maps a new port).
	DirectAddr() string
	// Password is the server's random password (Redis requirepass, the
	// PostgreSQL user's password).
	Password() string
	// DSN is a PostgreSQL connection string through the proxy ("" for Redis).
	DSN() string
	// DirectDSN is a PostgreSQL connection string to DirectAddr.
	DirectDSN() string

	// Kill ends the server with SIGKILL (no graceful shutdown).
	Kill(ctx context.Context) error
	// Start restarts a killed or stopped server on the same data directory;
	// the proxied address stays the same. It returns once the server is ready.
	Start(ctx context.Context) error
	// Pause freezes the server (SIGSTOP / docker pause); Resume thaws it.
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// Stop shuts the server down gracefully.
	Stop(ctx context.Context) error

	// Proxy is the node's Toxiproxy proxy, for network faults.
	Proxy() Proxy
}

// Proxy is the fault surface of one node's Toxiproxy proxy.
type Proxy interface {
	Name() string
	Listen() string // the address clients use (== Node.Addr)
	// AddToxic adds a toxic (Toxiproxy JSON semantics: name, type, stream
	// "upstream"/"downstream", toxicity 0..1 — 0 never applies, attributes).
	AddToxic(ctx context.Context, t Toxic) error
	RemoveToxic(ctx context.Context, name string) error
	// Disable closes the listener and drops every live connection; Enable
	// re-opens it on the same address.
	Disable(ctx context.Context) error
	Enable(ctx context.Context) error
	// Reset removes every toxic and enables the proxy.
	Reset(ctx context.Context) error
}

// Toxic is one Toxiproxy toxic.
type Toxic struct {
	Name       string
	Type       string // latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data
	Stream     string // "upstream" (client→server) or "downstream"
	Toxicity   float32
	Attributes map[string]any
}
