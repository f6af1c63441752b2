package chaos

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/infra"
)

// fakeEnv is an Env of fake nodes that log every call, for pure tests of
// resolution and scheduling (real nodes are exercised in live_test.go).
type fakeEnv struct {
	mu    sync.Mutex
	log   []string
	nodes []*fakeNode
}

func newFakeEnv(specs ...string) *fakeEnv {
	e := &fakeEnv{}
	for _, s := range specs {
		kind := infra.Redis
		if strings.HasPrefix(s, "pg") {
			kind = infra.Postgres
		}
		e.nodes = append(e.nodes, &fakeNode{env: e, name: s, kind: kind, toxics: map[string]infra.Toxic{}})
	}
	return e
}

func (e *fakeEnv) Node(name string) (infra.Node, bool) {
	for _, n := range e.nodes {
		if n.name == name {
			return n, true
		}
	}
	return nil, false
}

func (e *fakeEnv) Nodes() []infra.Node {
	// Deliberately not in name order: resolution must sort.
	out := make([]infra.Node, 0, len(e.nodes))
	for i := len(e.nodes) - 1; i >= 0; i-- {
		out = append(out, e.nodes[i])
	}
	return out
}

func (e *fakeEnv) logf(format string, args ...any) {
	e.mu.Lock()
	e.log = append(e.log, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

func (e *fakeEnv) calls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := append([]string(nil), e.log...)
	sort.Strings(out)
	return out
}

type fakeNode struct {
	env      *fakeEnv
	name     string
	kind     infra.Kind
	mu       sync.Mutex
	down     bool // killed
	paused   bool
	disabled bool
	toxics   map[string]infra.Toxic
	failKill bool
}

func (n *fakeNode) Name() string       { return n.name }
func (n *fakeNode) Kind() infra.Kind   { return n.kind }
func (n *fakeNode) Addr() string       { return "127.0.0.1:1" }
func (n *fakeNode) DirectAddr() string { return "127.0.0.1:2" }
func (n *fakeNode) Password() string   { return "" }
func (n *fakeNode) DSN() string        { return "" }
func (n *fakeNode) DirectDSN() string  { return "" }
func (n *fakeNode) Proxy() infra.Proxy { return (*fakeProxy)(n) }
func (n *fakeNode) set(what string, f func()) error {
	n.mu.Lock()
	f()
	n.mu.Unlock()
	n.env.logf("%s %s", what, n.name)
	return nil
}
func (n *fakeNode) Kill(context.Context) error {
	if n.failKill {
		return fmt.Errorf("cannot kill")
	}
	return n.set("kill", func() { n.down = true })
}
func (n *fakeNode) Start(context.Context) error  { return n.set("start", func() { n.down = false }) }
func (n *fakeNode) Pause(context.Context) error  { return n.set("pause", func() { n.paused = true }) }
func (n *fakeNode) Resume(context.Context) error { return n.set("resume", func() { n.paused = false }) }
func (n *fakeNode) Stop(context.Context) error   { return n.set("stop", func() { n.down = true }) }

// state is the node's fault state, "" when healthy.
func (n *fakeNode) state() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var s []string
	if n.down {
		s = append(s, "down")
	}
	if n.paused {
		s = append(s, "paused")
	}
	if n.disabled {
		s = append(s, "disabled")
	}
	for name := range n.toxics {
		s = append(s, "toxic "+name)
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

type fakeProxy fakeNode

func (p *fakeProxy) Name() string   { return p.name }
func (p *fakeProxy) Listen() string { return "127.0.0.1:1" }
func (p *fakeProxy) AddToxic(_ context.Context, t infra.Toxic) error {
	n := (*fakeNode)(p)
	n.mu.Lock()
	if _, dup := n.toxics[t.Name]; dup {
		n.mu.Unlock()
		return fmt.Errorf("toxic %s already exists", t.Name)
	}
	n.toxics[t.Name] = t
	n.mu.Unlock()
	n.env.logf("toxic %s %s %s %v on %s", t.Type, t.Stream, t.Name, t.Attributes, n.name)
	return nil
}
func (p *fakeProxy) RemoveToxic(_ context.Context, name string) error {
	n := (*fakeNode)(p)
	n.mu.Lock()
	_, ok := n.toxics[name]
	delete(n.toxics, name)
	n.mu.Unlock()
	if !ok {
		return fmt.Errorf("no toxic %s", name)
	}
	n.env.logf("untoxic %s on %s", name, n.name)
	return nil
}
func (p *fakeProxy) Disable(context.Context) error {
	return (*fakeNode)(p).set("disable", func() { p.disabled = true })
}
func (p *fakeProxy) Enable(context.Context) error {
	return (*fakeNode)(p).set("enable", func() { p.disabled = false })
}
func (p *fakeProxy) Reset(context.Context) error {
	return (*fakeNode)(p).set("reset", func() { p.disabled = false; p.toxics = map[string]infra.Toxic{} })
}

// fakeClients is a Clients whose holder is hit right away (or never).
type fakeClients struct {
	mu    sync.Mutex
	log   []string
	never bool // holder faults wait for ctx
	rate  float64
}

func (c *fakeClients) hit(ctx context.Context, what, key string, d time.Duration) (Holder, error) {
	if c.never {
		<-ctx.Done()
		return Holder{}, ctx.Err()
	}
	c.mu.Lock()
	c.log = append(c.log, fmt.Sprintf("%s %q %v", what, key, d))
	c.mu.Unlock()
	if key == "" {
		key = "k1"
	}
	return Holder{Process: 7, Key: key, Token: "tok", Fence: 42}, nil
}
func (c *fakeClients) PauseHolder(ctx context.Context, key string, d time.Duration) (Holder, error) {
	return c.hit(ctx, "pause", key, d)
}
func (c *fakeClients) CrashHolder(ctx context.Context, key string) (Holder, error) {
	return c.hit(ctx, "crash", key, 0)
}
func (c *fakeClients) DelayWrite(ctx context.Context, key string, d time.Duration) (Holder, error) {
	return c.hit(ctx, "delay", key, d)
}
func (c *fakeClients) SkewClock(_ context.Context, rate float64) error {
	c.mu.Lock()
	c.rate = rate
	c.log = append(c.log, fmt.Sprintf("skew %g", rate))
	c.mu.Unlock()
	return nil
}
