package txn_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/faultline-dev/faultline/infra"
)

// testEnv is shared by every test: 2 PostgreSQL (pg-1 = A, pg-2 = B) and 1
// Redis, started once in TestMain.
var testEnv struct {
	env     *infra.Env
	err     error
	direct  txn.Endpoints
	proxied txn.Endpoints
}

const (
	accountsPerNode = 10
	initialBalance  = 1000
)

func TestMain(m *testing.M) {
	flag.Parse()
	var env *infra.Env
	if !testing.Short() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		env, testEnv.err = infra.Up(ctx, infra.Spec{Nodes: infra.Nodes(1, 2), Provider: "local"})
		cancel()
		if testEnv.err == nil {
			testEnv.env = env
			for _, n := range env.ByKind(infra.Postgres) {
				testEnv.direct.Participants = append(testEnv.direct.Participants, txn.PostgresEndpoint{Name: n.Name(), DSN: n.DirectDSN()})
				testEnv.proxied.Participants = append(testEnv.proxied.Participants, txn.PostgresEndpoint{Name: n.Name(), DSN: n.DSN()})
			}
			for _, n := range env.ByKind(infra.Redis) {
				testEnv.direct.Redis = append(testEnv.direct.Redis, txn.RedisEndpoint{Name: n.Name(), Addr: n.DirectAddr(), Password: n.Password()})
				testEnv.proxied.Redis = append(testEnv.proxied.Redis, txn.RedisEndpoint{Name: n.Name(), Addr: n.Addr(), Password: n.Password()})
			}
		}
	}
	code := m.Run()
	if env != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := env.Close(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "impl/txn: closing the test environment:", err)
		}
		cancel()
	}
	os.Exit(code)
}

func needEnv(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs real PostgreSQL and Redis servers (not in -short mode)")
	}
	if testEnv.err != nil {
		tb.Fatalf("test environment did not start: %v", testEnv.err)
	}
}

func ctxFor(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// bank resets the bank and returns its layout.
func bank(tb testing.TB, ep txn.Endpoints) txn.Layout {
	tb.Helper()
	lay, err := txn.Setup(ctxFor(tb, 60*time.Second), ep, accountsPerNode, initialBalance)
	if err != nil {
		tb.Fatalf("setup: %v", err)
	}
	return lay
}

func newTransferer(tb testing.TB, name string, ep txn.Endpoints, opt txn.Options) txn.Transferer {
	tb.Helper()
	info, err := txn.Lookup(name)
	if err != nil {
		tb.Fatal(err)
	}
	tr, err := info.New(ctxFor(tb, 10*time.Second), ep, opt)
	if err != nil {
		tb.Fatalf("%s: new: %v", name, err)
	}
	tb.Cleanup(func() { _ = tr.Close() })
	return tr
}

// ledger records transfers and their outcome for the checker.
type ledger struct {
	mu sync.Mutex
	ts []checker.BankTransfer
}

func (l *ledger) do(ctx context.Context, tr txn.Transferer, t txn.Transfer) (txn.Outcome, error) {
	out, err := tr.Transfer(ctx, t)
	bt := checker.BankTransfer{Transfer: checkerTransfer(t), Status: txn.Classify(err), Index: -1}
	if err != nil {
		bt.Error = err.Error()
	}
	l.mu.Lock()
	bt.Index = int64(len(l.ts))
	l.ts = append(l.ts, bt)
	l.mu.Unlock()
	return out, err
}

// check recovers, snapshots and runs the bank checkers.
func check(tb testing.TB, impl string, tr txn.Transferer, ep txn.Endpoints, lay txn.Layout, l *ledger) (txn.Snapshot, map[string]results.Verdict) {
	tb.Helper()
	if err := tr.Recover(ctxFor(tb, 30*time.Second)); err != nil {
		tb.Fatalf("%s: recover: %v", impl, err)
	}
	snap, err := txn.TakeSnapshot(ctxFor(tb, 30*time.Second), ep)
	if err != nil {
		tb.Fatalf("snapshot: %v", err)
	}
	info, err := txn.Lookup(impl)
	if err != nil {
		tb.Fatal(err)
	}
	vs := checker.Bank(checker.BankInput{Impl: impl, Checks: info.Checks, Initial: checkerInitial(lay), Transfers: l.ts,
		Snapshot: checkerSnapshot(tb, snap), FrozenTimeout: 0}) // after Recover and quiescence nothing may stay reserved
	m := map[string]results.Verdict{}
	for _, v := range vs {
		m[v.Checker] = v
	}
	return snap, m
}

func requireValid(tb testing.TB, vs map[string]results.Verdict) {
	tb.Helper()
	for _, v := range vs {
		if v.Valid != results.Valid {
			tb.Errorf("%s %s: %s: %s %+v", v.Impl, v.Checker, v.Valid, v.Summary, v.Violations)
		}
	}
}

// randomTransfer moves 1..20 between a random account on A and one on B
// (both directions), or within one node when sameNode.
func randomTransfer(r *rand.Rand, id string, sameNode bool) txn.Transfer {
	from := txn.Account{Node: r.IntN(2), ID: 1 + r.IntN(accountsPerNode)}
	to := txn.Account{Node: 1 - from.Node, ID: 1 + r.IntN(accountsPerNode)}
	if sameNode {
		to.Node = from.Node
		for to.ID == from.ID {
			to.ID = 1 + r.IntN(accountsPerNode)
		}
	}
	return txn.Transfer{ID: id, From: from, To: to, Amount: 1 + r.Int64N(20)}
}

// The checker owns its record types (it decodes histories, never imports
// an implementation): these convert txn's, field for field through the
// JSON encoding the bank workload writes into a history.

func checkerTransfer(t txn.Transfer) checker.Transfer {
	return checker.Transfer{ID: t.ID, From: checker.Account(t.From), To: checker.Account(t.To), Amount: t.Amount}
}

func checkerInitial(lay txn.Layout) map[checker.Account]int64 {
	m := map[checker.Account]int64{}
	for a, v := range lay.Initial {
		m[checker.Account(a)] = v
	}
	return m
}

func checkerSnapshot(tb testing.TB, s txn.Snapshot) checker.BankSnapshot {
	tb.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		tb.Fatal(err)
	}
	var out checker.BankSnapshot
	if err := json.Unmarshal(b, &out); err != nil {
		tb.Fatal(err)
	}
	out.Decisions = len(s.Decisions)
	return out
}
