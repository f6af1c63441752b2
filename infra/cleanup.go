package infra

// Cleanup that cannot be skipped.
//
// Every Env registers itself in a process-wide tracker from the moment Up
// begins until Close ends. Three layers make sure nothing outlives a run:
//
//  1. Normal end and errors: the caller defers env.Close(ctx). Close works
//     with a cancelled ctx, on paused and killed nodes, and twice.
//  2. Signals: the CLI calls, first thing in main,
//
//	stop := infra.CleanupOnSignal(ctx)
//	defer stop()
//
//     On SIGINT/SIGTERM it runs the optional hooks (e.g. flush the history),
//     closes every live Env and exits with 130 (SIGINT) or 143 (SIGTERM). A
//     second signal during cleanup exits at once (child processes still die
//     through Pdeathsig, see 3).
//  3. Panics: the CLI (and any goroutine that may panic while an Env is
//     live, e.g. workers, as their first statement) defers
//
//	defer infra.CloseAllOnPanic()
//
//     which closes every live Env and re-panics. If the process dies anyway
//     (SIGKILL, a panic in an unguarded goroutine, runtime fatal error), local
//     servers die with it (Pdeathsig SIGKILL) and docker containers are
//     removed by the reaper or `faultline gc`; only temp dirs named
//     faultline-* can remain in $TMPDIR.

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// tracker is the registry of live environments.
type tracker struct {
	mu   sync.Mutex
	envs map[*Env]struct{}
}

var live = tracker{envs: map[*Env]struct{}{}}

func track(e *Env) {
	live.mu.Lock()
	defer live.mu.Unlock()
	live.envs[e] = struct{}{}
}

func untrack(e *Env) {
	live.mu.Lock()
	defer live.mu.Unlock()
	delete(live.envs, e)
}

// LiveEnvs is the number of environments started and not yet closed.
func LiveEnvs() int {
	live.mu.Lock()
	defer live.mu.Unlock()
	return len(live.envs)
}

// CloseAll closes every live environment in parallel and returns their
// errors joined. It is safe to call at any time, also while Up is running.
func CloseAll(ctx context.Context) error {
	live.mu.Lock()
	envs := make([]*Env, 0, len(live.envs))
	for e := range live.envs {
		envs = append(envs, e)
	}
	live.mu.Unlock()
	errs := make([]error, len(envs))
	var wg sync.WaitGroup
	for i, e := range envs {
		wg.Go(func() { errs[i] = e.Close(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// CloseAllOnPanic, deferred, closes every live environment when the
// deferring function panics, then panics again with the same value. It must
// be deferred directly (defer infra.CloseAllOnPanic()), or recover sees nothing.
func CloseAllOnPanic() {
	r := recover()
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := CloseAll(ctx); err != nil {
		slog.Error("infra: cleanup after panic", "err", err)
	}
	panic(r)
}

// exitCode is the conventional shell status for death by sig.
func exitCode(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}

// CleanupOnSignal installs a SIGINT/SIGTERM handler that runs hooks (each
// given the signal; keep them short), closes every live environment and
// exits the process with 128+signal (130 for SIGINT, 143 for SIGTERM). A
// second signal during cleanup exits immediately. The handler is removed by
// the returned stop function or when ctx ends.
func CleanupOnSignal(ctx context.Context, hooks ...func(os.Signal)) (stop func()) {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	quit := make(chan struct{})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			signal.Stop(ch)
			close(quit)
		})
	}
	go func() {
		var sig os.Signal
		select {
		case sig = <-ch:
		case <-quit:
			return
		case <-ctx.Done():
			stop()
			return
		}
		slog.Warn("infra: signal received, cleaning up environments", "signal", sig, "live", LiveEnvs())
		go func() { // a second signal: give up on a clean exit
			select {
			case s2 := <-ch:
				slog.Error("infra: second signal, exiting without full cleanup", "signal", s2)
				os.Exit(exitCode(s2))
			case <-quit:
			}
		}()
		for _, h := range hooks {
			h(sig)
		}
		cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		err := CloseAll(cctx)
		cancel()
		if err != nil {
			slog.Error("infra: cleanup after signal", "err", err)
		}
		os.Exit(exitCode(sig))
	}()
	return stop
}
