package chaos

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/infra"
)

// Kind is one fault kind, held whole by its file kind_<name>.go, as a toxic
// is in Toxiproxy: its grammar (params, targets), how a spec becomes a
// Fault, how the nemesis draws one at random, and whether it needs the
// clients on the proxied path. Adding a kind is adding one such file (and
// its rows in expected.md); nothing else switches on kind names.
type Kind struct {
	Name  string
	Class Class
	// Params says what the "=params" part means, "" if the kind takes none.
	Params string
	Doc    string

	// parse reads the params; p == "" gives the kind's defaults. nil: the
	// kind takes no params.
	parse func(p string) (params, error)
	// paramTarget: a target that parses as params is the params
	// (holder-pause:2xttl, clock-drift:1.5).
	paramTarget bool
	// check rejects a spec the grammar alone accepts (nil: none).
	check func(s Spec, p params) error
	// length is how long the fault stays on (nil: the spec's +duration).
	length func(s Spec, p params, ttl time.Duration) time.Duration
	// build makes the fault of p.Spec; p arrives with Start and Length set.
	build func(b builder, p *Planned) error
	// draw makes a random spec's target and params for the nemesis; the
	// spec arrives with Kind, Start and Duration set.
	draw func(d *drawer, s *Spec)
	// Topology says the kind needs a replicated topology (TopologyEnv):
	// failover, replication-lag, replication-partition.
	Topology bool
	// PairCut says the kind cuts pairs of topology nodes from each other
	// (infra.Env.CutPairs): the docker provider only (NeedsPairCut).
	PairCut bool
	// needsProxy says whether s needs the clients on Toxiproxy, given the
	// run's node names (nil: every kind but client faults does: network
	// faults act on the proxies, and a killed node may come back on a new
	// direct address).
	needsProxy func(s Spec, nodes []string) bool
}

// Class groups fault kinds by what they act on.
type Class string

// Fault classes.
const (
	Network Class = "network" // a node's Toxiproxy proxy
	Process Class = "process" // a node's server process
	Client  Class = "client"  // the workload's workers (through Clients)
)

var (
	kindsMu sync.RWMutex
	kinds   = map[string]*Kind{}
)

// register adds a kind; each kind_<name>.go calls it from init.
func register(k Kind) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	if _, dup := kinds[k.Name]; dup {
		panic("chaos: fault kind registered twice: " + k.Name)
	}
	if k.build == nil || k.draw == nil {
		panic("chaos: fault kind " + k.Name + " lacks build or draw")
	}
	kinds[k.Name] = &k
}

var classOrder = map[Class]int{Network: 0, Process: 1, Client: 2}

// Kinds lists every fault kind (network, process, then client faults, by
// name within a class), for help texts and `faultline list`.
func Kinds() []Kind {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	out := make([]Kind, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, *k)
	}
	slices.SortFunc(out, func(a, b Kind) int {
		return cmp.Or(cmp.Compare(classOrder[a.Class], classOrder[b.Class]), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// LookupKind returns the kind called name; the error lists the valid ones.
func LookupKind(name string) (Kind, error) {
	kindsMu.RLock()
	k, ok := kinds[strings.ToLower(strings.TrimSpace(name))]
	kindsMu.RUnlock()
	if !ok {
		return Kind{}, fmt.Errorf("unknown fault kind %q (valid kinds: %s)", name, kindNames())
	}
	return *k, nil
}

// kindNames is the sorted list of valid kind names, for error messages.
func kindNames() string {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// params are a spec's parsed parameters; each kind uses the fields it needs.
type params struct {
	d, jitter Dur     // latency, pause/delay length, reset delay, slow-close delay
	rate      float64 // bandwidth KB/s, clock-drift rate
	stream    string  // one-way: upstream or downstream
}

// parseParams parses the params of k (p == "" gives the defaults).
func (k Kind) parseParams(p string) (params, error) {
	p = strings.TrimSpace(p)
	if k.parse == nil {
		if p != "" {
			return params{}, fmt.Errorf("%s takes no params, got %q", k.Name, p)
		}
		return params{}, nil
	}
	out, err := k.parse(p)
	if err != nil {
		return params{}, fmt.Errorf("params %q of %s: %w (valid: %s)", p, k.Name, err, k.Params)
	}
	return out, nil
}

// lengthOf is how long a fault of spec s lasts, resolved against ttl (0 =
// until the phase ends, or instantaneous).
func (k Kind) lengthOf(s Spec, p params, ttl time.Duration) time.Duration {
	if k.length != nil {
		return k.length(s, p, ttl)
	}
	return s.Duration.Of(ttl)
}

// durParam is the parser of a kind whose one param is a duration, with def
// as the default.
func durParam(def Dur) func(string) (params, error) {
	return func(p string) (params, error) {
		if p == "" {
			return params{d: def}, nil
		}
		d, err := ParseDur(p)
		return params{d: d}, err
	}
}

// builder is what a kind's build gets: the run the spec resolves against.
type builder struct {
	id      string
	spec    Spec
	params  params
	env     Env
	clients Clients
	ttl     time.Duration
}

// nodes resolves the spec's target as nodes (ResolveNodes).
func (b builder) nodes() ([]infra.Node, error) { return ResolveNodes(b.env, b.spec.Target) }

// key is a client fault's lock key ("" = any); it fails without Clients.
func (b builder) key() (string, error) {
	if b.clients == nil {
		return "", errNoClients
	}
	if strings.EqualFold(b.spec.Target, "any") {
		return "", nil
	}
	return b.spec.Target, nil
}

// NeedsProxy says whether schedule s needs the clients on the proxied path
// (network and process faults, or a client fault aimed at nodes), given
// the names of the run's nodes.
func NeedsProxy(s Schedule, nodes []string) bool {
	for _, spec := range s {
		k, err := LookupKind(spec.Kind)
		if err != nil {
			continue
		}
		if k.needsProxy != nil {
			if k.needsProxy(spec, nodes) {
				return true
			}
		} else if k.Class != Client {
			return true
		}
	}
	return false
}

// KindsNeedProxy says whether a nemesis drawing from kinds needs the
// proxied path: it draws client kinds on lock keys (they act in the
// workers) and every other kind on nodes.
func KindsNeedProxy(kinds []string) bool {
	for _, name := range kinds {
		if k, err := LookupKind(name); err == nil && k.Class != Client {
			return true
		}
	}
	return false
}

// isNodeTarget says whether target names nodes (a group, or only names in
// nodes) rather than a lock key.
func isNodeTarget(target string, nodes []string) bool {
	t := strings.ToLower(strings.TrimSpace(target))
	if t == "" || t == "any" {
		return false
	}
	if slices.Contains(groups, t) {
		return true
	}
	for _, name := range strings.Split(target, ",") {
		if !slices.Contains(nodes, strings.TrimSpace(name)) {
			return false
		}
	}
	return true
}

// envNames is the names of env's nodes.
func envNames(env Env) []string {
	if env == nil {
		return nil
	}
	return names(env.Nodes())
}

// drawer is the nemesis's source of targets: one implementation's nodes,
// visited in a random rotation so that every node is hit once before any
// is hit twice.
type drawer struct {
	rng      *rand.Rand
	nodes    []string // the implementation's own nodes, natural order
	resource []string // the workload's resource nodes (its link may be slowed)
	order    []int
	next     int
}

// one is the next node of the rotation.
func (d *drawer) one() string {
	if d.next%len(d.nodes) == 0 {
		d.order = d.rng.Perm(len(d.nodes))
	}
	n := d.nodes[d.order[d.next%len(d.nodes)]]
	d.next++
	return n
}

// link is one node or the resource link (each resource node counts as one
// more choice besides the implementation's nodes).
func (d *drawer) link() string {
	if len(d.resource) > 0 && d.rng.IntN(len(d.nodes)+len(d.resource)) < len(d.resource) {
		return d.resource[d.rng.IntN(len(d.resource))]
	}
	return d.one()
}

// shape is one node, a minority or a majority of the implementation's
// nodes, always including the rotation's next node; names in natural order.
func (d *drawer) shape() string {
	n := len(d.nodes)
	sizes := []int{1}
	if (n-1)/2 > 1 {
		sizes = append(sizes, (n-1)/2)
	}
	if n >= 3 {
		sizes = append(sizes, n/2+1)
	}
	k := sizes[d.rng.IntN(len(sizes))]
	first := d.one()
	chosen := []string{first}
	for _, i := range d.rng.Perm(n) {
		if len(chosen) == k {
			break
		}
		if d.nodes[i] != first {
			chosen = append(chosen, d.nodes[i])
		}
	}
	sort.Slice(chosen, func(i, j int) bool { return naturalLess(chosen[i], chosen[j]) })
	return strings.Join(chosen, ",")
}

// pick is one of choices.
func (d *drawer) pick(choices ...string) string { return choices[d.rng.IntN(len(choices))] }

var errNoTTL = errors.New("uses a ttl-relative duration (xttl) but the run has no lock ttl")
