package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/faultline-dev/faultline/infra"
)

// interruption is the signal that stopped a run.
type interruption struct {
	sig atomic.Value // os.Signal
}

// notifyInterrupt returns a context cancelled by the first SIGINT or
// SIGTERM: the run stops gracefully (flushes the history, dumps the
// resource, checks, saves). From then on infra's handler takes over: a
// second signal closes every environment and exits at once.
func notifyInterrupt(parent context.Context) (context.Context, *interruption, func()) {
	ctx, cancel := context.WithCancel(parent)
	in := &interruption{}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	var mu sync.Mutex
	var stopCleanup func()
	go func() {
		select {
		case s := <-ch:
			in.sig.Store(s)
			mu.Lock()
			signal.Stop(ch)
			stopCleanup = infra.CleanupOnSignal(context.Background())
			mu.Unlock()
			cancel()
		case <-done:
		}
	}()
	return ctx, in, func() {
		signal.Stop(ch)
		close(done)
		cancel()
		mu.Lock()
		if stopCleanup != nil {
			stopCleanup() // the run is over: a later signal is not ours
		}
		mu.Unlock()
	}
}

// signalled says whether a signal stopped the run.
func (in *interruption) signalled() bool { return in.sig.Load() != nil }

// exitCode is the shell's status for death by the signal received: 130
// for SIGINT, 143 for SIGTERM.
func (in *interruption) exitCode() int {
	if s, ok := in.sig.Load().(syscall.Signal); ok {
		return 128 + int(s)
	}
	return exitInterrupted
}
