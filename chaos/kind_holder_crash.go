package chaos

import "context"

// holder-crash: the next lock holder dies inside its critical section.
func init() {
	register(Kind{
		Name: "holder-crash", Class: Client,
		Doc: "the next holder of the key dies inside its critical section without releasing",
		build: func(b builder, p *Planned) error {
			key, err := b.key()
			if err != nil {
				return err
			}
			p.Fault = NewHolderCrash(b.clients, key)
			p.Instant = p.Length == 0
			return nil
		},
		draw: func(_ *drawer, s *Spec) { s.Duration = Dur{} },
	})
}

// HolderCrash kills the next holder of a key inside its critical section.
type HolderCrash struct{ holderFault }

// NewHolderCrash crashes the next holder of key ("" = any).
func NewHolderCrash(c Clients, key string) *HolderCrash {
	f := &HolderCrash{holderFault{kind: "holder-crash", clients: c, key: key}}
	f.hit = func(ctx context.Context) (Holder, error) { return c.CrashHolder(ctx, key) }
	return f
}
