package chaos

import (
	"context"
	"strings"
)

// isolate: a topology node loses every other node of the topology, both
// ways (Jepsen's isolated node), while its clients still reach it.
func init() {
	register(Kind{
		Name: "isolate", Class: Network, Topology: true, PairCut: true,
		Doc: "cuts the target nodes (default the primary when the fault starts; or node names) from every other node " +
			"of the topology, both directions (partition-pair with each of them), e.g. isolate:sentinel-1: that " +
			"Sentinel neither sees the servers nor votes. Clients still reach it. Docker provider only",
		build: func(b builder, p *Planned) error {
			target := strings.TrimSpace(b.spec.Target)
			var names []string
			if target != "" && !strings.EqualFold(target, rolePrimary) {
				nodes, err := ResolveNodes(b.env, target)
				if err != nil {
					return err
				}
				names = nodeNamesOf(nodes)
			}
			if _, paper := b.env.(paperEnv); paper {
				p.Fault = &pairFault{kind: "isolate", target: b.spec.Target}
				return nil
			}
			env, err := pairCutEnv(b.env, "isolate")
			if err != nil {
				return err
			}
			p.Fault = &pairFault{kind: "isolate", target: b.spec.Target, env: env,
				resolve: func(ctx context.Context) ([][2]string, error) {
					cut := names
					if cut == nil {
						pr, err := resolvePairName(ctx, env, rolePrimary)
						if err != nil {
							return nil, err
						}
						cut = []string{pr}
					}
					var out [][2]string
					seen := map[[2]string]bool{}
					for _, a := range cut {
						for _, n := range sortedNodes(env) {
							b := n.Name()
							if _, linked := env.Link(b); !linked || b == a {
								continue
							}
							key := [2]string{min(a, b), max(a, b)}
							if seen[key] {
								continue
							}
							seen[key] = true
							out = append(out, [2]string{a, b})
						}
					}
					return out, nil
				}}
			return nil
		},
		draw: func(d *drawer, s *Spec) { s.Target = d.one() },
	})
}
