package chaos

import (
	"context"

	"github.com/faultline-dev/faultline/infra"
)

// pause: the target nodes' processes are stopped for the fault's duration.
func init() {
	register(Kind{
		Name: "pause", Class: Process,
		Doc: "SIGSTOPs the target nodes for the fault's duration",
		build: func(b builder, p *Planned) error {
			nodes, err := b.nodes()
			if err != nil {
				return err
			}
			p.Fault = NewPause(nodes)
			return nil
		},
		draw: func(d *drawer, s *Spec) { s.Target = d.shape() },
	})
}

// Pause SIGSTOPs its nodes at once; Heal resumes them.
type Pause struct{ nodeFault }

// NewPause returns a pause of nodes.
func NewPause(nodes []infra.Node) *Pause {
	return &Pause{nodeFault{
		kind: "pause", nodes: nodes, doWhat: "pause", undoWhat: "resume",
		do:   func(ctx context.Context, n infra.Node) error { return n.Pause(ctx) },
		undo: func(ctx context.Context, n infra.Node) error { return n.Resume(ctx) },
	}}
}
