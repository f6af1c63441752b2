package chaos

import (
	"strings"
	"time"

	"github.com/faultline-dev/faultline/infra"
)

// latency: every response from the target nodes arrives late.
func init() {
	register(Kind{
		Name: "latency", Class: Network,
		Params: "delay[±jitter], default 100ms",
		Doc:    "adds latency (with jitter) to every response from the target nodes",
		parse: func(p string) (params, error) {
			out := params{d: Dur{D: 100 * time.Millisecond}}
			if p == "" {
				return out, nil
			}
			base, jit, hasJit := strings.Cut(p, "±")
			if !hasJit {
				base, jit, hasJit = strings.Cut(p, "+-")
			}
			var err error
			if out.d, err = ParseDur(base); err != nil {
				return params{}, err
			}
			if hasJit {
				if out.jitter, err = ParseDur(jit); err != nil {
					return params{}, err
				}
			}
			return out, nil
		},
		build: func(b builder, p *Planned) error {
			nodes, err := b.nodes()
			if err != nil {
				return err
			}
			p.Fault = NewLatency(b.id, nodes, b.params.d.Of(b.ttl), b.params.jitter.Of(b.ttl), "downstream")
			return nil
		},
		// One node or the resource link, 50–300 ms with a quarter of jitter.
		draw: func(d *drawer, s *Spec) {
			s.Target = d.link()
			lat := time.Duration(50+d.rng.IntN(251)) * time.Millisecond
			s.Param = lat.String() + "±" + (lat / 4).String()
		},
	})
}

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
