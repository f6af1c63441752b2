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

func (f *nodeFault) Kind() string        { return f.kind }
func (f *nodeFault) Targets() []string   { return names(f.nodes) }
func (f *nodeFault) Nodes() []infra.Node { return f.nodes }

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
