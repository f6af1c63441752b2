package chaos

import "github.com/faultline-dev/faultline/infra"

// partition: the target nodes are blackholed.
func init() {
	register(Kind{
		Name: "partition", Class: Network,
		Doc: "blackholes the target nodes: connections hang, data is dropped (timeout toxic, both directions); heal closes them",
		build: func(b builder, p *Planned) error {
			nodes, err := b.nodes()
			if err != nil {
				return err
			}
			p.Fault = NewPartition(b.id, nodes)
			return nil
		},
		draw: func(d *drawer, s *Spec) { s.Target = d.shape() },
	})
}

// NewPartition blackholes the nodes: a timeout toxic with timeout 0 on both
// streams drops all data and keeps connections hanging, as a real partition
// does; removing it (Heal) closes the connections it held.
func NewPartition(id string, nodes []infra.Node) *ToxicFault {
	return newToxicFault("partition", id, nodes,
		infra.Toxic{Type: "timeout", Stream: "upstream", Attributes: map[string]any{"timeout": 0}},
		infra.Toxic{Type: "timeout", Stream: "downstream", Attributes: map[string]any{"timeout": 0}})
}
