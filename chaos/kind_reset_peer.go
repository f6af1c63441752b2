package chaos

import (
	"time"

	"github.com/faultline-dev/faultline/infra"
)

// reset-peer: connections to the target nodes are reset.
func init() {
	register(Kind{
		Name: "reset-peer", Class: Network,
		Params: "delay before reset, default 0",
		Doc:    "resets (TCP RST) every connection that sends data to the target nodes",
		parse:  durParam(Dur{}),
		build: func(b builder, p *Planned) error {
			nodes, err := b.nodes()
			if err != nil {
				return err
			}
			p.Fault = NewResetPeer(b.id, nodes, b.params.d.Of(b.ttl))
			return nil
		},
		draw: func(d *drawer, s *Spec) { s.Target = d.one() },
	})
}

// NewResetPeer resets (TCP RST) every connection after it sends data, after
// delay.
func NewResetPeer(id string, nodes []infra.Node, delay time.Duration) *ToxicFault {
	return newToxicFault("reset-peer", id, nodes, infra.Toxic{
		Type: "reset_peer", Stream: "upstream", Attributes: map[string]any{"timeout": ms(delay)},
	})
}
