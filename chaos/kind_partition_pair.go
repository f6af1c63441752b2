package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// partition-pair: two nodes of a topology lose each other, both ways;
// every other pair, and every client, is untouched.
func init() {
	register(Kind{
		Name: "partition-pair", Class: Network, Topology: true, PairCut: true,
		Doc: "cuts each pair A|B of topology nodes from each other (both directions; several pairs comma-separated; " +
			"primary names the primary when the fault starts), e.g. partition-pair:redis-3|primary: that replica " +
			"stops replicating while the other replicas, the Sentinels and the clients still reach the primary. " +
			"Packets dropped with iptables in the peer proxy container's network namespace: docker provider only",
		check: func(s Spec, _ params) error {
			_, err := splitPairs(s.Target)
			return err
		},
		build: func(b builder, p *Planned) error {
			pairs, err := splitPairs(b.spec.Target)
			if err != nil {
				return err
			}
			for _, pr := range pairs {
				for _, name := range pr {
					if err := checkPairName(b.env, name); err != nil {
						return err
					}
				}
			}
			if _, paper := b.env.(paperEnv); paper {
				p.Fault = &pairFault{kind: "partition-pair", target: b.spec.Target}
				return nil
			}
			env, err := pairCutEnv(b.env, "partition-pair")
			if err != nil {
				return err
			}
			p.Fault = &pairFault{kind: "partition-pair", target: b.spec.Target, env: env,
				resolve: func(ctx context.Context) ([][2]string, error) {
					var out [][2]string
					for _, pr := range pairs {
						var r [2]string
						for i, name := range pr {
							if r[i], err = resolvePairName(ctx, env, name); err != nil {
								return nil, err
							}
						}
						if r[0] == r[1] {
							return nil, fmt.Errorf("pair %s|%s is one node (%s) now", pr[0], pr[1], r[0])
						}
						out = append(out, r)
					}
					return out, nil
				}}
			return nil
		},
		draw: func(d *drawer, s *Spec) {
			a := d.one()
			if len(d.nodes) < 2 {
				s.Target = a + "|" + rolePrimary // one node: cut it from the primary
				return
			}
			b := a
			for b == a {
				b = d.nodes[d.rng.IntN(len(d.nodes))]
			}
			s.Target = a + "|" + b
		},
	})
}

// splitPairs parses "A|B[,C|D…]".
func splitPairs(target string) ([][2]string, error) {
	if strings.TrimSpace(target) == "" {
		return nil, errors.New("partition-pair needs a target A|B (two node names, or primary), e.g. partition-pair:redis-3|redis-1@2s")
	}
	var out [][2]string
	for _, p := range strings.Split(target, ",") {
		a, b, ok := strings.Cut(strings.TrimSpace(p), "|")
		a, b = strings.TrimSpace(a), strings.TrimSpace(b)
		if !ok || a == "" || b == "" || strings.Contains(b, "|") {
			return nil, fmt.Errorf("pair %q: want A|B, two node names (or primary) separated by |", p)
		}
		if a == b {
			return nil, fmt.Errorf("pair %q names one node twice", p)
		}
		out = append(out, [2]string{a, b})
	}
	return out, nil
}
