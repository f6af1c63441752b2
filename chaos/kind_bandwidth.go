package chaos

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/faultline-dev/faultline/infra"
)

// bandwidth: the target nodes' replies are throttled.
func init() {
	register(Kind{
		Name: "bandwidth", Class: Network,
		Params: "KB/s, default 16",
		Doc:    "limits the target nodes' replies to a bandwidth",
		parse: func(p string) (params, error) {
			if p == "" {
				return params{rate: 16}, nil
			}
			num := strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(p), "/s"), "kb")
			r, err := strconv.ParseInt(num, 10, 64)
			if err != nil || r <= 0 || r > 1<<30 {
				return params{}, errors.New("want a whole number of KB/s between 1 and 1073741824")
			}
			return params{rate: float64(r)}, nil
		},
		build: func(b builder, p *Planned) error {
			nodes, err := b.nodes()
			if err != nil {
				return err
			}
			p.Fault = NewBandwidth(b.id, nodes, int64(b.params.rate))
			return nil
		},
		// One node, 8..64 KB/s.
		draw: func(d *drawer, s *Spec) {
			s.Target = d.one()
			s.Param = fmt.Sprint(8 << d.rng.IntN(4))
		},
	})
}

// NewBandwidth limits replies to rate KB/s.
func NewBandwidth(id string, nodes []infra.Node, rateKBps int64) *ToxicFault {
	return newToxicFault("bandwidth", id, nodes, infra.Toxic{
		Type: "bandwidth", Stream: "downstream", Attributes: map[string]any{"rate": rateKBps},
	})
}
