package lock

// redlock-no-quorum (mutant) is redlock's code with quorum N/2 (2 of 5) and
// no validity check: it accepts a lock that a minority of nodes granted, or
// that expired while it was being acquired. It promises nothing: two clients
// can hold the same key at once on disjoint node sets (2 + 2 of 5), and
// under slow nodes a client "holds" a lock whose ttl already ran out. Its
// first attempts always fan out (no gateContended), as redlock's did before
// it gated contended keys: contenders then still split the nodes 2/2/1, so
// the wrong quorum shows without any fault (the matrix's none row).
func init() {
	Register(Info{
		Name:       "redlock-no-quorum",
		Doc:        "MUTANT: redlock accepting 2 of 5 nodes and skipping the validity check; two holders on disjoint minorities",
		Mutant:     true,
		RedisNodes: 5,
		Options:    redlockOptions,
		New:        redlockFactory("redlock-no-quorum", redlockConfig{quorum: func(n int) int { return n / 2 }, checkValidity: false}),
	})
}
