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
}

// provider starts servers one way (local processes or docker containers).
type provider interface {
	name() string
	startRedis(ctx context.Context, cfg serverConfig) (server, error)
	startPostgres(ctx context.Context, cfg serverConfig) (server, error)
	// close releases provider-wide resources (not the servers: env destroys those).
	close(ctx context.Context) error
}
