package chaos

import (
	"errors"
	"strings"

	"github.com/faultline-dev/faultline/infra"
)

// one-way: one direction of the target nodes' traffic is lost.
func init() {
	register(Kind{
		Name: "one-way", Class: Network,
		Params: "up|down, default down",
		Doc:    "drops one direction only: down = requests arrive and apply but replies are lost; up = requests are lost",
		parse: func(p string) (params, error) {
			switch strings.ToLower(p) {
			case "", "down", "downstream":
				return params{stream: "downstream"}, nil
			case "up", "upstream":
				return params{stream: "upstream"}, nil
			}
			return params{}, errors.New("unknown direction")
		},
		build: func(b builder, p *Planned) error {
			nodes, err := b.nodes()
			if err != nil {
				return err
			}
			p.Fault = NewOneWay(b.id, nodes, b.params.stream)
			return nil
		},
		draw: func(d *drawer, s *Spec) {
			s.Target = d.shape()
			s.Param = d.pick("up", "down")
		},
	})
}

// NewOneWay blackholes one stream only: "upstream" loses requests,
// "downstream" lets requests reach the server (and apply) but loses the
// replies.
func NewOneWay(id string, nodes []infra.Node, stream string) *ToxicFault {
	return newToxicFault("one-way", id, nodes,
		infra.Toxic{Type: "timeout", Stream: stream, Attributes: map[string]any{"timeout": 0}})
}
