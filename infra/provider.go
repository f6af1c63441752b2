// NOTE (from the infra/env helper): env.go calls exactly these two functions
// of infra/docker.go:
//
//	dockerAvailable(ctx context.Context, spec Spec) (ok bool, reason string)
//	newDockerProvider(ctx context.Context, spec Spec) (provider, error)
//
// env.go destroys every server it got from a provider (server.destroy) and
// then calls provider.close. For the SIGINT cleanup test (cleanup_test.go,
// table cleanupCases) a server may implement containerID() string (docker),
// pids() []int and tempDirs() []string (local).

package infra

import (
	"context"
	"time"
)

// server is one running Redis or PostgreSQL server without its proxy, as a
// provider starts it. The node type in env.go pairs it with a proxy.
type server interface {
	// addr is the server's direct host:port; it may change after start.
	addr() string
	kill(ctx context.Context) error  // SIGKILL / container kill
	start(ctx context.Context) error // restart after kill/stop, same data dir; waits ready
	pause(ctx context.Context) error // SIGSTOP / docker pause
	resume(ctx context.Context) error
	stop(ctx context.Context) error // graceful
	// destroy removes everything the server owns (process, container,
	// temp dir). It is idempotent and must work on a paused server.
	destroy(ctx context.Context) error
	// logTail returns the last lines of the server's log, for errors.
	logTail() string
	// logLines returns the last n lines of the server's log ("" when it
	// has none that faultline can read).
	logLines(n int) string
	// version is the server's version string (e.g. "7.0.15").
	version() string
}

// serverConfig is what a provider needs to start one server.
type serverConfig struct {
	Name         string
	Password     string
	AppendOnly   bool   // Redis AOF persistence
	Fsync        bool   // PostgreSQL fsync
	Image        string // docker only
	ReadyTimeout time.Duration

	// Topologies only.
	Conf     []string // extra redis.conf directives, e.g. "replicaof 10.0.0.2 7001"
	Sentinel bool     // run redis-server --sentinel (Conf holds its directives)
	Network  string   // docker: the user-defined network the container joins
	Alias    string   // docker: the container's name on Network
	// Rewindable runs PostgreSQL so pg_rewind can later turn it into a
	// standby of another node (pg-standby): wal_log_hints=on and
	// full_page_writes=on (pg_rewind needs both), and on docker a
	// container command that runs a pending rewind before the server.
	Rewindable bool
	PGData     string // docker: PostgreSQL's data directory in the container ("" = the image's)
}

// provider starts servers one way (local processes or docker containers).
type provider interface {
	name() string
	startRedis(ctx context.Context, cfg serverConfig) (server, error)
	startPostgres(ctx context.Context, cfg serverConfig) (server, error)
	// peerNet prepares what a topology's peer links need (see peerNet).
	peerNet(ctx context.Context, envID string, proxies proxyHost) (peerNet, error)
	// close releases provider-wide resources (not the servers: env destroys those).
	close(ctx context.Context) error
}

// peerNet makes the peer proxies of a topology (see Link): the local
// provider uses the Env's own proxy host on 127.0.0.1; the docker provider a
// user-defined network with a Toxiproxy container on it.
type peerNet interface {
	// link creates the peer proxy of node, reaching the node's server on
	// port (the container port; ignored by the local provider, whose proxy
	// follows the server's address). announce is the host:port other nodes
	// use for it; follows says the proxy's upstream must be set to the
	// server's address after every start (setUpstream).
	link(ctx context.Context, node string, port int) (px nodeProxy, announce string, follows bool, err error)
	// serverConfig adds what a server needs to join the peer net (docker:
	// network and alias).
	serverConfig(cfg *serverConfig)
	// close destroys every peer proxy and what link needed (network, proxy container).
	close(ctx context.Context) error
}
