package reports

import (
	"bytes"
	"encoding/json"
	"testing"
)

func BenchmarkReadTrace(b *testing.B) {
	res, ops := buildFixture(lockFixture())
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range ops {
		_ = enc.Encode(&ops[i])
	}
	b.SetBytes(int64(buf.Len()))
	b.ReportMetric(float64(len(ops)), "lines")
	for b.Loop() {
		if _, err := ReadTrace(bytes.NewReader(buf.Bytes()), res); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRender(b *testing.B) {
	res, ops := buildFixture(lockFixture())
	run := NewRun(res, ops)
	for b.Loop() {
		var buf bytes.Buffer
		if err := Render(&buf, run); err != nil {
			b.Fatal(err)
		}
	}
}
