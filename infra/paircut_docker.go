package infra

// Per-pair cuts on the docker provider (see Cut). Node-to-node traffic
// never goes straight from one node's container to another's: node A
// reaches node B at B's announced address, port 700x of the peer proxy
// container (peer:B), which forwards to B. So the one place where the
// packets of the pair A→B are told apart from every other pair's is the
// peer proxy container's network namespace: a packet from A's address to
// B's peer port is A talking to B. A cut of A|B adds, there, with
// iptables (entered from the host with nsenter, the container's pid from
// the Docker API):
//
//	INPUT  -s A -p tcp --dport port(peer:B) -j DROP    A's connections to B
//	OUTPUT -d A -p tcp --sport port(peer:B) -j DROP    and B's answers
//	INPUT  -s B -p tcp --dport port(peer:A) -j DROP    B's connections to A
//	OUTPUT -d B -p tcp --sport port(peer:A) -j DROP    and A's answers
//
// each with the comment of its Cut, so Heal deletes exactly those rules.
// The proxy container is never restarted during a run, so the rules stay
// in force while either node is killed or paused; they match the nodes'
// addresses at the time of the cut (a container restarted during the cut
// may get another address, and is then no longer cut). Established
// connections are blackholed too (a filter rule sees every packet, not
// only new connections), as a real partition does. Client traffic reaches
// the nodes on their published ports, not through this container, and is
// never touched.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

const (
	// cutCallTimeout bounds one nsenter/iptables call (iptables itself
	// waits at most cutLockWait for the xtables lock).
	cutCallTimeout = 10 * time.Second
	cutLockWait    = "5"
	// cutTagPrefix starts the comment of every cut rule.
	cutTagPrefix = "faultline-cut-"
)

// cutState is a dockerPeerNet's record of the cut rules in place, so that
// close removes what no Heal did.
type cutState struct {
	mu     sync.Mutex
	base   string
	next   int
	active map[string]cutRule
}

var _ pairCutter = (*dockerPeerNet)(nil)

func (pn *dockerPeerNet) newTag() string {
	pn.cuts.mu.Lock()
	defer pn.cuts.mu.Unlock()
	if pn.cuts.base == "" {
		pn.cuts.base = randomHex(3)
	}
	pn.cuts.next++
	return fmt.Sprintf("%s%s-%d", cutTagPrefix, pn.cuts.base, pn.cuts.next)
}

// netnsPid is the host pid of the peer proxy container's process, whose
// network namespace nsenter enters. It checks that the pid is this host's
// (the engine runs here) and that the tools are present.
func (pn *dockerPeerNet) netnsPid(ctx context.Context) (int, error) {
	if os.Geteuid() != 0 {
		return 0, errors.New("per-pair cuts enter the peer proxy container's network namespace (nsenter) and need root")
	}
	for _, tool := range []string{"nsenter", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return 0, fmt.Errorf("per-pair cuts need %s on this host (scripts/deps.sh installs it: apt-get install iptables util-linux): %w", tool, err)
		}
	}
	st, err := pn.proxy.state(ctx)
	if err != nil {
		return 0, fmt.Errorf("inspect the peer proxy container: %w", err)
	}
	if !st.Running || st.Pid <= 0 {
		return 0, fmt.Errorf("the peer proxy container %s is not running (status %s)", pn.proxy.cname, st.Status)
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", st.Pid))
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(comm)), "toxiproxy") {
		return 0, fmt.Errorf("pid %d of the peer proxy container is not a toxiproxy-server process of this host (%q, %v): "+
			"per-pair cuts need faultline on the docker engine's host, in its pid namespace", st.Pid, strings.TrimSpace(string(comm)), err)
	}
	return st.Pid, nil
}

// canCut probes what cutPair needs: root, nsenter and iptables here, and
// the peer proxy container's process in this host's pid namespace (the
// engine runs on this host, not behind a remote DOCKER_HOST).
func (pn *dockerPeerNet) canCut(ctx context.Context) error {
	_, err := pn.netnsPid(ctx)
	if err != nil && pn.p.ep.remote() {
		err = fmt.Errorf("%w (the docker engine %s runs on another host: per-pair cuts need faultline on the engine's host)", err, pn.p.ep.daemon)
	}
	return err
}

// iptables runs iptables in the network namespace of pid.
func iptables(ctx context.Context, pid int, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cutCallTimeout)
	defer cancel()
	full := append([]string{"--target", strconv.Itoa(pid), "--net", "--", "iptables", "-w", cutLockWait}, args...)
	out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("nsenter -t %d -n iptables %s: %w: %s", pid, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// nodeIP is a node's address on the run's network, now.
func (pn *dockerPeerNet) nodeIP(ctx context.Context, n *node) (string, error) {
	s, ok := n.srv.(*dockerServer)
	if !ok {
		return "", fmt.Errorf("%s is not a container", n.name)
	}
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	in, err := pn.p.cli.ContainerInspect(ctx, s.id, client.ContainerInspectOptions{})
	if err != nil {
		return "", fmt.Errorf("%s: inspect: %w", n.name, err)
	}
	if st := in.Container.State; st == nil || !st.Running {
		return "", fmt.Errorf("%s is not running: it has no address to cut", n.name)
	}
	if ns := in.Container.NetworkSettings; ns != nil {
		if ep := ns.Networks[pn.netName]; ep != nil && ep.IPAddress.IsValid() {
			return ep.IPAddress.String(), nil
		}
	}
	return "", fmt.Errorf("%s has no address on network %s", n.name, pn.netName)
}

// peerPort is the port of a node's peer proxy in the proxy container.
func peerPort(n *node) (string, error) {
	_, p, err := net.SplitHostPort(n.announce)
	if err != nil {
		return "", fmt.Errorf("%s: announced address %q: %w", n.name, n.announce, err)
	}
	return p, nil
}

func (pn *dockerPeerNet) cutPair(ctx context.Context, tag string, a, b *node) ([]cutRule, error) {
	pid, err := pn.netnsPid(ctx)
	if err != nil {
		return nil, err
	}
	var ip [2]string
	var port [2]string
	for i, n := range []*node{a, b} {
		if ip[i], err = pn.nodeIP(ctx, n); err != nil {
			return nil, err
		}
		if port[i], err = peerPort(n); err != nil {
			return nil, err
		}
	}
	rule := func(chain, addrFlag, addr, portFlag, port string) cutRule {
		return cutRule{chain, addrFlag, addr, "-p", "tcp", portFlag, port, "-m", "comment", "--comment", tag, "-j", "DROP"}
	}
	want := []cutRule{
		rule("INPUT", "-s", ip[0], "--dport", port[1]),
		rule("OUTPUT", "-d", ip[0], "--sport", port[1]),
		rule("INPUT", "-s", ip[1], "--dport", port[0]),
		rule("OUTPUT", "-d", ip[1], "--sport", port[0]),
	}
	var done []cutRule
	for _, r := range want {
		if _, err := iptables(ctx, pid, append([]string{"-A"}, r...)...); err != nil {
			return done, err
		}
		done = append(done, r)
		pn.cuts.mu.Lock()
		if pn.cuts.active == nil {
			pn.cuts.active = map[string]cutRule{}
		}
		pn.cuts.active[r.String()] = r
		pn.cuts.mu.Unlock()
	}
	return done, nil
}

func (pn *dockerPeerNet) uncut(ctx context.Context, rules []cutRule) ([]cutRule, error) {
	pid, err := pn.netnsPid(ctx)
	if err != nil {
		st, serr := pn.proxy.state(ctx)
		if (serr != nil && cerrdefs.IsNotFound(serr)) || (serr == nil && !st.Running) {
			pn.forget(rules...) // the namespace, and every rule in it, is gone
			return nil, nil
		}
		return rules, err
	}
	var left []cutRule
	var errs []error
	for _, r := range rules {
		out, err := iptables(ctx, pid, append([]string{"-D"}, r...)...)
		if err != nil && !strings.Contains(out, "does a matching rule exist") {
			left = append(left, r)
			errs = append(errs, err)
			continue
		}
		pn.forget(r)
	}
	return left, errors.Join(errs...)
}

func (pn *dockerPeerNet) forget(rules ...cutRule) {
	pn.cuts.mu.Lock()
	defer pn.cuts.mu.Unlock()
	for _, r := range rules {
		delete(pn.cuts.active, r.String())
	}
}

func (pn *dockerPeerNet) cutRules(ctx context.Context) ([]string, error) {
	pid, err := pn.netnsPid(ctx)
	if err != nil {
		return nil, err
	}
	out, err := iptables(ctx, pid, "-S")
	if err != nil {
		return nil, err
	}
	var rules []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.Contains(sc.Text(), cutTagPrefix) {
			rules = append(rules, sc.Text())
		}
	}
	return rules, sc.Err()
}

// healCuts removes every cut rule still in place (close, before the proxy
// container goes: its namespace would take them along, but a failed
// removal of the container must not leave a partition behind).
func (pn *dockerPeerNet) healCuts(ctx context.Context) error {
	pn.cuts.mu.Lock()
	var rules []cutRule
	for _, r := range pn.cuts.active {
		rules = append(rules, r)
	}
	pn.cuts.mu.Unlock()
	if len(rules) == 0 || pn.proxy == nil {
		return nil
	}
	if _, err := pn.uncut(ctx, rules); err != nil {
		return fmt.Errorf("docker topology: heal per-pair cuts: %w", err)
	}
	return nil
}
