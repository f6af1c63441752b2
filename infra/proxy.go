package infra

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/rs/zerolog"
)

// proxyHost creates the proxies of one environment: the embedded Toxiproxy
// server, or an external toxiproxy-server reached over its HTTP API.
type proxyHost interface {
	// create starts a proxy on a free 127.0.0.1 port forwarding to upstream.
	create(ctx context.Context, name, upstream string) (nodeProxy, error)
	close(ctx context.Context) error
}

// nodeProxy is a Proxy plus what the environment needs to manage it.
type nodeProxy interface {
	Proxy
	// setUpstream points the proxy at a server's new address (after a
	// restart on another port); the listen address does not change.
	setUpstream(ctx context.Context, upstream string) error
	destroy(ctx context.Context) error
}

// newProxyHost returns the external host when addr is set, else an embedded one.
func newProxyHost(envID, addr string) proxyHost {
	if addr != "" {
		return &externalHost{client: toxiclient.NewClient(addr), prefix: "faultline-" + envID + "-", addr: addr}
	}
	return &embeddedHost{srv: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())}
}

// toxicJSON renders t in Toxiproxy's JSON, defaulting stream to downstream
// and toxicity 0 to 1 (a toxicity of 0 never applies: nobody means that).
func toxicJSON(t Toxic) ([]byte, error) {
	if t.Type == "" {
		return nil, errors.New("toxic has no type (latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data)")
	}
	return json.Marshal(map[string]any{
		"name":       t.Name,
		"type":       t.Type,
		"stream":     stream(t),
		"toxicity":   toxicity(t),
		"attributes": t.Attributes,
	})
}

func stream(t Toxic) string {
	if t.Stream == "" {
		return "downstream"
	}
	return t.Stream
}

func toxicity(t Toxic) float32 {
	if t.Toxicity <= 0 {
		return 1
	}
	return t.Toxicity
}

// ---- embedded ----

// embeddedHost runs proxies inside this process, without an HTTP API.
type embeddedHost struct {
	srv *toxiproxy.ApiServer
}

// create listens on a port below the kernel's ephemeral range
// (stablePorts): a cut or an upstream change stops the proxy and
// re-listens on the same port, and a port inside the range can meanwhile
// become the source port of any outgoing connection ("bind: address
// already in use", seen once on a peer proxy in infra.Up). A port some
// other listener holds is passed over for another.
func (h *embeddedHost) create(ctx context.Context, name, upstream string) (nodeProxy, error) {
	var p *toxiproxy.Proxy
	var err error
	for _, port := range stablePorts(createTries) {
		p = toxiproxy.NewProxy(h.srv, name, fmt.Sprintf("127.0.0.1:%d", port), upstream)
		if err = h.srv.Collection.Add(p, true); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("proxy %s: start listening on 127.0.0.1 (%d ports tried): %w", name, createTries, err)
	}
	// Listen now holds the concrete port; Stop/Start re-listen on it.
	e := &embeddedProxy{host: h, name: name, listen: p.Listen, upstream: upstream}
	e.p.Store(p)
	return e, nil
}

func (h *embeddedHost) close(ctx context.Context) error { return h.srv.Collection.Clear() }

// embeddedProxy is one in-process Toxiproxy proxy. Its Toxiproxy proxy
// may be replaced by a fresh one on the same address (Reset, when a toxic
// removal is stuck: Toxiproxy issue #558).
type embeddedProxy struct {
	host     *embeddedHost
	name     string
	p        atomic.Pointer[toxiproxy.Proxy]
	listen   string
	mu       sync.Mutex // serialises enable/disable/upstream changes and replacement
	upstream string
}

func (e *embeddedProxy) Name() string   { return e.name }
func (e *embeddedProxy) Listen() string { return e.listen }

func (e *embeddedProxy) AddToxic(ctx context.Context, t Toxic) error {
	body, err := toxicJSON(t)
	if err != nil {
		return fmt.Errorf("proxy %s: %w", e.name, err)
	}
	if _, err := e.p.Load().Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
		return fmt.Errorf("proxy %s: add toxic %s: %w", e.name, body, err)
	}
	return nil
}

// RemoveToxic gives up when ctx ends: Toxiproxy's removal ignores its
// context and can block for good (issue #558: a latency toxic holding data
// for a connection whose peer died), holding the proxy's toxic list.
func (e *embeddedProxy) RemoveToxic(ctx context.Context, name string) error {
	p := e.p.Load()
	if err := withCtx(ctx, func() error { return p.Toxics.RemoveToxic(ctx, name) }); err != nil {
		return fmt.Errorf("proxy %s: remove toxic %q: %w", e.name, name, err)
	}
	return nil
}

func (e *embeddedProxy) Disable(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.p.Load().Stop() // closes the listener and every live connection
	return nil
}

func (e *embeddedProxy) Enable(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.p.Load().Start(); err != nil && !errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
		return fmt.Errorf("proxy %s: re-listen on %s: %w", e.name, e.listen, err)
	}
	return nil
}

// Reset removes every toxic and re-enables the proxy. When the removal
// does not finish by ctx's end (a toxic removal stuck: Toxiproxy #558, the
// toxic list stays locked), it replaces the proxy by a fresh one on the
// same address and upstream, without toxics (live connections are dropped;
// the stuck removal is abandoned), within resetReplaceTimeout.
func (e *embeddedProxy) Reset(ctx context.Context) error {
	p := e.p.Load()
	if err := withCtx(ctx, func() error { p.Toxics.ResetToxics(ctx); return nil }); err == nil {
		return e.Enable(ctx)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resetReplaceTimeout)
	defer cancel()
	return e.replace(rctx)
}

// resetReplaceTimeout bounds the replacement of a proxy whose toxic list
// is stuck.
const resetReplaceTimeout = 5 * time.Second

// replace swaps the Toxiproxy proxy for a fresh one on the same listen
// address and upstream, enabled and without toxics.
func (e *embeddedProxy) replace(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.p.Load()
	err := withCtx(ctx, func() error {
		if err := e.host.srv.Collection.Remove(e.name); err != nil && !errors.Is(err, toxiproxy.ErrProxyNotFound) {
			return err
		}
		p := toxiproxy.NewProxy(e.host.srv, e.name, e.listen, e.upstream)
		if err := e.host.srv.Collection.Add(p, true); err != nil {
			return err
		}
		e.p.CompareAndSwap(old, p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("proxy %s: toxics stuck (Toxiproxy #558), replacing it on %s: %w", e.name, e.listen, err)
	}
	return nil
}

func (e *embeddedProxy) enabled() bool {
	p := e.p.Load()
	p.Lock()
	defer p.Unlock()
	return p.Enabled
}

func (e *embeddedProxy) setUpstream(ctx context.Context, upstream string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if upstream == e.upstream {
		return nil
	}
	// Update stops the proxy (dropping connections to the dead server),
	// swaps the upstream and re-listens on the same address if it was enabled.
	in := &toxiproxy.Proxy{Name: e.name, Listen: e.listen, Upstream: upstream, Enabled: e.enabled()}
	if err := e.p.Load().Update(in); err != nil {
		return fmt.Errorf("proxy %s: point upstream to %s: %w", e.name, upstream, err)
	}
	e.upstream = upstream
	return nil
}

func (e *embeddedProxy) destroy(ctx context.Context) error {
	err := e.host.srv.Collection.Remove(e.name)
	if err != nil && !errors.Is(err, toxiproxy.ErrProxyNotFound) {
		return fmt.Errorf("proxy %s: remove: %w", e.name, err)
	}
	return nil
}

// ---- external ----

// externalHost drives a toxiproxy-server over HTTP. The server must run on
// this host (proxies listen on its 127.0.0.1 and reach the nodes' 127.0.0.1
// ports). Proxy names carry the environment id, so concurrent environments
// can share one server.
type externalHost struct {
	client *toxiclient.Client
	prefix string
	addr   string
}

// withCtx runs a blocking client call (the client has a 30 s HTTP timeout but
// takes no context) and gives up when ctx ends.
func withCtx(ctx context.Context, f func() error) error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *externalHost) create(ctx context.Context, name, upstream string) (nodeProxy, error) {
	return h.createOn(ctx, name, "127.0.0.1:0", upstream)
}

// createOn creates a proxy listening on listen (host:port on the server's side).
func (h *externalHost) createOn(ctx context.Context, name, listen, upstream string) (nodeProxy, error) {
	var p *toxiclient.Proxy
	err := withCtx(ctx, func() (err error) {
		p, err = h.client.CreateProxy(h.prefix+name, listen, upstream)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("proxy %s: create on toxiproxy-server %s (is it running? ExternalToxiproxy is its API host:port): %w", name, h.addr, err)
	}
	return &externalProxy{p: p, host: h}, nil
}

func (h *externalHost) close(ctx context.Context) error { return nil }

// externalProxy is one proxy on an external toxiproxy-server.
type externalProxy struct {
	host *externalHost
	mu   sync.Mutex // the client Proxy value is not safe for concurrent use
	p    *toxiclient.Proxy
}

func (x *externalProxy) Name() string { return x.p.Name }

func (x *externalProxy) Listen() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.p.Listen
}

func (x *externalProxy) do(ctx context.Context, what string, f func() error) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := withCtx(ctx, f); err != nil {
		return fmt.Errorf("proxy %s on %s: %s: %w", x.p.Name, x.host.addr, what, err)
	}
	return nil
}

func (x *externalProxy) AddToxic(ctx context.Context, t Toxic) error {
	return x.do(ctx, "add toxic "+t.Name, func() error {
		_, err := x.p.AddToxic(t.Name, t.Type, stream(t), toxicity(t), toxiclient.Attributes(t.Attributes))
		return err
	})
}

func (x *externalProxy) RemoveToxic(ctx context.Context, name string) error {
	return x.do(ctx, "remove toxic "+name, func() error { return x.p.RemoveToxic(name) })
}

func (x *externalProxy) Disable(ctx context.Context) error {
	return x.do(ctx, "disable", x.p.Disable)
}

func (x *externalProxy) Enable(ctx context.Context) error {
	return x.do(ctx, "enable", x.p.Enable)
}

// Reset removes every toxic and re-enables the proxy. When that does not
// finish by ctx's end (a toxic removal stuck on the server: Toxiproxy
// #558), it deletes the proxy and creates it again on the same address and
// upstream, within resetReplaceTimeout.
func (x *externalProxy) Reset(ctx context.Context) error {
	err := x.reset(ctx)
	if err == nil || ctx.Err() == nil {
		return err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resetReplaceTimeout)
	defer cancel()
	x.mu.Lock()
	defer x.mu.Unlock()
	old := *x.p
	var p *toxiclient.Proxy
	rerr := withCtx(rctx, func() error {
		if err := old.Delete(); err != nil && !strings.Contains(err.Error(), "not found") {
			return err
		}
		var err error
		p, err = x.host.client.CreateProxy(old.Name, old.Listen, old.Upstream)
		return err
	})
	if rerr != nil {
		return fmt.Errorf("proxy %s on %s: toxics stuck (Toxiproxy #558), replacing it on %s: %w", old.Name, x.host.addr, old.Listen, errors.Join(err, rerr))
	}
	x.p = p
	return nil
}

func (x *externalProxy) reset(ctx context.Context) error {
	return x.do(ctx, "reset", func() error {
		toxics, err := x.p.Toxics()
		if err != nil {
			return err
		}
		var errs []error
		for _, t := range toxics {
			if err := x.p.RemoveToxic(t.Name); err != nil && !strings.Contains(err.Error(), "not found") {
				errs = append(errs, err)
			}
		}
		return errors.Join(append(errs, x.p.Enable())...)
	})
}

func (x *externalProxy) setUpstream(ctx context.Context, upstream string) error {
	return x.do(ctx, "set upstream "+upstream, func() error {
		if x.p.Upstream == upstream {
			return nil
		}
		old := x.p.Upstream
		x.p.Upstream = upstream
		if err := x.p.Save(); err != nil {
			x.p.Upstream = old
			return err
		}
		return nil
	})
}

func (x *externalProxy) destroy(ctx context.Context) error {
	return x.do(ctx, "delete", x.p.Delete)
}
