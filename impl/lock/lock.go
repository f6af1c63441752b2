// Package lock defines the distributed-lock interface faultline benchmarks
// and chaos-tests, and a registry of named implementations, in the manner of
// database/sql drivers: each implementation registers a Factory under a name
// in an init function.
//
// Implementations never import the harness: this package and its
// implementations are usable as a plain library.
package lock

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/faultline-dev/faultline/impl/internal/execproc"
	"github.com/faultline-dev/faultline/internal/option"
	"github.com/faultline-dev/faultline/internal/registry"
)

// Errors every implementation returns (wrapped with %w where useful).
var (
	// ErrNotAcquired: TryAcquire found the key held, or Acquire's context
	// ended before the lock could be taken.
	ErrNotAcquired = errors.New("lock: not acquired")
	// ErrNotHeld: Release or Refresh by a lease that no longer holds the key
	// (expired, or taken over by another owner).
	ErrNotHeld = errors.New("lock: not held")
)

// Lease is a held lock.
type Lease struct {
	Key   string
	Token string // owner token: random and unique per acquisition
	// Fence is a fencing token, strictly increasing per key across owners;
	// 0 when the implementation has none.
	Fence uint64
	// Expiry is when the lease ends unless refreshed, by the client's clock.
	Expiry time.Time
}

// Locker is one client (one process) of a lock service.
type Locker interface {
	// Acquire blocks until the lock on key is held or ctx ends (the acquire
	// timeout), then returns ErrNotAcquired (or ctx's error, wrapped).
	Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error)
	// TryAcquire makes one attempt and never waits for a holder.
	TryAcquire(ctx context.Context, key string, ttl time.Duration) (Lease, error)
	// Release frees the lock if, and only if, l still holds it; otherwise
	// it returns ErrNotHeld and leaves the key alone.
	Release(ctx context.Context, l Lease) error
	// Refresh extends a held lease to ttl from now; ErrNotHeld if lost.
	Refresh(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// Close frees the client's connections.
	Close() error
}

// RedisEndpoint is one Redis server a lock can use.
type RedisEndpoint struct {
	Name, Addr, Password string
}

// PostgresEndpoint is one PostgreSQL database a lock can use.
type PostgresEndpoint struct {
	Name string
	DSN  string // e.g. postgres://user:pass@127.0.0.1:port/db?sslmode=disable
}

// SentinelEndpoint is a replicated Redis (one primary, replicas) whose
// primary clients find through Redis Sentinel, under the master name Master.
type SentinelEndpoint struct {
	Master string
	// Addrs are the Sentinels' host:port as clients reach them.
	Addrs []string
	// Password is the data nodes' password (requirepass); SentinelPassword
	// the Sentinels' own ("" = none).
	Password, SentinelPassword string
	// Dial connects to an address a Sentinel handed out. Sentinels know the
	// nodes by the addresses the nodes use among themselves, which clients
	// may not reach (a proxy per client path, a docker network): Dial
	// translates such an address to the client's path to that node and
	// dials any other address as is. nil dials every address as is.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Endpoints are the servers handed to a factory (already proxied or direct,
// as the harness chose).
type Endpoints struct {
	Redis    []RedisEndpoint
	Postgres []PostgresEndpoint
	// Sentinel is the replicated Redis of an implementation whose Info
	// names the topology "redis-sentinel" (nil otherwise).
	Sentinel *SentinelEndpoint
	// KeyPrefix starts every key the harness hands to Acquire; a Locker
	// that writes keys of its own must start them with it too ("" on
	// servers faultline owns; the run's prefix on external ones).
	KeyPrefix string
}

// Options tune an implementation; each ignores what does not apply to it.
type Options struct {
	// Reentrant: the same Locker re-acquiring a key it holds increments a
	// hold count (and gets the same lease back); Release decrements it.
	Reentrant bool
	// Watchdog: refresh every held lease at ttl/3 until it is released or a
	// refresh fails.
	Watchdog bool
	// Now is the client's clock (for clock-drift faults); nil = time.Now.
	Now func() time.Time
	// Params are implementation-specific settings (name → value), passed
	// through from the command line (--lock-opt k=v).
	Params map[string]string
	// Process is the harness's id of the process this client is (its
	// history process); implementations that run an OS process of their own
	// (exec:) hand it over and name their logs with it.
	Process int
	// LogDir is where such implementations write their processes' stderr
	// logs ("" = kept in memory only, for error messages).
	LogDir string
}

// Clock returns o.Now or time.Now.
func (o Options) Clock() func() time.Time {
	if o.Now != nil {
		return o.Now
	}
	return time.Now
}

// Factory makes one Locker (one process's client) on the given endpoints.
type Factory func(ctx context.Context, ep Endpoints, opt Options) (Locker, error)

// Info describes a registered implementation.
type Info struct {
	Name string
	Doc  string // one line: what it is, what it promises, when it breaks
	// Mutant implementations are deliberately broken to prove checkers; they
	// are listed as such and never run by default.
	Mutant bool
	// RedisNodes and PostgresNodes are how many servers of each kind it needs.
	RedisNodes, PostgresNodes int
	// Fencing says whether leases carry fencing tokens.
	Fencing bool
	// Topology is the server topology the implementation needs
	// ("redis-sentinel": one primary, two replicas, three Sentinels, handed
	// over as Endpoints.Sentinel); "" means independent nodes (RedisNodes,
	// PostgresNodes).
	Topology string
	// Topologies are the replicated topologies an implementation on
	// independent nodes also runs on, its endpoints following the primary
	// (e.g. "pg-standby": Endpoints.Postgres is one multi-host DSN).
	Topologies []string
	// Options are the implementation-specific --lock-opt settings it reads
	// from Options.Params (CommonOptions apply to every implementation).
	Options option.Set
	New     Factory
}

var impls = registry.New[Info]("lock implementation")

// Register makes an implementation available by info.Name. It panics on a
// duplicate name or a nil factory, as database/sql.Register does.
func Register(info Info) {
	if info.New == nil {
		panic("lock: Register factory is nil for " + info.Name)
	}
	impls.Register(info.Name, info)
}

// Lookup returns the implementation registered under name; the error lists
// the known ones. A name "exec:PATH[:NAME]" runs an executable speaking
// faultline's process protocol (docs/protocol.md): Lookup starts it once to
// read its declaration (see exec.go).
func Lookup(name string) (Info, error) {
	if execproc.IsSpec(name) {
		return lookupExec(name)
	}
	return impls.Lookup(name)
}

// All returns every registered implementation, sorted by name (built-in
// ones: exec: implementations are named on the command line).
func All() []Info { return impls.All() }
