package bench

import (
	"slices"
	"strings"

	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/infra"
)

// checkPairCut refuses, as a usage error, the fault kinds that cut pairs of
// topology nodes (partition-pair, isolate: chaos.NeedsPairCut, and the
// same kinds given to the nemesis) where pairs cannot be cut: on every
// provider but docker, and on docker when $DOCKER_HOST names an engine on
// another host (the cuts run iptables in a container's network namespace
// with nsenter, on the engine's host). Validate calls it with the provider
// asked for (only local or external are known to refuse there) and no
// canCut; Run again with the provider --provider auto chose and the
// environment's probe (infra.Env.CanCutPairs: root, the tools, the
// engine's containers in this host's pid namespace).
func checkPairCut(provider string, sched chaos.Schedule, nemesis []string, canCut func() (bool, string)) error {
	kinds := chaos.NeedsPairCut(sched)
	for _, k := range nemesis {
		if kk, err := chaos.LookupKind(k); err == nil && kk.PairCut && !slices.Contains(kinds, kk.Name) {
			kinds = append(kinds, kk.Name)
		}
	}
	if len(kinds) == 0 {
		return nil
	}
	if provider != "docker" {
		return usagef("fault kinds %s cut pairs of topology nodes and need --provider docker (provider here: %s): %v",
			strings.Join(kinds, ", "), provider, infra.ErrPairCutUnsupported)
	}
	if remote, where := infra.RemoteDockerHost(); remote {
		return usagef("fault kinds %s cut pairs of topology nodes with iptables in the peer proxy container's network namespace "+
			"(nsenter), which needs faultline on the docker engine's host, and %s names another host: run faultline there, "+
			"or leave these kinds out (every other fault works against a remote engine)", strings.Join(kinds, ", "), where)
	}
	if canCut != nil {
		if ok, why := canCut(); !ok {
			return usagef("fault kinds %s cut pairs of topology nodes, and cannot here: %s", strings.Join(kinds, ", "), why)
		}
	}
	return nil
}

// pairCutProvider is the provider checkPairCut judges in Validate: "" while
// --provider auto has not chosen yet.
func pairCutProvider(p string) string {
	if p == "auto" || p == "" {
		return "docker" // decided after infra.Up (Run)
	}
	return p
}
