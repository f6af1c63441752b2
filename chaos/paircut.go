package chaos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/infra"
)

// PairCutEnv is a TopologyEnv that can partition pairs of its nodes from
// each other (*infra.Env; docker provider): partition-pair and isolate
// need it.
type PairCutEnv interface {
	TopologyEnv
	CutPairs(ctx context.Context, pairs ...[2]string) (*infra.Cut, error)
	CanCutPairs() (bool, string)
}

// pairCutEnv returns env as a PairCutEnv that can cut pairs now, or an
// error saying why not.
func pairCutEnv(env Env, kind string) (PairCutEnv, error) {
	t, err := topologyEnv(env, kind)
	if err != nil {
		return nil, err
	}
	pc, ok := t.(PairCutEnv)
	if !ok {
		return nil, fmt.Errorf("%s: %w", kind, infra.ErrPairCutUnsupported)
	}
	if ok, why := pc.CanCutPairs(); !ok {
		return nil, fmt.Errorf("%s: %s", kind, why)
	}
	return pc, nil
}

// rolePrimary is the target word for the node that is primary when the
// fault starts.
const rolePrimary = "primary"

// checkPairName checks one node name of a pair fault's target on the
// environment (or on paper): a node, or "primary".
func checkPairName(env Env, name string) error {
	if strings.EqualFold(name, rolePrimary) {
		return nil
	}
	nodes, err := ResolveNodes(env, name)
	if err != nil {
		return err
	}
	if len(nodes) != 1 || nodes[0].Name() != name {
		return fmt.Errorf("%q is not one node name (a pair names two nodes, or primary)", name)
	}
	return nil
}

// resolvePairName resolves "primary" to the current primary's name.
func resolvePairName(ctx context.Context, env TopologyEnv, name string) (string, error) {
	if !strings.EqualFold(name, rolePrimary) {
		return name, nil
	}
	p, err := env.Primary(ctx)
	if err != nil {
		return "", fmt.Errorf("find the primary: %w", err)
	}
	return p.Name(), nil
}

// pairFault partitions pairs of topology nodes from each other (both
// directions; infra.Env.CutPairs), resolved when it starts; Heal removes
// exactly its rules. partition-pair and isolate are its two grammars.
type pairFault struct {
	kind, target string
	env          PairCutEnv
	// pairs resolves the target to node pairs when the fault starts.
	resolve func(ctx context.Context) ([][2]string, error)

	pairs [][2]string
	cut   *infra.Cut
}

func (f *pairFault) Kind() string { return f.kind }

// Nodes are the nodes of the cut pairs (once started), in natural order.
func (f *pairFault) Nodes() []infra.Node {
	var out []infra.Node
	for _, name := range f.nodeNames() {
		if n, ok := f.env.Node(name); ok {
			out = append(out, n)
		}
	}
	return out
}

func (f *pairFault) nodeNames() []string {
	var out []string
	for _, p := range f.pairs {
		for _, n := range p {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		if naturalLess(a, b) {
			return -1
		}
		return 1
	})
	return out
}

// Targets are the cut nodes once started, else the target as written.
func (f *pairFault) Targets() []string {
	if len(f.pairs) == 0 {
		if f.target == "" {
			return []string{rolePrimary}
		}
		return strings.Split(f.target, ",")
	}
	return f.nodeNames()
}

func (f *pairFault) Start(ctx context.Context) error {
	pairs, err := f.resolve(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", f.kind, err)
	}
	f.pairs = pairs
	cut, err := f.env.CutPairs(ctx, pairs...)
	f.cut = cut // a partial cut is healed by CutPairs itself; Heal retries what is left
	if err != nil {
		return fmt.Errorf("%s: %w", f.kind, err)
	}
	return nil
}

// pairHealTimeout bounds a pair fault's heal.
const pairHealTimeout = 30 * time.Second

func (f *pairFault) Heal(ctx context.Context) error {
	if f.cut == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pairHealTimeout)
	defer cancel()
	return f.cut.Heal(ctx)
}

// Report names the cut pairs.
func (f *pairFault) Report() Report {
	var ps []string
	for _, p := range f.pairs {
		ps = append(ps, p[0]+"|"+p[1])
	}
	return Report{Attrs: map[string]string{"pairs": strings.Join(ps, ",")}}
}

// NeedsPairCut lists the kinds of s that cut pairs of topology nodes
// (sorted, without duplicates): a run whose provider cannot (local) must
// refuse them.
func NeedsPairCut(s Schedule) []string {
	var out []string
	for _, spec := range s {
		k, err := LookupKind(spec.Kind)
		if err == nil && k.PairCut && !slices.Contains(out, k.Name) {
			out = append(out, k.Name)
		}
	}
	slices.Sort(out)
	return out
}
