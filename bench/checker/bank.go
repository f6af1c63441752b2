package checker

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/bench/results"
)

// Bank checker names (results.Verdict.Checker).
const (
	ConservationName   = "conservation"
	NoNegativeName     = "no-negative-balance"
	NoPreparedLeftName = "no-prepared-left"
	NoFrozenLeftName   = "no-frozen-left"
	TCCAnomaliesName   = "tcc-anomalies"
	OutboxDeliveryName = "outbox-delivery"
)

// BankTransfer is one attempted transfer and how it ended.
type BankTransfer struct {
	Transfer Transfer
	// Status is StatusOK, StatusFail or StatusInfo ("ok", "fail",
	// "info", as the history types): info transfers may or may not have
	// moved money.
	Status string
	Error  string
	Time   int64 // ns since run start of its completion
	Index  int64 // history index of its completion (-1: none)
}

// BankInput is what the bank checkers read: the state after quiescence and
// Recover, and every transfer the workload attempted.
type BankInput struct {
	Impl string
	// Checks are the checks the implementation asks for beyond the common
	// ones (tcc-anomalies, outbox-delivery; its txn.Info.Checks).
	Checks    []string
	Initial   map[Account]int64 // every account's initial balance
	Transfers []BankTransfer
	Snapshot  BankSnapshot
	// FrozenTimeout: a TCC reservation open longer than this at snapshot
	// time is a violation (0: any open reservation is).
	FrozenTimeout time.Duration
	// MaxViolations caps the counterexamples kept per verdict (0 = 20).
	MaxViolations int
	// MaxInfoPerComponent bounds the exact search over indeterminate
	// transfers linking accounts (0 = 16); beyond it the verdict may be
	// unknown, never a false alarm.
	MaxInfoPerComponent int
}

func (in BankInput) maxV() int {
	if in.MaxViolations > 0 {
		return in.MaxViolations
	}
	return 20
}

func bankVerdict(name string, in BankInput, vs []results.Violation, unknown bool, summary string, m map[string]float64) results.Verdict {
	v := results.Verdict{Checker: name, Impl: in.Impl, Valid: results.Valid, Summary: summary, Measures: m}
	switch {
	case len(vs) > 0:
		v.Valid = results.Invalid
	case unknown:
		v.Valid = results.Unknown
	}
	v.Count = len(vs)
	if len(vs) > in.maxV() {
		vs = vs[:in.maxV()]
	}
	v.Violations = vs
	return v
}

// Bank runs every bank checker: conservation, no-negative-balance,
// no-prepared-left, no-frozen-left, and tcc-anomalies and
// outbox-delivery when the implementation asks for them (in.Checks) or
// the snapshot shows the protocol. Never keyed on a name.
func Bank(in BankInput) []results.Verdict {
	out := []results.Verdict{Conservation(in), NoNegative(in), NoPreparedLeft(in), NoFrozenLeft(in)}
	if hasTCC(in.Snapshot) || slices.Contains(in.Checks, TCCAnomaliesName) {
		out = append(out, TCCAnomalies(in))
	}
	if len(in.Snapshot.Outbox) > 0 || len(in.Snapshot.Inbox) > 0 || slices.Contains(in.Checks, OutboxDeliveryName) {
		out = append(out, OutboxDelivery(in))
	}
	return out
}

func transferString(bt BankTransfer) string {
	t := bt.Transfer
	return fmt.Sprintf("%s (%s, %s→%s, %d)", t.ID, bt.Status, t.From, t.To, t.Amount)
}

// Conservation checks that the total money (balance + frozen: a TCC
// reservation still belongs to its owner) equals the initial total, and
// that every account's money equals its initial balance plus the effect of
// the acknowledged transfers, plus some choice of indeterminate ones (each
// applied entirely or not at all). Failed transfers must not have moved
// money. Counterexamples name the accounts, the unaccounted amount and the
// transfers that could explain it.
func Conservation(in BankInput) results.Verdict {
	s := in.Snapshot
	owned := map[Account]int64{}
	for _, a := range s.Accounts {
		owned[a.Account] = a.Balance + a.Frozen
	}
	var vs []results.Violation
	var initTotal, total int64
	for a, v := range in.Initial {
		initTotal += v
		if _, ok := owned[a]; !ok {
			vs = append(vs, results.Violation{Kind: "account-missing", Keys: []string{a.String()},
				Description: fmt.Sprintf("account %s (initial %d) is missing from the snapshot", a, v)})
		}
	}
	for _, v := range owned {
		total += v
	}
	// diff = actual - (initial + acknowledged transfers).
	diff := map[Account]int64{}
	for a, v := range owned {
		diff[a] = v - in.Initial[a]
	}
	touching := map[Account][]int{}
	var info []int
	for i, bt := range in.Transfers {
		t := bt.Transfer
		touching[t.From] = append(touching[t.From], i)
		touching[t.To] = append(touching[t.To], i)
		switch bt.Status {
		case StatusOK:
			diff[t.From] += t.Amount
			diff[t.To] -= t.Amount
		case StatusInfo:
			info = append(info, i)
		}
	}
	m := map[string]float64{"total": float64(total), "initial_total": float64(initTotal),
		"transfers_ok": 0, "transfers_fail": 0, "transfers_info": float64(len(info))}
	for _, bt := range in.Transfers {
		switch bt.Status {
		case StatusOK:
			m["transfers_ok"]++
		case StatusFail:
			m["transfers_fail"]++
		}
	}
	if total != initTotal {
		kind, word := "money-created", "created"
		if total < initTotal {
			kind, word = "money-destroyed", "destroyed"
		}
		d := total - initTotal
		vs = append(vs, results.Violation{Kind: kind,
			Description: fmt.Sprintf("total money %d, initially %d: %d %s (every transfer, even an indeterminate one, must move money on both sides or neither)%s",
				total, initTotal, abs(d), word, halfApplied(in, diff))})
	}
	// Components of accounts linked by indeterminate transfers.
	parent := map[Account]Account{}
	var find func(a Account) Account
	find = func(a Account) Account {
		p, ok := parent[a]
		if !ok || p == a {
			parent[a] = a
			return a
		}
		r := find(p)
		parent[a] = r
		return r
	}
	for _, i := range info {
		t := in.Transfers[i].Transfer
		parent[find(t.From)] = find(t.To)
	}
	comps := map[Account][]Account{}
	compInfo := map[Account][]int{}
	for a := range diff {
		r := find(a)
		comps[r] = append(comps[r], a)
	}
	for _, i := range info {
		r := find(in.Transfers[i].Transfer.From)
		compInfo[r] = append(compInfo[r], i)
	}
	limit := in.MaxInfoPerComponent
	if limit <= 0 {
		limit = 16
	}
	unknown := false
	roots := make([]Account, 0, len(comps))
	for r := range comps {
		roots = append(roots, r)
	}
	sort.Slice(roots, func(i, j int) bool { return less(roots[i], roots[j]) })
	for _, r := range roots {
		accts := comps[r]
		sort.Slice(accts, func(i, j int) bool { return less(accts[i], accts[j]) })
		ts := compInfo[r]
		if len(ts) > limit {
			// Too many to search jointly: per account, can some subset of its
			// indeterminate transfers explain its difference?
			for _, a := range accts {
				if diff[a] == 0 {
					continue
				}
				var ds []int64
				for _, i := range touching[a] {
					if in.Transfers[i].Status == StatusInfo {
						ds = append(ds, delta(in.Transfers[i].Transfer, a))
					}
				}
				if len(ds) > 20 {
					unknown = true
					continue
				}
				if !subsetSum(ds, diff[a]) {
					vs = append(vs, mismatch(in, a, diff[a], touching[a]))
				}
			}
			continue
		}
		best, bestBad := -1, math.MaxInt
		for mask := 0; mask < 1<<len(ts); mask++ {
			bad := 0
			for _, a := range accts {
				d := diff[a]
				for k, i := range ts {
					if mask&(1<<k) != 0 {
						d -= delta(in.Transfers[i].Transfer, a)
					}
				}
				if d != 0 {
					bad++
				}
			}
			if bad < bestBad {
				best, bestBad = mask, bad
			}
			if bad == 0 {
				break
			}
		}
		if bestBad == 0 {
			continue
		}
		for _, a := range accts {
			d := diff[a]
			for k, i := range ts {
				if best&(1<<k) != 0 {
					d -= delta(in.Transfers[i].Transfer, a)
				}
			}
			if d != 0 {
				vs = append(vs, mismatch(in, a, d, touching[a]))
			}
		}
	}
	summary := fmt.Sprintf("total %d of %d; %d ok, %d failed, %d indeterminate transfers; %d violations",
		total, initTotal, int(m["transfers_ok"]), int(m["transfers_fail"]), len(info), len(vs))
	return bankVerdict(ConservationName, in, vs, unknown, summary, m)
}

// halfApplied names indeterminate or failed transfers whose source shows
// the debit and whose target does not show the credit, or the reverse.
func halfApplied(in BankInput, diff map[Account]int64) string {
	var parts []string
	for _, bt := range in.Transfers {
		if bt.Status == StatusOK {
			continue
		}
		t := bt.Transfer
		df, dt := diff[t.From], diff[t.To]
		switch {
		case df == -t.Amount && dt == 0:
			parts = append(parts, fmt.Sprintf("transfer %s debited %s but never credited %s", transferString(bt), t.From, t.To))
		case df == 0 && dt == t.Amount:
			parts = append(parts, fmt.Sprintf("transfer %s credited %s but never debited %s", transferString(bt), t.To, t.From))
		}
		if len(parts) >= 5 {
			break
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, "; ")
}

func mismatch(in BankInput, a Account, d int64, touch []int) results.Violation {
	word := "more"
	if d < 0 {
		word = "less"
	}
	v := results.Violation{Kind: "account-mismatch", Keys: []string{a.String()}}
	var cands []string
	for _, i := range touch {
		bt := in.Transfers[i]
		if bt.Transfer.Amount == abs(d) || bt.Transfer.Amount*2 == abs(d) {
			cands = append(cands, transferString(bt))
			v.Tokens = append(v.Tokens, bt.Transfer.ID)
			if bt.Index >= 0 {
				v.Indexes = append(v.Indexes, bt.Index)
			}
			if v.Time == 0 {
				v.Time = bt.Time
			}
		}
		if len(cands) >= 5 {
			break
		}
	}
	v.Description = fmt.Sprintf("account %s holds %d %s than its initial balance plus the acknowledged transfers (and any choice of indeterminate ones) explain",
		a, abs(d), word)
	if len(cands) > 0 {
		v.Description += "; transfers of that amount touching it: " + strings.Join(cands, ", ")
	}
	return v
}

func delta(t Transfer, a Account) int64 {
	var d int64
	if t.From == a {
		d -= t.Amount
	}
	if t.To == a {
		d += t.Amount
	}
	return d
}

func subsetSum(ds []int64, target int64) bool {
	sums := map[int64]bool{0: true}
	for _, d := range ds {
		next := make(map[int64]bool, 2*len(sums))
		for s := range sums {
			next[s] = true
			next[s+d] = true
		}
		sums = next
	}
	return sums[target]
}

func less(a, b Account) bool {
	if a.Node != b.Node {
		return a.Node < b.Node
	}
	return a.ID < b.ID
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// NoNegative checks that no balance, frozen or pending amount is negative.
func NoNegative(in BankInput) results.Verdict {
	var vs []results.Violation
	for _, a := range in.Snapshot.Accounts {
		for _, f := range []struct {
			name string
			v    int64
		}{{"balance", a.Balance}, {"frozen", a.Frozen}, {"pending", a.Pending}} {
			if f.v < 0 {
				vs = append(vs, results.Violation{Kind: "negative-" + f.name, Keys: []string{a.Account.String()},
					Description: fmt.Sprintf("account %s has %s %d", a.Account, f.name, f.v)})
			}
		}
	}
	return bankVerdict(NoNegativeName, in, vs, false, fmt.Sprintf("%d accounts, %d negative amounts", len(in.Snapshot.Accounts), len(vs)),
		map[string]float64{"negative": float64(len(vs))})
}

// NoPreparedLeft checks that pg_prepared_xacts is empty on every node and
// that no TCC/saga global transaction is unfinished.
func NoPreparedLeft(in BankInput) results.Verdict {
	s := in.Snapshot
	var vs []results.Violation
	var maxAge float64
	for _, p := range s.Prepared {
		age := s.TakenAt.Sub(p.Prepared)
		maxAge = math.Max(maxAge, age.Seconds()*1000)
		vs = append(vs, results.Violation{Kind: "prepared-left", Tokens: []string{p.GID},
			Description: fmt.Sprintf("prepared transaction %q on %s still in doubt after recovery (prepared %s before the snapshot); it holds its row locks",
				p.GID, NodeName(p.Node), age.Round(time.Millisecond))})
	}
	unfinished := 0
	for _, g := range s.Globals {
		switch g.State {
		case "trying", "confirming", "cancelling", "running", "compensating":
			unfinished++
			vs = append(vs, results.Violation{Kind: "unfinished-global", Tokens: []string{g.TransferID, g.GID},
				Description: fmt.Sprintf("%s transaction %s of transfer %s still %q after recovery", g.Protocol, g.GID, g.TransferID, g.State)})
		}
	}
	return bankVerdict(NoPreparedLeftName, in, vs, false,
		fmt.Sprintf("%d prepared transactions and %d unfinished global transactions left", len(s.Prepared), unfinished),
		map[string]float64{"prepared_left": float64(len(s.Prepared)), "prepared_max_age_ms": maxAge, "unfinished_globals": float64(unfinished)})
}

type branchKey struct {
	node   int
	gid    string
	branch string
}

func hasTCC(s BankSnapshot) bool {
	for _, e := range s.Journal {
		if e.Op == OpTry || e.Op == OpConfirm || e.Op == OpCancel {
			return true
		}
	}
	return false
}

// tccGroups is the TCC journal grouped per branch, in commit order,
// without copying a row: the branches in the order their first row
// committed (per node, by seq), each a run of indexes into the journal.
type tccGroups struct {
	keys []branchKey
	idx  []int32 // journal indexes, one run per branch, each in commit order
	end  []int32 // end[g]: where branch g's run ends in idx
}

// rows are branch g's journal indexes, in commit order.
func (t *tccGroups) rows(g int) []int32 {
	start := int32(0)
	if g > 0 {
		start = t.end[g-1]
	}
	return t.idx[start:t.end[g]]
}

// tccBranches groups the TCC journal per branch, in commit order.
func tccBranches(s BankSnapshot) tccGroups {
	js := s.Journal
	order := make([]int32, 0, len(js))
	for i := range js {
		if op := js[i].Op; op == OpTry || op == OpConfirm || op == OpCancel {
			order = append(order, int32(i))
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := &js[order[i]], &js[order[j]]
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.Seq < b.Seq
	})
	var t tccGroups
	ids := map[branchKey]int32{}
	group := make([]int32, len(order))
	for n, i := range order {
		e := &js[i]
		k := branchKey{e.Node, e.GID, e.Branch}
		g, ok := ids[k]
		if !ok {
			g = int32(len(t.keys))
			ids[k] = g
			t.keys = append(t.keys, k)
		}
		group[n] = g
	}
	// A stable counting sort by branch: each run keeps commit order.
	t.end = make([]int32, len(t.keys))
	for _, g := range group {
		t.end[g]++
	}
	next := make([]int32, len(t.keys))
	sum := int32(0)
	for g := range t.end {
		next[g] = sum
		sum += t.end[g]
		t.end[g] = sum
	}
	t.idx = make([]int32, len(order))
	for n, i := range order {
		t.idx[next[group[n]]] = i
		next[group[n]]++
	}
	return t
}

// NoFrozenLeft checks that no TCC reservation stays open past
// FrozenTimeout (per branch: applied tries minus applied confirms and
// cancels), and that each account's frozen and pending amounts equal its
// open reservations (so a double confirm or an empty cancel that moved
// money shows).
func NoFrozenLeft(in BankInput) results.Verdict {
	s := in.Snapshot
	groups := tccBranches(s)
	wantFrozen := map[Account]int64{}
	wantPending := map[Account]int64{}
	var vs []results.Violation
	open := 0
	for g, k := range groups.keys {
		n := 0
		var at time.Time
		var e0 *JournalRow
		for _, j := range groups.rows(g) {
			e := &s.Journal[j]
			if !e.Applied {
				continue
			}
			switch e.Op {
			case OpTry:
				n++
				at, e0 = e.At, e
			case OpConfirm, OpCancel:
				n--
			}
		}
		if n <= 0 {
			continue
		}
		a := Account{Node: k.node, ID: e0.Account}
		if k.branch == BranchDebit {
			wantFrozen[a] += int64(n) * e0.Amount
		} else {
			wantPending[a] += int64(n) * e0.Amount
		}
		age := s.TakenAt.Sub(at)
		if age >= in.FrozenTimeout {
			open++
			vs = append(vs, results.Violation{Kind: "frozen-left", Keys: []string{a.String()}, Tokens: []string{k.gid},
				Description: fmt.Sprintf("%s branch of %s reserved %d on %s and was never confirmed or cancelled (open %s, timeout %s)",
					k.branch, k.gid, int64(n)*e0.Amount, a, age.Round(time.Millisecond), in.FrozenTimeout)})
		}
	}
	for _, a := range s.Accounts {
		if a.Frozen != wantFrozen[a.Account] || a.Pending != wantPending[a.Account] {
			vs = append(vs, results.Violation{Kind: "frozen-mismatch", Keys: []string{a.Account.String()},
				Description: fmt.Sprintf("account %s has frozen %d and pending %d, but its open reservations account for frozen %d and pending %d",
					a.Account, a.Frozen, a.Pending, wantFrozen[a.Account], wantPending[a.Account])})
		}
	}
	return bankVerdict(NoFrozenLeftName, in, vs, false, fmt.Sprintf("%d reservations open past %s, %d violations", open, in.FrozenTimeout, len(vs)),
		map[string]float64{"frozen_left": float64(open)})
}

// TCC anomaly kinds.
const (
	AnomalyEmptyCancel     = "empty-cancel"
	AnomalyRepeatedConfirm = "repeated-confirm"
	AnomalyRepeatedCancel  = "repeated-cancel"
	AnomalyHangingTry      = "hanging-try"
)

// TCCAnomalies counts, per kind, the TCC anomalies that reached the
// participants (journal): empty cancel (a cancel with no applied try
// before it), repeated confirm / cancel, hanging try (a try after its
// cancel). Neutralised by a barrier they are measures; applied (money
// moved) they are violations, each naming the transaction and branch.
func TCCAnomalies(in BankInput) results.Verdict {
	groups := tccBranches(in.Snapshot)
	seen := map[string]float64{}
	harm := map[string]float64{}
	var vs []results.Violation
	note := func(kind string, k branchKey, e *JournalRow, applied bool) {
		seen[kind]++
		if !applied {
			return
		}
		harm[kind]++
		vs = append(vs, results.Violation{Kind: kind, Keys: []string{Account{Node: k.node, ID: e.Account}.String()}, Tokens: []string{k.gid},
			Description: fmt.Sprintf("%s: %s %s of %s on %s applied %d (journal seq %d): no barrier stopped it",
				kind, k.branch, e.Op, k.gid, Account{Node: k.node, ID: e.Account}, e.Amount, e.Seq)})
	}
	for g, k := range groups.keys {
		tried, cancelled := false, false
		confirms, cancels := 0, 0
		for _, j := range groups.rows(g) {
			e := &in.Snapshot.Journal[j]
			switch e.Op {
			case OpTry:
				if cancelled {
					note(AnomalyHangingTry, k, e, e.Applied)
				} else if e.Applied {
					tried = true
				}
			case OpConfirm:
				if confirms > 0 {
					note(AnomalyRepeatedConfirm, k, e, e.Applied)
				}
				if e.Applied {
					confirms++
				} else if confirms == 0 {
					confirms = 1 // a barrier-skipped confirm means one ran before
				}
			case OpCancel:
				switch {
				case cancels > 0:
					note(AnomalyRepeatedCancel, k, e, e.Applied)
				case !tried:
					note(AnomalyEmptyCancel, k, e, e.Applied)
				}
				cancels++
				cancelled = true
			}
		}
	}
	m := map[string]float64{}
	for _, kind := range []string{AnomalyEmptyCancel, AnomalyRepeatedConfirm, AnomalyRepeatedCancel, AnomalyHangingTry} {
		m[kind] = seen[kind]
		m[kind+"_applied"] = harm[kind]
	}
	summary := fmt.Sprintf("empty-cancel %d (%d applied), repeated-confirm %d (%d), repeated-cancel %d (%d), hanging-try %d (%d)",
		int(seen[AnomalyEmptyCancel]), int(harm[AnomalyEmptyCancel]), int(seen[AnomalyRepeatedConfirm]), int(harm[AnomalyRepeatedConfirm]),
		int(seen[AnomalyRepeatedCancel]), int(harm[AnomalyRepeatedCancel]), int(seen[AnomalyHangingTry]), int(harm[AnomalyHangingTry]))
	return bankVerdict(TCCAnomaliesName, in, vs, false, summary, m)
}

// OutboxDelivery checks that every acknowledged transfer committed its
// message, every committed message was applied (delivered at least once),
// and none was applied twice (exactly once); it measures the
// commit-to-apply delay (outbox row insert to first applying credit, both
// database clocks) in milliseconds.
func OutboxDelivery(in BankInput) results.Verdict {
	s := in.Snapshot
	applied := map[string][]InboxRow{}
	skipped := 0
	for _, e := range s.Inbox {
		if e.Applied {
			applied[e.MsgID] = append(applied[e.MsgID], e)
		} else {
			skipped++
		}
	}
	rows := map[string]OutboxRow{}
	var vs []results.Violation
	var delays []float64
	dupPublished := 0
	for _, o := range s.Outbox {
		rows[o.MsgID] = o
		if o.Published > 1 {
			dupPublished++
		}
		as := applied[o.MsgID]
		switch {
		case len(as) == 0:
			state := "never marked sent"
			if !o.SentAt.IsZero() {
				state = "marked sent"
			}
			vs = append(vs, results.Violation{Kind: "not-delivered", Keys: []string{o.To.String()}, Tokens: []string{o.TransferID, o.MsgID},
				Description: fmt.Sprintf("message %s of transfer %s (credit %d to %s) committed but never applied (%s, published %d times)",
					o.MsgID, o.TransferID, o.Amount, o.To, state, o.Published)})
		case len(as) > 1:
			vs = append(vs, results.Violation{Kind: "applied-twice", Keys: []string{o.To.String()}, Tokens: []string{o.TransferID, o.MsgID},
				Description: fmt.Sprintf("message %s of transfer %s credited %d to %s %d times (published %d times): the consumer is not idempotent",
					o.MsgID, o.TransferID, o.Amount, o.To, len(as), o.Published)})
		}
		if len(as) > 0 {
			delays = append(delays, float64(as[0].At.Sub(o.CreatedAt).Microseconds())/1000)
		}
	}
	for _, bt := range in.Transfers {
		if bt.Status != StatusOK {
			continue
		}
		if _, ok := rows[MsgID(bt.Transfer.ID)]; !ok {
			vs = append(vs, results.Violation{Kind: "message-lost", Tokens: []string{bt.Transfer.ID}, Time: bt.Time,
				Description: fmt.Sprintf("acknowledged transfer %s has no outbox message", transferString(bt))})
		}
	}
	sort.Float64s(delays)
	m := map[string]float64{"messages": float64(len(s.Outbox)), "duplicates_published": float64(dupPublished),
		"duplicates_skipped": float64(skipped)}
	if len(delays) > 0 {
		m["delay_ms_p50"] = results.Percentile(delays, 50)
		m["delay_ms_p90"] = results.Percentile(delays, 90)
		m["delay_ms_p99"] = results.Percentile(delays, 99)
		m["delay_ms_max"] = delays[len(delays)-1]
	}
	return bankVerdict(OutboxDeliveryName, in, vs, false,
		fmt.Sprintf("%d messages, %d published more than once, %d duplicates skipped, %d violations", len(s.Outbox), dupPublished, skipped, len(vs)), m)
}
