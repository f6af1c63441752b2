package checker

import (
	"bytes"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// FuzzLockCheckers: arbitrary history lines, read by the history reader
// the offline checks use (`faultline check`), never panic the lock
// checkers, and every verdict they return is one of the three validities.
// Lines the reader refuses end the history there, as a truncated file
// would. The seed corpus (testdata/fuzz/FuzzLockCheckers: excerpts of real
// runs, a mutant under holder-pause included, and edge cases) runs in every
// `go test`; explore with go test -fuzz FuzzLockCheckers ./bench/checker.
func FuzzLockCheckers(f *testing.F) {
	f.Add([]byte(`{"index":0,"time":1,"type":"invoke","process":0,"impl":"a","f":"acquire","key":"k0"}` + "\n" +
		`{"index":1,"time":2,"type":"ok","process":0,"impl":"a","f":"acquire","key":"k0","token":"t","fence":1}` + "\n"))
	f.Add([]byte("{\"index\":0}\n{not json\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, _ := history.ReadAll(bytes.NewReader(data))
		for _, ttl := range []time.Duration{0, 200 * time.Millisecond} {
			for _, v := range Locks(ops, Options{TTL: ttl, MaxViolations: 3}) {
				switch v.Valid {
				case results.Valid, results.Invalid, results.Unknown:
				default:
					t.Fatalf("%s: validity %q", v.Checker, v.Valid)
				}
				if len(v.Violations) > 3 {
					t.Fatalf("%s: %d counterexamples kept, cap 3", v.Checker, len(v.Violations))
				}
			}
		}
	})
}
