package chaos

import (
	"time"

	"github.com/faultline-dev/faultline/infra"
)

// slow-close: closing a connection to the target nodes takes a while.
func init() {
	register(Kind{
		Name: "slow-close", Class: Network,
		Params: "delay, default 1s",
		Doc:    "delays the close of connections to the target nodes",
		parse:  durParam(Dur{D: time.Second}),
		build: func(b builder, p *Planned) error {
			nodes, err := b.nodes()
			if err != nil {
				return err
			}
			p.Fault = NewSlowClose(b.id, nodes, b.params.d.Of(b.ttl))
			return nil
		},
		draw: func(d *drawer, s *Spec) { s.Target = d.one() },
	})
}

// NewSlowClose delays the close of connections by delay.
func NewSlowClose(id string, nodes []infra.Node, delay time.Duration) *ToxicFault {
	return newToxicFault("slow-close", id, nodes, infra.Toxic{
		Type: "slow_close", Stream: "downstream", Attributes: map[string]any{"delay": ms(delay)},
	})
}
