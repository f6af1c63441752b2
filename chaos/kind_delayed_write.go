package chaos

import (
	"context"
	"time"
)

// delayed-write: a write reaches its server late. Aimed at a lock key (or
// any key), the next write of a holder is held back in the worker; aimed at
// nodes (resource, a group or node names), it is latency on the client→
// server stream of their links, so it needs the proxied path.
func init() {
	register(Kind{
		Name: "delayed-write", Class: Client,
		Params: "delay, default 2xttl",
		Doc: "the next write of a holder of the key reaches the resource late; with a node target (resource, node names) " +
			"it is latency on those links' client→server stream",
		parse:       durParam(Dur{TTLs: 2}),
		paramTarget: true,
		length: func(s Spec, p params, ttl time.Duration) time.Duration {
			if s.Duration.IsZero() {
				return p.d.Of(ttl)
			}
			return s.Duration.Of(ttl)
		},
		needsProxy: func(s Spec, nodes []string) bool { return isNodeTarget(s.Target, nodes) },
		build: func(b builder, p *Planned) error {
			d := b.params.d.Of(b.ttl)
			if isNodeTarget(b.spec.Target, envNames(b.env)) {
				nodes, err := b.nodes()
				if err != nil {
					return err
				}
				// The link's client→server stream: the write (and every
				// other request) arrives late.
				p.Fault = NewLatency(b.id, nodes, d, 0, "upstream")
				return nil
			}
			key, err := b.key()
			if err != nil {
				return err
			}
			p.Fault, p.Length = NewDelayedWrite(b.clients, key, d), d
			return nil
		},
		draw: func(_ *drawer, s *Spec) { s.Param, s.Duration = "2xttl", Dur{} },
	})
}

// DelayedWrite holds back the next write of a holder of a key for a while
// after it was invoked.
type DelayedWrite struct{ holderFault }

// NewDelayedWrite delays the next write of a holder of key ("" = any) by d.
func NewDelayedWrite(c Clients, key string, d time.Duration) *DelayedWrite {
	f := &DelayedWrite{holderFault{kind: "delayed-write", clients: c, key: key}}
	f.hit = func(ctx context.Context) (Holder, error) { return c.DelayWrite(ctx, key, d) }
	return f
}
