// Package clock holds faultline's one context-aware wait, for fixed pauses
// (a quiet period, an open-loop schedule slot, an injected holder pause, a
// retry back-off). It is never a wait for a condition: poll with a
// deadline for that.
package clock

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends, whichever comes first. It returns nil
// after a full wait and ctx.Err() when ctx ended first; d <= 0 returns at
// once, with ctx.Err() (nil for a live context).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
