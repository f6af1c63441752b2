package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/infra"
)

// ToxicFault is a network fault made of Toxiproxy toxics added to the
// proxies of its nodes: Start adds them, Heal removes the ones it added.
// The network kinds (kind_latency.go, kind_partition.go…) build one each.
type ToxicFault struct {
	kind   string
	nodes  []infra.Node
	toxics []infra.Toxic

	mu      sync.Mutex
	applied []applied
}

type applied struct {
	node infra.Node
	name string
}

func newToxicFault(kind, id string, nodes []infra.Node, toxics ...infra.Toxic) *ToxicFault {
	if id == "" {
		id = kind
	}
	for i := range toxics {
		toxics[i].Name = fmt.Sprintf("faultline-%s-%s", id, toxics[i].Stream)
		if toxics[i].Toxicity == 0 {
			toxics[i].Toxicity = 1 // 0 would never apply
		}
	}
	return &ToxicFault{kind: kind, nodes: nodes, toxics: toxics}
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// Kind implements Fault.
func (f *ToxicFault) Kind() string { return f.kind }

// Targets implements Fault.
func (f *ToxicFault) Targets() []string { return names(f.nodes) }

// Nodes implements NodeFault.
func (f *ToxicFault) Nodes() []infra.Node { return f.nodes }

// onProxies implements ProxyFault.
func (f *ToxicFault) onProxies() {}

// Toxics returns the toxics Start adds to each node's proxy.
func (f *ToxicFault) Toxics() []infra.Toxic { return append([]infra.Toxic(nil), f.toxics...) }

// Start adds the toxics to every node's proxy; on an error it stops and
// leaves what it applied for Heal.
func (f *ToxicFault) Start(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.nodes {
		for _, t := range f.toxics {
			if err := n.Proxy().AddToxic(ctx, t); err != nil {
				return fmt.Errorf("%s on %s: add toxic %s: %w (check the node's proxy is up)", f.kind, n.Name(), t.Name, err)
			}
			f.applied = append(f.applied, applied{n, t.Name})
		}
	}
	return nil
}

// Heal removes every toxic Start added.
func (f *ToxicFault) Heal(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	var left []applied
	for _, a := range f.applied {
		if err := a.node.Proxy().RemoveToxic(ctx, a.name); err != nil {
			errs = append(errs, fmt.Errorf("%s on %s: remove toxic %s: %w (reset the proxy to clear it)", f.kind, a.node.Name(), a.name, err))
			left = append(left, a)
		}
	}
	f.applied = left
	return errors.Join(errs...)
}
