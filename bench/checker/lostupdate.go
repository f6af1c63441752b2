package checker

import (
	"fmt"
	"sort"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// LostUpdate compares each key's final counter (the resource's "final"
// entry, minus Attrs "initial" if given) with the increments the clients
// saw acknowledged: acked <= final <= acked + indeterminate must hold.
// final < acked means acknowledged increments were lost (Invalid, naming the
// acknowledged writes that wrote the same value: all but one of each such
// group were overwritten); final > acked + indeterminate means increments
// appeared that no client made (Invalid, kind "phantom-update"). Without a
// final entry for a key that was written, the verdict is Unknown.
func LostUpdate(h []history.Op, opt Options) results.Verdict {
	return lostUpdatePhase(NewPhase(h), opt)
}

func lostUpdatePhase(p *Phase, opt Options) results.Verdict {
	type tally struct {
		acked, indeterminate int64
		ackedOps             []*Operation // in the phase's operations
	}
	tallies := map[string]*tally{}
	get := func(k string) *tally {
		t := tallies[k]
		if t == nil {
			t = &tally{}
			tallies[k] = t
		}
		return t
	}
	for i := range p.Ops {
		o := &p.Ops[i]
		if o.F() != "write" {
			continue
		}
		t := get(o.Key())
		switch {
		case o.OK():
			t.acked++
			t.ackedOps = append(t.ackedOps, o)
		case o.Indeterminate():
			t.indeterminate++
		}
	}
	finals := map[string]history.Op{}
	for _, op := range p.Events {
		if op.Process == history.Resource && op.F == ResourceFinal && op.Value != nil {
			finals[op.Key] = op
			get(op.Key)
		}
	}
	keys := make([]string, 0, len(tallies))
	for k := range tallies {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var vs []results.Violation
	var missing []string
	var sumAcked, sumFinal, sumIndet, lost int64
	for _, key := range keys {
		t := tallies[key]
		f, ok := finals[key]
		if !ok {
			if t.acked+t.indeterminate > 0 {
				missing = append(missing, key)
			}
			continue
		}
		initial, _ := attrInt(f, "initial")
		final := *f.Value - initial
		sumAcked += t.acked
		sumIndet += t.indeterminate
		sumFinal += final
		switch {
		case final < t.acked:
			lost += t.acked - final
			v := results.Violation{
				Kind: "lost-update", Keys: []string{key}, Time: f.Time, Indexes: []int64{f.Index},
				Description: fmt.Sprintf("key %s: %d increments acknowledged, %d indeterminate, but the final counter is %d: %d acknowledged increments were lost",
					key, t.acked, t.indeterminate, final, t.acked-final),
			}
			dups := duplicateWrites(t.ackedOps)
			for i, o := range dups {
				if i == 10 {
					break
				}
				v.Processes = append(v.Processes, int(o.Process))
				v.Tokens = append(v.Tokens, o.InvokeToken())
				v.Indexes = append(v.Indexes, o.Invoke.Index)
			}
			if len(dups) > 0 {
				v.Time = dups[0].Invoke.Time
				v.Description += fmt.Sprintf("; e.g. p%d and p%d both wrote %s", dups[0].Process, dups[1].Process, valOf(dups[0].InvokeValue()))
			}
			vs = append(vs, v)
		case final > t.acked+t.indeterminate:
			vs = append(vs, results.Violation{
				Kind: "phantom-update", Keys: []string{key}, Time: f.Time, Indexes: []int64{f.Index},
				Description: fmt.Sprintf("key %s: final counter %d exceeds the %d acknowledged + %d indeterminate increments: increments no client made",
					key, final, t.acked, t.indeterminate),
			})
		}
	}
	summary := fmt.Sprintf("%d keys: %d increments acknowledged, %d indeterminate, final total %d", len(finals), sumAcked, sumIndet, sumFinal)
	if lost > 0 {
		summary += fmt.Sprintf(", %d lost", lost)
	}
	unknown := len(missing) > 0
	if unknown {
		summary += fmt.Sprintf("; no final counter recorded for keys %v", missing)
	}
	return verdict(LostUpdateName, opt, vs, unknown, summary, map[string]float64{
		"acked": float64(sumAcked), "indeterminate": float64(sumIndet), "final": float64(sumFinal), "lost": float64(lost),
	})
}

// duplicateWrites returns the acknowledged writes that wrote a value another
// acknowledged write also wrote, grouped by value in write order.
func duplicateWrites(ops []*Operation) []*Operation {
	byValue := map[int64][]*Operation{}
	var values []int64
	for _, o := range ops {
		v, ok := o.InvokeValue()
		if !ok {
			continue
		}
		if len(byValue[v]) == 0 {
			values = append(values, v)
		}
		byValue[v] = append(byValue[v], o)
	}
	var out []*Operation
	for _, v := range values {
		if len(byValue[v]) > 1 {
			out = append(out, byValue[v]...)
		}
	}
	return out
}
