package chaos

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// maxDrift bounds a clock-drift rate (and its inverse): beyond it the
// skewed clock overflows within a run.
const maxDrift = 1000

// clock-drift: every lock client's clock runs fast or slow.
func init() {
	register(Kind{
		Name: "clock-drift", Class: Client,
		Params: "rate, default 2 (clock runs 2× fast)",
		Doc:    "every lock client's clock runs at rate × real time",
		parse: func(p string) (params, error) {
			if p == "" {
				return params{rate: 2}, nil
			}
			r, err := strconv.ParseFloat(strings.TrimSuffix(strings.ToLower(p), "x"), 64)
			if err != nil || math.IsNaN(r) || r < 1.0/maxDrift || r > maxDrift {
				return params{}, fmt.Errorf("want a rate between %g and %d, e.g. 1.5 (clock 50%% fast) or 0.5", 1.0/maxDrift, maxDrift)
			}
			return params{rate: r}, nil
		},
		paramTarget: true,
		check: func(s Spec, _ params) error {
			if s.Target != "" && !strings.EqualFold(s.Target, "any") {
				return fmt.Errorf("clock-drift takes no target (it skews every client), got %q", s.Target)
			}
			return nil
		},
		build: func(b builder, p *Planned) error {
			if b.clients == nil {
				return errNoClients
			}
			p.Fault = NewClockDrift(b.clients, b.params.rate)
			return nil
		},
		draw: func(d *drawer, s *Spec) { s.Param = d.pick("0.5", "1.5", "2") },
	})
}

// ClockDrift makes every lock client's clock run at Rate × real time until
// Heal.
type ClockDrift struct {
	clients Clients
	rate    float64
}

// NewClockDrift returns a clock drift at rate.
func NewClockDrift(c Clients, rate float64) *ClockDrift { return &ClockDrift{clients: c, rate: rate} }

// Kind implements Fault.
func (f *ClockDrift) Kind() string { return "clock-drift" }

// Targets implements Fault (every client).
func (f *ClockDrift) Targets() []string { return nil }

// Start skews the clients' clocks.
func (f *ClockDrift) Start(ctx context.Context) error {
	if f.clients == nil {
		return fmt.Errorf("clock-drift: %w", errNoClients)
	}
	if err := f.clients.SkewClock(ctx, f.rate); err != nil {
		return fmt.Errorf("clock-drift %g: %w", f.rate, err)
	}
	return nil
}

// Heal puts the clients' clocks back to real time.
func (f *ClockDrift) Heal(ctx context.Context) error {
	if f.clients == nil {
		return nil
	}
	if err := f.clients.SkewClock(ctx, 1); err != nil {
		return fmt.Errorf("clock-drift heal: %w", err)
	}
	return nil
}
