package txn_test

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/checker"
	"github.com/faultline-dev/faultline/impl/txn"
)

// BenchmarkTransfer measures one transfer end to end per implementation,
// one client, direct to the servers (no proxy), single-db first: each
// result reports its ratio to single-db ("x-single-db") and the p50 of
// every phase in µs. For outbox only the local commit is on the path; the
// credit is asynchronous.
func BenchmarkTransfer(b *testing.B) {
	needEnv(b)
	var baseline float64
	names := []string{"single-db", "2pc", "tcc", "saga", "outbox"}
	for _, name := range names {
		b.Run(name, func(b *testing.B) {
			info, err := txn.Lookup(name)
			if err != nil {
				b.Fatal(err)
			}
			ep := testEnv.direct
			if _, err := txn.Setup(ctxFor(b, 60*time.Second), ep, accountsPerNode, 1_000_000); err != nil {
				b.Fatal(err)
			}
			tr := newTransferer(b, name, ep, txn.Options{})
			r := rand.New(rand.NewPCG(1, 2))
			ctx := ctxFor(b, 10*time.Minute)
			phases := map[string][]float64{}
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				out, err := tr.Transfer(ctx, randomTransfer(r, fmt.Sprintf("b%d", i), info.SingleNode))
				if err != nil {
					b.Fatalf("transfer %d: %v", i, err)
				}
				for _, p := range out.Phases {
					phases[p.Name] = append(phases[p.Name], float64(p.Duration.Microseconds()))
				}
			}
			perOp := float64(time.Since(start).Nanoseconds()) / float64(b.N)
			b.StopTimer()
			if name == "single-db" {
				baseline = perOp
			} else if baseline > 0 {
				b.ReportMetric(perOp/baseline, "x-single-db")
			}
			for p, xs := range phases {
				sort.Float64s(xs)
				b.ReportMetric(xs[len(xs)/2], p+"-p50-µs")
			}
			if err := tr.Recover(ctx); err != nil {
				b.Fatal(err)
			}
			if name == "outbox" { // commit-to-apply delay of the asynchronous credit
				snap, err := txn.TakeSnapshot(ctx, ep)
				if err != nil {
					b.Fatal(err)
				}
				v := checker.OutboxDelivery(checker.BankInput{Impl: name, Snapshot: checkerSnapshot(b, snap)})
				b.ReportMetric(v.Measures["delay_ms_p50"], "apply-delay-p50-ms")
				b.ReportMetric(v.Measures["delay_ms_p99"], "apply-delay-p99-ms")
			}
		})
	}
}
