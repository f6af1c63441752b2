package reports

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// FuzzReadAndRender: whatever bytes a results.json and a history.jsonl
// hold, reading them gives a *results.ReadError or a *history.LineError,
// never a panic, and what reads renders without panicking. Its seed corpus
// (testdata/fuzz/FuzzReadAndRender) runs with every go test.
func FuzzReadAndRender(f *testing.F) {
	f.Add([]byte(`{"schema":1}`), []byte(nil))
	f.Add([]byte(`{"schema":1,"impls":[{"name":"a","ops":{"cycle":{"count":3,"ok":3,"n":3,"p50_us":10,"p99_us":30,"max_us":40}}}]}`),
		[]byte(`{"index":0,"time":1,"type":"invoke","process":0,"impl":"a","f":"cycle"}`+"\n"+`{"index":1,"time":9,"type":"ok","process":0,"impl":"a","f":"cycle"}`))
	f.Fuzz(func(t *testing.T, resBytes, histBytes []byte) {
		res, err := results.Decode(bytes.NewReader(resBytes))
		if err != nil {
			var re *results.ReadError
			if !errors.As(err, &re) {
				t.Fatalf("Decode error %T %v, want *results.ReadError", err, err)
			}
			return
		}
		run := &Run{Results: res}
		if len(histBytes) > 0 {
			tr, err := ReadTrace(bytes.NewReader(histBytes), res)
			var le *history.LineError
			if err != nil && !errors.As(err, &le) {
				t.Fatalf("ReadTrace error %T %v, want *history.LineError", err, err)
			}
			run.Trace = tr
		}
		_ = Render(io.Discard, run) // an error is fine; a panic is not
	})
}
