package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/faultline-dev/faultline/infra"
)

// partition-refuse: the target nodes' proxies are disabled.
func init() {
	register(Kind{
		Name: "partition-refuse", Class: Network,
		Doc: "disables the target nodes' proxies: live connections drop, new ones are refused",
		build: func(b builder, p *Planned) error {
			nodes, err := b.nodes()
			if err != nil {
				return err
			}
			p.Fault = NewPartitionRefuse(nodes)
			return nil
		},
		draw: func(d *drawer, s *Spec) { s.Target = d.shape() },
	})
}

// PartitionRefuse disables the nodes' proxies: live connections drop and new
// ones are refused, until Heal enables them again.
type PartitionRefuse struct {
	nodes []infra.Node

	mu       sync.Mutex
	disabled []infra.Node
}

// NewPartitionRefuse returns a refusing partition of nodes.
func NewPartitionRefuse(nodes []infra.Node) *PartitionRefuse { return &PartitionRefuse{nodes: nodes} }

// Kind implements Fault.
func (f *PartitionRefuse) Kind() string { return "partition-refuse" }

// Targets implements Fault.
func (f *PartitionRefuse) Targets() []string { return names(f.nodes) }

// Nodes implements NodeFault.
func (f *PartitionRefuse) Nodes() []infra.Node { return f.nodes }

// onProxies implements ProxyFault.
func (f *PartitionRefuse) onProxies() {}

// Start disables every node's proxy.
func (f *PartitionRefuse) Start(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.nodes {
		if err := n.Proxy().Disable(ctx); err != nil {
			return fmt.Errorf("partition-refuse on %s: disable proxy: %w", n.Name(), err)
		}
		f.disabled = append(f.disabled, n)
	}
	return nil
}

// Heal enables every proxy Start disabled.
func (f *PartitionRefuse) Heal(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	var left []infra.Node
	for _, n := range f.disabled {
		if err := n.Proxy().Enable(ctx); err != nil {
			errs = append(errs, fmt.Errorf("partition-refuse on %s: enable proxy: %w (reset the proxy)", n.Name(), err))
			left = append(left, n)
		}
	}
	f.disabled = left
	return errors.Join(errs...)
}
