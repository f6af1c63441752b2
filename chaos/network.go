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
// Build one with NewLatency, NewPartition, NewOneWay, NewBandwidth,
// NewResetPeer or NewSlowClose.
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

// NewLatency delays every chunk on stream ("downstream" if "") by latency ±
// jitter. id makes the toxic names unique on a proxy.
func NewLatency(id string, nodes []infra.Node, latency, jitter time.Duration, stream string) *ToxicFault {
	if stream == "" {
		stream = "downstream"
	}
	return newToxicFault("latency", id, nodes, infra.Toxic{
		Type: "latency", Stream: stream,
		Attributes: map[string]any{"latency": ms(latency), "jitter": ms(jitter)},
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

// NewOneWay blackholes one stream only: "upstream" loses requests,
// "downstream" lets requests reach the server (and apply) but loses the
// replies.
func NewOneWay(id string, nodes []infra.Node, stream string) *ToxicFault {
	return newToxicFault("one-way", id, nodes,
		infra.Toxic{Type: "timeout", Stream: stream, Attributes: map[string]any{"timeout": 0}})
}

// NewBandwidth limits replies to rate KB/s.
func NewBandwidth(id string, nodes []infra.Node, rateKBps int64) *ToxicFault {
	return newToxicFault("bandwidth", id, nodes, infra.Toxic{
		Type: "bandwidth", Stream: "downstream", Attributes: map[string]any{"rate": rateKBps},
	})
}

// NewResetPeer resets (TCP RST) every connection after it sends data, after
// delay.
func NewResetPeer(id string, nodes []infra.Node, delay time.Duration) *ToxicFault {
	return newToxicFault("reset-peer", id, nodes, infra.Toxic{
		Type: "reset_peer", Stream: "upstream", Attributes: map[string]any{"timeout": ms(delay)},
	})
}

// NewSlowClose delays the close of connections by delay.
func NewSlowClose(id string, nodes []infra.Node, delay time.Duration) *ToxicFault {
	return newToxicFault("slow-close", id, nodes, infra.Toxic{
		Type: "slow_close", Stream: "downstream", Attributes: map[string]any{"delay": ms(delay)},
	})
}

// Kind implements Fault.
func (f *ToxicFault) Kind() string { return f.kind }

// Targets implements Fault.
func (f *ToxicFault) Targets() []string { return names(f.nodes) }

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
