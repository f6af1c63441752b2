package infra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Env is a running environment: the nodes of one run, each behind its
// proxy. Create it with Up and always Close it (also on error and panic; see
// CleanupOnSignal and CloseAllOnPanic for signals and panics).
type Env struct {
	id       string
	spec     Spec
	prov     provider
	reason   string
	proxies  proxyHost
	topo     topology // nil for independent nodes
	peers    peerNet  // the topology's peer links, nil without one
	cancelUp context.CancelFunc
	starting sync.WaitGroup // Up's start goroutines

	mu     sync.Mutex
	nodes  []*node // in spec order once Up has returned
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// Nodes builds the node specs of an environment with redis Redis nodes named
// redis-1..redis-N and postgres PostgreSQL nodes named pg-1..pg-M.
func Nodes(redis, postgres int) []NodeSpec {
	var out []NodeSpec
	for i := 1; i <= redis; i++ {
		out = append(out, NodeSpec{Name: fmt.Sprintf("redis-%d", i), Kind: Redis})
	}
	for i := 1; i <= postgres; i++ {
		out = append(out, NodeSpec{Name: fmt.Sprintf("pg-%d", i), Kind: Postgres})
	}
	return out
}

// RedisNodes is Nodes(n, 0).
func RedisNodes(n int) []NodeSpec { return Nodes(n, 0) }

// validate checks node names and kinds and the provider name.
func (s Spec) validate() error {
	if len(s.Nodes) == 0 {
		return errors.New("infra.Spec has no nodes: build them with infra.Nodes(redis, postgres)")
	}
	seen := map[string]bool{}
	for _, n := range s.Nodes {
		switch {
		case n.Name == "":
			return fmt.Errorf("infra.Spec: a %s node has no name", n.Kind)
		case seen[n.Name]:
			return fmt.Errorf("infra.Spec: node name %q used twice", n.Name)
		case n.Kind == Sentinel && s.Topology == TopologyNone:
			return fmt.Errorf("infra.Spec: node %s is a Sentinel: Sentinels come only with Topology %q", n.Name, TopologyRedisSentinel)
		case n.Kind != Redis && n.Kind != Postgres && n.Kind != Sentinel:
			return fmt.Errorf("infra.Spec: node %s has unknown kind %q (want %q or %q)", n.Name, n.Kind, Redis, Postgres)
		}
		seen[n.Name] = true
	}
	switch s.Provider {
	case "", "auto", "local", "docker":
	case "external":
		if len(s.External) == 0 {
			return errors.New("infra.Spec: provider external has no targets")
		}
		if err := CheckNamespace(s.Namespace); err != nil {
			return fmt.Errorf("infra.Spec: %w", err)
		}
	default:
		return fmt.Errorf("infra.Spec: unknown provider %q (want auto, local, docker or external)", s.Provider)
	}
	return nil
}

// chooseProvider resolves "auto|local|docker" and says why.
func chooseProvider(ctx context.Context, spec Spec, opts upOptions) (provider, string, error) {
	local := func(reason string) (provider, string, error) {
		p, err := newLocalProvider(opts.localBins)
		return p, reason, err
	}
	switch spec.Provider {
	case "external":
		return newExternalProvider(spec), "external: asked for (--provider external); faultline owns no server process", nil
	case "local":
		return local("local: asked for (--provider local)")
	case "docker":
		ok, why := dockerAvailable(ctx, spec)
		if !ok {
			return nil, "", fmt.Errorf("docker provider asked for but unusable: %s (run make images, or use --provider local)", why)
		}
		p, err := newDockerProvider(ctx, spec)
		return p, "docker: asked for (--provider docker); " + why, err
	default:
		ok, why := dockerAvailable(ctx, spec)
		if !ok {
			p, reason, err := local("local: auto, docker unusable: " + why)
			if err != nil { // e.g. Windows, where the local provider does not run
				return nil, "", fmt.Errorf("--provider auto: docker unusable (%s), and %w", why, err)
			}
			return p, reason, nil
		}
		p, err := newDockerProvider(ctx, spec)
		return p, "docker: auto, " + why, err
	}
}

// Up starts every node of spec (in parallel), each behind its own proxy, and
// returns once all are ready. If any node fails, everything already started
// is destroyed before Up returns the error. The Env is registered in the
// process-wide tracker until Close, so CloseAll / CleanupOnSignal reach it.
func Up(ctx context.Context, spec Spec) (*Env, error) {
	return up(ctx, spec, upOptions{})
}

// upOptions are knobs tests need and users do not.
type upOptions struct {
	localBins localBinaries // where the local provider finds its programs
}

// localBinaries overrides where the local provider finds its programs (tests
// use it to provoke a missing binary). Empty fields mean "search as usual".
type localBinaries struct {
	RedisServer string // path of redis-server
	PostgresDir string // directory holding postgres and initdb
}

func up(ctx context.Context, spec Spec, opts upOptions) (*Env, error) {
	spec, err := spec.withTopology()
	if err != nil {
		return nil, err
	}
	if err := spec.validate(); err != nil {
		return nil, err
	}
	var topo topology
	if spec.Topology != TopologyNone {
		if topo, err = newTopology(spec.Topology); err != nil {
			return nil, err
		}
	}
	if spec.ReadyTimeout <= 0 {
		spec.ReadyTimeout = 30 * time.Second
	}
	prov, reason, err := chooseProvider(ctx, spec, opts)
	if err != nil {
		return nil, fmt.Errorf("infra.Up: %w", err)
	}
	upCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	e := &Env{id: randomHex(4), spec: spec, prov: prov, reason: reason, cancelUp: cancel, topo: topo}
	e.proxies = newProxyHost(e.id, spec.ExternalToxiproxy)
	track(e) // from here on, a signal's CloseAll reaches what we start

	started := time.Now()
	if topo != nil {
		// The topology starts its own nodes (e.spec.Nodes holds only
		// them meanwhile), then the independent extras start beside it.
		own, _ := TopologyNodes(spec.Topology)
		extra := spec.Nodes[len(own):]
		e.spec.Nodes = spec.Nodes[:len(own)]
		e.starting.Add(1)
		err := topo.start(upCtx, e)
		e.starting.Done()
		e.mu.Lock()
		e.spec.Nodes = spec.Nodes
		e.mu.Unlock()
		for _, ns := range extra {
			if err != nil {
				break
			}
			e.starting.Add(1)
			_, err = e.startNode(upCtx, ns)
			e.starting.Done()
		}
		if err == nil {
			e.sortNodes()
			slog.Debug("infra: topology up", "env", e.id, "topology", spec.Topology, "provider", prov.name(), "took", time.Since(started))
			return e, nil
		}
		cerr := e.Close(context.WithoutCancel(ctx))
		return nil, errors.Join(fmt.Errorf("infra.Up (%s, %s provider): %w", spec.Topology, prov.name(), err), cerr)
	}
	var (
		firstOnce sync.Once
		first     error // the root cause; later failures are mostly cancellations
	)
	errs := make([]error, len(spec.Nodes))
	nodes := make([]*node, len(spec.Nodes))
	for i, ns := range spec.Nodes {
		e.starting.Add(1)
		go func() {
			defer e.starting.Done()
			nodes[i], errs[i] = e.startNode(upCtx, ns)
			if errs[i] != nil {
				firstOnce.Do(func() { first = errs[i] })
				cancel() // no point starting the rest
			}
		}()
	}
	e.starting.Wait()

	e.mu.Lock()
	closed := e.closed
	if !closed { // spec order instead of completion order
		e.nodes = slices.DeleteFunc(slices.Clone(nodes), func(n *node) bool { return n == nil })
	}
	e.mu.Unlock()

	err = first
	if err == nil && closed {
		err = errors.New("environment closed while starting (signal?)")
	}
	if err != nil {
		cerr := e.Close(context.WithoutCancel(ctx))
		return nil, errors.Join(fmt.Errorf("infra.Up (%s provider): %w", prov.name(), err), cerr)
	}
	slog.Debug("infra: environment up", "env", e.id, "provider", prov.name(), "nodes", len(nodes), "took", time.Since(started))
	return e, nil
}

// startNode starts one server and its proxy. The node is added to e.nodes
// as soon as it exists, so a concurrent Close destroys it.
func (e *Env) startNode(ctx context.Context, ns NodeSpec) (*node, error) {
	cfg := serverConfig{
		Name:         ns.Name,
		Password:     newPassword(),
		AppendOnly:   e.spec.RedisAppendOnly,
		Fsync:        e.spec.PostgresFsync,
		ReadyTimeout: e.spec.ReadyTimeout,
	}
	var (
		srv server
		err error
	)
	switch ns.Kind {
	case Redis:
		cfg.Image = e.spec.RedisImage
		srv, err = e.prov.startRedis(ctx, cfg)
	case Postgres:
		cfg.Image = e.spec.PostgresImage
		srv, err = e.prov.startPostgres(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}
	n := &node{name: ns.Name, kind: ns.Kind, password: cfg.Password, srv: srv}
	if ext, ok := srv.(*externalServer); ok {
		n.password = ext.password()
		n.sharers = e.repointSharers
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, errors.Join(fmt.Errorf("node %s: environment closed while starting", ns.Name), srv.destroy(context.WithoutCancel(ctx)))
	}
	e.nodes = append(e.nodes, n)
	e.mu.Unlock()

	px, err := e.proxies.create(ctx, ns.Name, srv.addr())
	if err != nil {
		return n, err // Close destroys the server
	}
	n.mu.Lock()
	n.px = px
	n.mu.Unlock()
	return n, nil
}

// repointSharers points the proxy of every external node other than
// except at its server's address now (a no-op for a proxy already there):
// a node sharing except's server follows it when a restart moved it. A
// node busy with a lifecycle operation of its own is skipped: it runs on
// a server of its own (a sharing node gets no process faults) and
// re-points its own proxy.
func (e *Env) repointSharers(ctx context.Context, except *node) error {
	e.mu.Lock()
	nodes := slices.Clone(e.nodes)
	e.mu.Unlock()
	var errs []error
	for _, m := range nodes {
		if m == except || !m.mu.TryLock() {
			continue
		}
		if ext, ok := m.srv.(*externalServer); ok && m.px != nil && ext.t.Shares != "" {
			errs = append(errs, m.px.setUpstream(ctx, m.srv.addr()))
		}
		m.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Node returns the node called name.
func (e *Env) Node(name string) (Node, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.nodes {
		if n.name == name {
			return n, true
		}
	}
	return nil, false
}

// Nodes returns every node in spec order.
func (e *Env) Nodes() []Node {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Node, len(e.nodes))
	for i, n := range e.nodes {
		out[i] = n
	}
	return out
}

// ByKind returns the nodes of one kind in spec order.
func (e *Env) ByKind(k Kind) []Node {
	var out []Node
	for _, n := range e.Nodes() {
		if n.Kind() == k {
			out = append(out, n)
		}
	}
	return out
}

// Provider is the provider that started the nodes: "local", "docker" or
// "external".
func (e *Env) Provider() string { return e.prov.name() }

// ProviderReason says why that provider was chosen, for the run header.
func (e *Env) ProviderReason() string { return e.reason }

// KeyPrefix is the prefix every Redis key of the run must start with: on
// external targets KeyPrefix(namespace), "" on servers faultline started
// (it owns them whole).
func (e *Env) KeyPrefix() string {
	if e.spec.Provider != "external" {
		return ""
	}
	return KeyPrefix(e.spec.Namespace)
}

// RunToken names this environment's run among others on the same servers:
// the namespace on external targets, else a random id drawn at Up. Things
// that are server-wide whoever owns the server (PostgreSQL's prepared
// transaction gids: "fl:<token>:", impl/txn.RunGIDPrefix) carry it.
func (e *Env) RunToken() string {
	if e.spec.Provider == "external" {
		return e.spec.Namespace
	}
	return e.id
}

// ProcessControl says whether the run can kill, pause and restart node's
// server, and if not, why (only external targets without a container
// cannot).
func (e *Env) ProcessControl(node string) (bool, string) {
	return ProcessControl(e.spec, node)
}

// ProcessControl is Env.ProcessControl before the environment exists.
func ProcessControl(spec Spec, node string) (bool, string) {
	if spec.Provider != "external" {
		return true, spec.Provider + " provider owns the process"
	}
	t, err := ExternalTargetOf(spec, node)
	if err != nil {
		return false, err.Error()
	}
	return t.ProcessControl()
}

// ExternalTargetOf is the external target node runs on in spec (its Shares
// set when it shares another target's server).
func ExternalTargetOf(spec Spec, node string) (ExternalTarget, error) {
	for _, ns := range spec.Nodes {
		if ns.Name == node {
			return (&externalProvider{targets: spec.External, nodes: spec.Nodes}).target(ns.Name, ns.Kind)
		}
	}
	return ExternalTarget{}, errors.New("no node " + node)
}

// ID is the environment's random id (it names external proxies and labels).
func (e *Env) ID() string { return e.id }

// Versions maps each server kind in the environment to its version, e.g.
// {"redis": "7.0.15", "postgres": "15.18"}.
func (e *Env) Versions() map[string]string {
	out := map[string]string{}
	for _, n := range e.Nodes() {
		if _, ok := out[string(n.Kind())]; !ok {
			out[string(n.Kind())] = n.(*node).srv.version()
		}
	}
	return out
}

// closeTimeout bounds Close when the caller's context has no deadline.
const closeTimeout = 60 * time.Second

// Close destroys every server and proxy and removes every temp dir or
// container of the environment. It is idempotent and safe to call
// concurrently (later callers wait for the first and get its error), works
// on paused and killed nodes, and runs to completion even when ctx is
// already cancelled (only its values are used; the wait is bounded by
// closeTimeout).
func (e *Env) Close(ctx context.Context) error {
	e.closeOnce.Do(func() { e.closeErr = e.close(ctx) })
	return e.closeErr
}

func (e *Env) close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.cancelUp() // a running Up stops starting servers ...
	waited := make(chan struct{})
	go func() { e.starting.Wait(); close(waited) }()
	select { // ... and we wait for its goroutines, so nothing appears after us
	case <-waited:
	case <-ctx.Done():
	}

	e.mu.Lock()
	nodes := slices.Clone(e.nodes)
	e.mu.Unlock()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.destroy(ctx) })
	}
	wg.Wait()
	e.mu.Lock()
	peers := e.peers
	e.mu.Unlock()
	if peers != nil {
		errs = append(errs, peers.close(ctx))
	}
	errs = append(errs, e.proxies.close(ctx), e.prov.close(ctx))
	untrack(e)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("infra: closing environment %s: %w", e.id, err)
	}
	return nil
}
