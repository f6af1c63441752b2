package bench

import (
	"slices"
	"strings"

	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/infra"
)

// checkPairCut refuses, as a usage error, the fault kinds that cut pairs of
// topology nodes (partition-pair, isolate: chaos.NeedsPairCut, and the
// same kinds given to the nemesis) on a provider that cannot cut pairs:
// every one but docker. Validate calls it with the provider asked for
// (only local or external are known to refuse there); Run again with the
// provider --provider auto chose.
func checkPairCut(provider string, sched chaos.Schedule, nemesis []string) error {
	if provider == "docker" {
		return nil
	}
	kinds := chaos.NeedsPairCut(sched)
	for _, k := range nemesis {
		if kk, err := chaos.LookupKind(k); err == nil && kk.PairCut && !slices.Contains(kinds, kk.Name) {
			kinds = append(kinds, kk.Name)
		}
	}
	if len(kinds) == 0 {
		return nil
	}
	return usagef("fault kinds %s cut pairs of topology nodes and need --provider docker (provider here: %s): %v",
		strings.Join(kinds, ", "), provider, infra.ErrPairCutUnsupported)
}

// pairCutProvider is the provider checkPairCut judges in Validate: "" while
// --provider auto has not chosen yet.
func pairCutProvider(p string) string {
	if p == "auto" || p == "" {
		return "docker" // decided after infra.Up (Run)
	}
	return p
}
