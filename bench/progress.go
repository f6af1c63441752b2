package bench

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// progress reports the phase's progress to cfg.Progress until the returned
// func is called: a redrawn bar (terminal) or a line every 2 seconds.
func (p *phaseRun) progress(start time.Time, stop *atomic.Bool) func() {
	out := p.cfg.Progress
	if out == nil {
		return func() {}
	}
	every := 2 * time.Second
	if p.cfg.ProgressBar {
		every = 200 * time.Millisecond
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		var last int64
		lastAt := start
		for {
			select {
			case <-done:
				if p.cfg.ProgressBar {
					fmt.Fprint(out, "\r\033[K")
				}
				return
			case now := <-t.C:
				n := p.steps.Load()
				rate := float64(n-last) / now.Sub(lastAt).Seconds()
				last, lastAt = n, now
				p.status(now.Sub(start), n, rate)
			}
		}
	}()
	return func() { close(done); <-finished }
}

func (p *phaseRun) status(elapsed time.Duration, n int64, rate float64) {
	cfg := p.cfg
	frac := min(elapsed.Seconds()/cfg.Duration.Seconds(), 1)
	fault := ""
	if p.h.FaultActive() {
		fault = "  fault active"
	}
	if cfg.ProgressBar {
		const width = 30
		fill := int(frac * width)
		fmt.Fprintf(cfg.Progress, "\r\033[K%-20s [%s%s] %3.0f%%  %8d iterations  %8.0f/s%s",
			p.impl, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), frac*100, n, rate, fault)
		return
	}
	fmt.Fprintf(cfg.Progress, "%s: %5.1fs/%v  %d iterations  %.0f/s%s\n",
		p.impl, elapsed.Seconds(), cfg.Duration, n, rate, fault)
}
