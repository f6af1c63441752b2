package chaos

import (
	"context"

	"github.com/faultline-dev/faultline/infra"
)

// kill: the target nodes die and come back after the fault's duration.
func init() {
	register(Kind{
		Name: "kill", Class: Process,
		Doc: "SIGKILLs the target nodes and restarts them after the fault's duration (Redis without persistence comes back empty)",
		build: func(b builder, p *Planned) error {
			nodes, err := b.nodes()
			if err != nil {
				return err
			}
			p.Fault = NewKill(nodes)
			return nil
		},
		draw: func(d *drawer, s *Spec) { s.Target = d.shape() },
	})
}

// Kill SIGKILLs its nodes at once; Heal restarts them on the same data
// directory (Redis without persistence comes back empty) and returns once
// they are ready.
type Kill struct{ nodeFault }

// NewKill returns a kill of nodes.
func NewKill(nodes []infra.Node) *Kill {
	return &Kill{nodeFault{
		kind: "kill", nodes: nodes, doWhat: "kill", undoWhat: "restart",
		do:   func(ctx context.Context, n infra.Node) error { return n.Kill(ctx) },
		undo: func(ctx context.Context, n infra.Node) error { return n.Start(ctx) },
	}}
}
