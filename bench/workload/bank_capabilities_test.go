package workload

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/faultline-dev/faultline/infra"
)

// TestBankCapabilitiesNotNames registers my-outbox, the outbox under
// another name, and runs both through the bank on real servers with the
// same options: the workload must start the same shared services (one
// relay/consumer for every client), accept the same --txn-opt, and the
// checker must give the same verdicts — nothing keys on a name.
func TestBankCapabilitiesNotNames(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and Redis servers")
	}
	outbox, err := txn.Lookup("outbox")
	if err != nil {
		t.Fatal(err)
	}
	mine := outbox
	mine.Name, mine.Doc = "my-outbox", "a user's outbox, registered under its own name"
	if _, err := txn.Lookup(mine.Name); err != nil {
		txn.Register(mine)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := infra.Up(ctx, infra.Spec{Nodes: infra.Nodes(1, 2), Provider: "local"})
	if err != nil {
		t.Fatalf("environment: %v", err)
	}
	defer env.Close(context.Background())
	wl, err := Lookup(BankName)
	if err != nil {
		t.Fatal(err)
	}
	run := func(impl string) (shared bool, checks []string, verdicts map[string]results.Validity) {
		t.Helper()
		var buf bytes.Buffer
		h := recorder.NewHistory(&buf, time.Now())
		h.SetImpl(impl)
		s, err := wl.Start(ctx, Target{Impl: impl, Env: env, Direct: true, OpTimeout: time.Second, Faults: NewFaults(),
			Opts: map[string]string{"accounts": "10", "readers": "0"}, Params: map[string]string{"relay-crash": "1"}})
		if err != nil {
			t.Fatalf("%s: start: %v", impl, err)
		}
		defer s.Close()
		stats := recorder.NewStats(h, wl.Kinds(), time.Now())
		var trs []txn.Transferer
		for proc := range 2 {
			c, err := s.Client(ctx, proc, 1)
			if err != nil {
				t.Fatalf("%s: client: %v", impl, err)
			}
			trs = append(trs, c.(*bankClient).tr)
			w := stats.Worker(proc, impl)
			for range 20 {
				m := w.Mark()
				out := c.Step(ctx, w)
				w.Done(0, m, out.Type, out.Err)
			}
			c.Close()
		}
		shared = trs[0] == trs[1] && s.(*bankSession).shared == trs[0]
		if err := s.Finish(ctx, h, 99); err != nil {
			t.Fatalf("%s: finish: %v", impl, err)
		}
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		ops, err := history.ReadAll(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		verdicts = map[string]results.Validity{}
		for _, v := range wl.Check(history.ForImpl(ops, impl), CheckConfig{Impl: impl}).Verdicts {
			verdicts[v.Checker] = v.Valid
			checks = append(checks, v.Checker)
		}
		slices.Sort(checks)
		return shared, checks, verdicts
	}
	sharedA, checksA, vA := run("outbox")
	sharedB, checksB, vB := run("my-outbox")
	if !sharedA || !sharedB {
		t.Errorf("shared relay/consumer service: outbox %v, my-outbox %v; want both (Info.Services)", sharedA, sharedB)
	}
	if !slices.Equal(checksA, checksB) || !slices.Contains(checksB, checker.OutboxDeliveryName) {
		t.Errorf("checks: outbox %v, my-outbox %v; want the same, with %s", checksA, checksB, checker.OutboxDeliveryName)
	}
	for k, v := range vA {
		if vB[k] != v || v != results.Valid {
			t.Errorf("%s: outbox %v, my-outbox %v; want both valid", k, v, vB[k])
		}
	}
}
