package lock

import "github.com/faultline-dev/faultline/internal/option"

// Options every Locker accepts (--lock-opt): they set Options fields and
// WithOptions implements them on top of any implementation.
var CommonOptions = option.Set{
	{Name: "reentrant", Kind: option.Bool, Default: "false", Doc: "a Locker re-acquiring a key it holds increments a hold count"},
	{Name: "watchdog", Kind: option.Bool, Default: "false", Doc: "refresh every held lease at ttl/3 until released"},
}

// Implementation-specific options (Info.Options, read from Options.Params).
var (
	optRetryMin = option.Spec{Name: "retry-min", Kind: option.Duration, Default: "2ms", Doc: "shortest back-off between acquire attempts"}
	optRetryMax = option.Spec{Name: "retry-max", Kind: option.Duration, Default: "50ms", Doc: "longest back-off between acquire attempts"}
	optDial     = option.Spec{Name: "dial-timeout", Kind: option.Duration, Default: "1s", Doc: "connect timeout"}
	optRead     = option.Spec{Name: "read-timeout", Kind: option.Duration, Default: "500ms", Doc: "Redis read timeout"}
	optWrite    = option.Spec{Name: "write-timeout", Kind: option.Duration, Default: "500ms", Doc: "Redis write timeout"}
	optPool     = option.Spec{Name: "pool-size", Kind: option.Int, Min: 1, Max: 1000, Default: "4", Doc: "Redis connections per node"}
	// optIO picks how a connection waits for its replies (newRedisClient).
	optIO = option.Spec{Name: OptIO, Kind: option.Choice, Choices: []string{IONetpoll, IOBlocking}, Default: IONetpoll,
		Doc: "how a Redis connection waits for replies: netpoll (Go's netpoller) or blocking (in the kernel, on the caller's thread: faster with one request in flight, slower with many; faultline picks blocking for 1-client phases)"}

	// optIORedlock is io for redlock's fan-out: blocking makes the caller
	// collect a round's replies itself (one ppoll over the nodes' blocking
	// sockets, no reader goroutines) instead of five reader goroutines
	// handing them over; rounds of one Locker then run one at a time.
	optIORedlock = option.Spec{Name: OptIO, Kind: option.Choice, Choices: []string{IONetpoll, IOBlocking}, Default: IONetpoll,
		Doc: "how redlock collects a round's replies: netpoll (a reader goroutine per node) or blocking (the caller polls the nodes' blocking sockets itself: faster with one client, rounds of a Locker serialised; faultline picks blocking for 1-client phases)"}

	redisClientOptions = option.Set{optRetryMin, optRetryMax, optDial, optRead, optWrite, optPool}
	// redisSingleOptions are redisClientOptions plus io, for implementations
	// that talk to one node at a time (a multi-node fan-out would hold a
	// thread per node).
	redisSingleOptions = append(append(option.Set{}, redisClientOptions...), optIO)
	redisHookOptions   = append(append(option.Set{}, redisSingleOptions...),
		option.Spec{Name: "retry-jitter", Kind: option.Choice, Choices: []string{JitterFull, JitterEqual}, Default: JitterEqual,
			Doc: "back-off between acquire attempts: equal (wait n in [retry-min·2^n, retry-min·2^(n+1)]) or full (in [retry-min, retry-min·2^n]); both capped at retry-max"},
		option.Spec{Name: "crash-after-setnx", Kind: option.Bool, Default: "false", Doc: "test hook: the client dies right after SETNX (before EXPIRE where there is one)"},
		option.Spec{Name: "release-gap", Kind: option.Duration, Default: "0s", Doc: "test hook: pause between a release's check and its delete"})
	redsyncOptions = append(append(option.Set{}, redisClientOptions...),
		option.Spec{Name: "tries", Kind: option.Int, Min: 0, Max: 1000000, Default: "0", Doc: "redsync attempts per acquire (0: until the acquire timeout)"},
		option.Spec{Name: "retry-delay", Kind: option.Duration, Default: "0s", Doc: "redsync delay between attempts (0: its default)"},
		option.Spec{Name: "drift-factor", Kind: option.Float, Default: "0", Doc: "redsync clock drift factor (0: its default)"},
		option.Spec{Name: "timeout-factor", Kind: option.Float, Default: "0", Doc: "redsync per-node timeout factor (0: its default)"},
		option.Spec{Name: "fail-fast", Kind: option.Bool, Default: "false", Doc: "redsync: stop an attempt as soon as a quorum is impossible"},
		option.Spec{Name: "shuffle", Kind: option.Bool, Default: "false", Doc: "redsync: shuffle the nodes per attempt"})
	redlockOptions = option.Set{optRetryMin, optRetryMax, optDial, optWrite, optIORedlock,
		option.Spec{Name: "node-timeout", Kind: option.Duration, Default: "0s", Doc: "per-node reply timeout (0: ttl/4 within 50ms..500ms)"}}
	pgOptions = option.Set{optRetryMin, optRetryMax, optDial}
)
