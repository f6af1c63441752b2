package chaos

import (
	"context"
	"errors"
	"time"
)

// holder-pause: the next lock holder stops inside its critical section
// (the GC-pause case).
func init() {
	register(Kind{
		Name: "holder-pause", Class: Client,
		Params: "pause length, e.g. 2xttl",
		Doc:    "the next holder of the key stops inside its critical section (after its read, before its write)",
		parse: func(p string) (params, error) {
			if p == "" {
				return params{}, nil
			}
			d, err := ParseDur(p)
			if err == nil && d.IsZero() {
				err = errors.New("a pause of 0 is no pause")
			}
			return params{d: d}, err
		},
		paramTarget: true,
		check: func(s Spec, p params) error {
			if p.d.IsZero() && s.Duration.IsZero() {
				return errors.New("holder-pause needs a pause length: holder-pause:2xttl@3s or holder-pause@3s+1s")
			}
			return nil
		},
		length: func(s Spec, p params, ttl time.Duration) time.Duration {
			if p.d.IsZero() {
				return s.Duration.Of(ttl)
			}
			return p.d.Of(ttl)
		},
		build: func(b builder, p *Planned) error {
			key, err := b.key()
			if err != nil {
				return err
			}
			p.Fault = NewHolderPause(b.clients, key, p.Length)
			return nil
		},
		draw: func(_ *drawer, s *Spec) { s.Param, s.Duration = "2xttl", Dur{} },
	})
}

// HolderPause stops the next holder of a key inside its critical section
// for a while (the GC-pause case).
type HolderPause struct{ holderFault }

// NewHolderPause pauses the next holder of key ("" = any) for d.
func NewHolderPause(c Clients, key string, d time.Duration) *HolderPause {
	f := &HolderPause{holderFault{kind: "holder-pause", clients: c, key: key}}
	f.hit = func(ctx context.Context) (Holder, error) { return c.PauseHolder(ctx, key, d) }
	return f
}
