package infra

// The docker provider's peer net (see peerNet and Link): every node of a
// topology runs in its own container on one user-defined bridge network,
// created per Env. A Toxiproxy container (faultline/toxiproxy:2, built by
// scripts/build-images.sh from the module's toxiproxy-server) sits on the
// same network and holds the peer proxies: "peer:<node>" listens on port
// 7000+i of the proxy container and forwards to <node>:<port> (the node's
// network alias, resolved by Docker's DNS at each connection, so it follows a
// restarted container). Nodes announce <proxy container IP>:<7000+i>, so every
// node-to-node connection is a real network connection between containers
// that passes the proxy. The proxy's HTTP API is published like the nodes'
// ports (127.0.0.1 on a local engine; see docker_host.go) and driven like an
// external toxiproxy-server. Client proxies are unchanged
// (embedded, on the host, to each container's published port).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
)

// Toxiproxy image of the docker peer net and the variable that overrides it.
const (
	DefaultToxiproxyImage = "faultline/toxiproxy:2"
	EnvToxiproxyImage     = "FAULTLINE_TOXIPROXY_IMAGE"
	toxiproxyAPIPort      = "8474/tcp"
	peerPortBase          = 7000
	peerProxyAlias        = "peer-proxy"
)

// dockerPeerNet is one Env's network, proxy container and peer proxies.
type dockerPeerNet struct {
	p       *dockerProvider
	netName string
	netID   string
	proxy   *dockerServer // the toxiproxy container (a server, for its lifecycle helpers)
	proxyIP string        // its address on the network
	api     *externalHost

	mu   sync.Mutex
	made []nodeProxy
	next int

	cuts cutState // per-pair cut rules in place (paircut_docker.go)
}

// toxiproxyImage is the in-network proxy's image ($FAULTLINE_TOXIPROXY_IMAGE
// or the default).
func toxiproxyImage() string {
	if img := os.Getenv(EnvToxiproxyImage); img != "" {
		return img
	}
	return DefaultToxiproxyImage
}

func (p *dockerProvider) peerNet(ctx context.Context, envID string, _ proxyHost) (peerNet, error) {
	img := toxiproxyImage()
	cctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	if _, err := p.cli.ImageInspect(cctx, img); err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("docker topology: image %s is not on this docker engine: run make images (scripts/build-images.sh toxiproxy)", img)
		}
		return nil, fmt.Errorf("docker topology: inspect image %s: %w", img, err)
	}
	labels := map[string]string{
		LabelFaultline: "1", LabelRun: p.runID, LabelPID: strconv.Itoa(os.Getpid()), labelProvider: p.instance,
	}
	nw, err := tcnetwork.New(cctx, tcnetwork.WithLabels(labels))
	if err != nil {
		return nil, fmt.Errorf("docker topology: create network: %w", err)
	}
	pn := &dockerPeerNet{p: p, netName: nw.Name, netID: nw.ID}
	if err := pn.startProxy(ctx, img, labels); err != nil {
		return nil, errors.Join(err, pn.close(context.WithoutCancel(ctx)))
	}
	return pn, nil
}

// startProxy starts the toxiproxy container and waits for its API.
func (pn *dockerPeerNet) startProxy(ctx context.Context, img string, labels map[string]string) error {
	p := pn.p
	s := &dockerServer{p: p, kind: "toxiproxy", image: img, port: toxiproxyAPIPort,
		cfg: serverConfig{Name: peerProxyAlias, ReadyTimeout: dockerDefaultReady}}
	s.cname = fmt.Sprintf("faultline-%s-%s-%s", p.runID, peerProxyAlias, randomHex(2))
	s.cmd = "toxiproxy-server -host 0.0.0.0 -port 8474"
	lbl := map[string]string{LabelNode: peerProxyAlias}
	for k, v := range labels {
		lbl[k] = v
	}
	ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image: img, Name: s.cname, Labels: lbl,
			ExposedPorts:   []string{toxiproxyAPIPort},
			Networks:       []string{pn.netName},
			NetworkAliases: map[string][]string{pn.netName: {peerProxyAlias}},
			HostConfigModifier: func(hc *container.HostConfig) {
				hc.PortBindings = network.PortMap{
					network.MustParsePort(toxiproxyAPIPort): {{HostIP: p.ep.bindIP, HostPort: "0"}},
				}
			},
		},
		Started: true,
		Logger:  slogPrintf{p.log},
	})
	if ctr != nil {
		s.id, s.ctr = ctr.GetContainerID(), ctr
		pn.proxy = s
	}
	if err != nil {
		return fmt.Errorf("docker topology: start the peer proxy container from %s: %w\n  log tail:\n%s", img, err, indent(s.logTail()))
	}
	if err := s.refreshAddr(ctx); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	in, err := p.cli.ContainerInspect(cctx, s.id, client.ContainerInspectOptions{})
	if err != nil {
		return s.errorf("inspect: %w", err)
	}
	if ns := in.Container.NetworkSettings; ns != nil {
		if ep := ns.Networks[pn.netName]; ep != nil && ep.IPAddress.IsValid() {
			pn.proxyIP = ep.IPAddress.String()
		}
	}
	if pn.proxyIP == "" {
		return s.errorf("no IP address on network %s", pn.netName)
	}
	pn.api = &externalHost{client: toxiclient.NewClient(s.addr()), prefix: "", addr: s.addr()}
	rctx, rcancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer rcancel()
	var last error
	err = pollEvery(rctx, dockerPollEvery, nil, func(ctx context.Context) error {
		last = withCtx(ctx, func() error { _, err := pn.api.client.Proxies(); return err })
		return last
	})
	if err != nil {
		return s.errorf("toxiproxy API on %s not ready: %w\n  log tail:\n%s", s.addr(), errors.Join(last, err), indent(s.logTail()))
	}
	return nil
}

// link creates peer:<node> on the proxy container: it listens on
// 0.0.0.0:700x there and forwards to <node>:<port> on the network.
func (pn *dockerPeerNet) link(ctx context.Context, node string, port int) (nodeProxy, string, bool, error) {
	pn.mu.Lock()
	pn.next++
	lport := peerPortBase + pn.next
	pn.mu.Unlock()
	upstream := net.JoinHostPort(node, strconv.Itoa(port))
	px, err := pn.api.createOn(ctx, "peer-"+node, net.JoinHostPort("0.0.0.0", strconv.Itoa(lport)), upstream)
	if err != nil {
		return nil, "", false, err
	}
	pn.mu.Lock()
	pn.made = append(pn.made, px)
	pn.mu.Unlock()
	return px, net.JoinHostPort(pn.proxyIP, strconv.Itoa(lport)), false, nil
}

// serverConfig puts the node on the network under its own name.
func (pn *dockerPeerNet) serverConfig(cfg *serverConfig) {
	cfg.Network = pn.netName
	if cfg.Alias == "" {
		cfg.Alias = cfg.Name
	}
}

// close removes the proxy container (and with it every peer proxy) and the
// network. Env.Close calls it after destroying the nodes' containers.
func (pn *dockerPeerNet) close(ctx context.Context) error {
	errs := []error{pn.healCuts(ctx)}
	if pn.proxy != nil {
		errs = append(errs, pn.proxy.destroy(ctx))
	}
	if pn.netID != "" {
		errs = append(errs, removeNetwork(ctx, pn.p.cli, pn.netID, pn.netName))
	}
	return errors.Join(errs...)
}

// removeNetwork removes a network, retrying briefly while the engine still
// counts a just-removed container as attached.
func removeNetwork(ctx context.Context, cli client.APIClient, id, name string) error {
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	var last error
	err := pollEvery(ctx, 100*time.Millisecond, nil, func(ctx context.Context) error {
		_, last = cli.NetworkRemove(ctx, id, client.NetworkRemoveOptions{})
		if last != nil && cerrdefs.IsNotFound(last) {
			last = nil
		}
		return last
	})
	if err != nil {
		return fmt.Errorf("remove docker network %s: %w (remove it by hand: docker network rm %s, or run faultline gc)", name, errors.Join(last, err), name)
	}
	return nil
}

// removeLabelledNetworks removes every network matching the label filter
// (after removeLabelled removed their containers) and returns their names.
func removeLabelledNetworks(ctx context.Context, cli client.APIClient, label string) ([]string, error) {
	list, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("label", label)})
	if err != nil {
		return nil, fmt.Errorf("list networks labelled %s: %w", label, err)
	}
	var removed []string
	var errs []error
	for _, n := range list.Items {
		if err := removeNetwork(ctx, cli, n.ID, n.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, n.Name)
	}
	return removed, errors.Join(errs...)
}
