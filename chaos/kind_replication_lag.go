package chaos

import (
	"time"

	"github.com/faultline-dev/faultline/infra"
)

// replication-lag: the replication stream (and Sentinel's monitoring) to
// a node arrives late.
func init() {
	register(Kind{
		Name: "replication-lag", Class: Network, Topology: true,
		Params: "delay, default 500ms",
		Doc: "adds latency to the peer link of the target (default the current primary; or replicas, or node names): " +
			"the replication stream and Sentinel's traffic to it lag, the clients' path does not",
		parse: durParam(Dur{D: 500 * time.Millisecond}),
		build: func(b builder, p *Planned) error {
			if paper, err := paperCheck(b, p); paper {
				return err
			}
			env, err := topologyEnv(b.env, "replication-lag")
			if err != nil {
				return err
			}
			if err := linkTargetsValid(env, b.spec.Target); err != nil {
				return err
			}
			p.Fault = newLinkFault("replication-lag", b.id, b.spec.Target, env, infra.Toxic{
				Type: "latency", Stream: "downstream",
				Attributes: map[string]any{"latency": ms(b.params.d.Of(b.ttl)), "jitter": 0},
			})
			return nil
		},
		// The primary's link, 200–1000 ms.
		draw: func(d *drawer, s *Spec) {
			s.Param = (time.Duration(200+d.rng.IntN(801)) * time.Millisecond).String()
		},
	})
}
