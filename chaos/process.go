package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/faultline-dev/faultline/infra"
)

// nodeFault runs do on every node at once (a kill of 3 nodes is one
// instant, not three) and remembers which succeeded, for the undo.
type nodeFault struct {
	kind     string
	nodes    []infra.Node
	do, undo func(context.Context, infra.Node) error
	doWhat   string
	undoWhat string

	mu   sync.Mutex
	done []infra.Node
}

func (f *nodeFault) Kind() string      { return f.kind }
func (f *nodeFault) Targets() []string { return names(f.nodes) }

func (f *nodeFault) each(ctx context.Context, nodes []infra.Node, op func(context.Context, infra.Node) error, what string) (ok []infra.Node, err error) {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if e := op(ctx, n); e != nil {
				errs[i] = fmt.Errorf("%s: %s %s: %w", f.kind, what, n.Name(), e)
			}
		}()
	}
	wg.Wait()
	for i, n := range nodes {
		if errs[i] == nil {
			ok = append(ok, n)
		}
	}
	return ok, errors.Join(errs...)
}

func (f *nodeFault) Start(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ok, err := f.each(ctx, f.nodes, f.do, f.doWhat)
	f.done = append(f.done, ok...)
	return err
}

func (f *nodeFault) Heal(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ok, err := f.each(ctx, f.done, f.undo, f.undoWhat)
	healed := map[infra.Node]bool{}
	for _, n := range ok {
		healed[n] = true
	}
	var left []infra.Node
	for _, n := range f.done {
		if !healed[n] {
			left = append(left, n)
		}
	}
	f.done = left
	return err
}

// Kill SIGKILLs its nodes at once; Heal restarts them on the same data
// directory (Redis without persistence comes back empty) and returns once
// they are ready.
type Kill struct{ nodeFault }

// NewKill returns a kill of nodes.
func NewKill(nodes []infra.Node) *Kill {
	return &Kill{nodeFault{
		kind: "kill", nodes: nodes, doWhat: "kill", undoWhat: "restart",
		do:   func(ctx context.Context, n infra.Node) error { return n.Kill(ctx) },
		undo: func(ctx context.Context, n infra.Node) error { return n.Start(ctx) },
	}}
}

// Pause SIGSTOPs its nodes at once; Heal resumes them.
type Pause struct{ nodeFault }

// NewPause returns a pause of nodes.
func NewPause(nodes []infra.Node) *Pause {
	return &Pause{nodeFault{
		kind: "pause", nodes: nodes, doWhat: "pause", undoWhat: "resume",
		do:   func(ctx context.Context, n infra.Node) error { return n.Pause(ctx) },
		undo: func(ctx context.Context, n infra.Node) error { return n.Resume(ctx) },
	}}
}
