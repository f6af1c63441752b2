package chaos

import "github.com/faultline-dev/faultline/infra"

// replication-partition: a node is cut off from the other nodes of its
// topology (replication, Sentinel), not from its clients.
func init() {
	register(Kind{
		Name: "replication-partition", Class: Network, Topology: true,
		Doc: "blackholes the peer link of the target (default the current primary; or replicas, or node names): " +
			"its replicas and the Sentinels lose it while its clients still reach it (the split-brain setup of L6)",
		build: func(b builder, p *Planned) error {
			if paper, err := paperCheck(b, p); paper {
				return err
			}
			env, err := topologyEnv(b.env, "replication-partition")
			if err != nil {
				return err
			}
			if err := linkTargetsValid(env, b.spec.Target); err != nil {
				return err
			}
			p.Fault = newLinkFault("replication-partition", b.id, b.spec.Target, env,
				infra.Toxic{Type: "timeout", Stream: "upstream", Attributes: map[string]any{"timeout": 0}},
				infra.Toxic{Type: "timeout", Stream: "downstream", Attributes: map[string]any{"timeout": 0}})
			return nil
		},
		draw: func(d *drawer, s *Spec) {},
	})
}
