package reports

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// fixtureSpec describes a synthetic run: it tests rendering, not safety.
type fixtureSpec struct {
	workload string
	impls    []fixtureImpl
	phases   []string // op kinds of one cycle, in order
	perImpl  int64    // ns of measured phase per implementation
	workers  int
	// legacy: write no workload_info, as faultline did before it existed.
	legacy bool
}

// headline is the op kind of one whole iteration, as the real workloads
// name it.
func (s fixtureSpec) headline() string {
	if s.workload == "bank" {
		return "transfer"
	}
	return "cycle"
}

// info is the workload_info the runner would write for spec.
func (s fixtureSpec) info() *results.WorkloadInfo {
	info := &results.WorkloadInfo{Kind: results.KindLock, Headline: s.headline(), Ops: append([]string{s.headline()}, s.phases...)}
	if s.workload == "bank" {
		info.Kind, info.Phases = results.KindTxn, s.phases
		info.Measures = []results.MeasureInfo{
			{Checker: "no-prepared-left", Name: "in_doubt_ms_p50", Unit: results.UnitMS, Chart: results.ChartInDoubt},
			{Checker: "no-prepared-left", Name: "in_doubt_ms_max", Unit: results.UnitMS, Chart: results.ChartInDoubt},
		}
		return info
	}
	info.Measures = []results.MeasureInfo{
		{Checker: "liveness", Name: "recovery_ms_p50", Unit: results.UnitMS, Chart: results.ChartRecovery},
		{Checker: "liveness", Name: "recovery_ms_max", Unit: results.UnitMS, Chart: results.ChartRecovery},
		{Checker: "liveness", Name: "crashes", Unit: results.UnitCount},
	}
	return info
}

type fixtureImpl struct {
	name   string
	mutant bool
	baseUS float64 // median op latency
}

func lockFixture() fixtureSpec {
	return fixtureSpec{
		workload: "fenced-counter",
		impls: []fixtureImpl{
			{name: "redis-setnx", baseUS: 180},
			{name: "redlock", baseUS: 520},
			{name: "unsafe-release", mutant: true, baseUS: 160},
		},
		phases:  []string{"acquire", "read", "write", "release"},
		perImpl: 6e9,
		workers: 4,
	}
}

func txnFixture() fixtureSpec {
	return fixtureSpec{
		workload: "bank",
		impls: []fixtureImpl{
			{name: "2pc-pg", baseUS: 900},
			{name: "tcc", baseUS: 650},
		},
		phases:  []string{"try", "prepare", "commit"},
		perImpl: 5e9,
		workers: 3,
	}
}

// buildFixture synthesises results and history: lognormal latencies, a kill
// fault (indeterminate ops, then a slow recovery) and a latency fault per
// implementation, and mutual-exclusion violations for the mutant whose
// indexes point at real history lines.
func buildFixture(spec fixtureSpec) (*results.Results, []history.Op) {
	key := fmt.Sprint(spec)
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if f, ok := fixtureCache[key]; ok {
		return f.res, f.ops
	}
	res, ops := synthesize(spec)
	fixtureCache[key] = cachedFixture{res, ops}
	return res, ops
}

type cachedFixture struct {
	res *results.Results
	ops []history.Op
}

// fixtureCache saves rebuilding the same fixture in several tests; callers
// must not modify what they get.
var (
	fixtureMu    sync.Mutex
	fixtureCache = map[string]cachedFixture{}
)

func synthesize(spec fixtureSpec) (*results.Results, []history.Op) {
	rng := rand.New(rand.NewPCG(7, 11))
	ops := make([]history.Op, 0, 1<<19)
	emit := func(op history.Op) int64 {
		op.Index = int64(len(ops))
		ops = append(ops, op)
		return op.Index
	}
	res := &results.Results{
		Schema: results.Schema, RunID: "20240601-101500-fixture", Started: "2024-06-01T10:15:00Z", Seed: 42,
		Command:  "faultline run --workload " + spec.workload + " --impls all --duration 8s --faults kill,latency --seed 42",
		Workload: spec.workload,
		Config: map[string]any{"workers": spec.workers, "duration": "8s", "ttl": "500ms", "keys": 2, "mode": "closed-loop",
			"faults": []string{"kill:redis-2", "latency:redis-1:40ms"}, "toxiproxy": map[string]any{"api": "http://127.0.0.1:8474"}},
		Versions: map[string]string{"faultline": "v0.1.0-dev", "go": "go1.26.8", "redis": "7.0.15", "postgres": "15.18"},
		Provider: "local", ProviderReason: "docker cannot pull images here; host binaries found", Path: "proxied",
	}
	if !spec.legacy {
		res.WorkloadInfo = spec.info()
	}
	var t0 int64
	procBase := 0
	for ii, im := range spec.impls {
		start, end := t0+2e8, t0+2e8+spec.perImpl
		kill := results.FaultWindow{ID: fmt.Sprintf("f%d-kill", ii), Fault: "kill:redis-2", Kind: "kill", Nodes: []string{"redis-2"}, Impl: im.name, Start: start + spec.perImpl*3/10, End: start + spec.perImpl*45/100}
		slow := results.FaultWindow{ID: fmt.Sprintf("f%d-slow", ii), Fault: "latency:redis-1:40ms", Kind: "latency", Nodes: []string{"redis-1"}, Impl: im.name, Start: start + spec.perImpl*65/100, End: start + spec.perImpl*80/100}
		res.Faults = append(res.Faults, kill, slow)
		hists := map[string]*hdr.Histogram{}
		inH, outH := map[string]*hdr.Histogram{}, map[string]*hdr.Histogram{}
		get := func(m map[string]*hdr.Histogram, k string) *hdr.Histogram {
			if m[k] == nil {
				m[k] = hdr.New(1, 60e6, 3)
			}
			return m[k]
		}
		stats := map[string]*results.OpStats{}
		type worker struct {
			proc int
			t    int64
		}
		ws := make([]worker, spec.workers)
		for w := range ws {
			ws[w] = worker{proc: procBase + w, t: start + int64(w)*37e3}
		}
		procBase += 100
		faultEvents := []struct {
			t     int64
			start bool
			f     results.FaultWindow
		}{{kill.Start, true, kill}, {kill.End, false, kill}, {slow.Start, true, slow}, {slow.End, false, slow}}
		var violations []results.Violation
		var value int64
		for {
			// next worker by time
			wi := 0
			for i := range ws {
				if ws[i].t < ws[wi].t {
					wi = i
				}
			}
			w := &ws[wi]
			if w.t >= end {
				break
			}
			for len(faultEvents) > 0 && faultEvents[0].t <= w.t {
				fe := faultEvents[0]
				faultEvents = faultEvents[1:]
				f := history.FaultHeal
				if fe.start {
					f = history.FaultStart
				}
				emit(history.Op{Time: fe.t, Type: history.Info, Process: history.Nemesis, Impl: im.name, F: f, Fault: fe.f.Fault, Nodes: fe.f.Nodes,
					Attrs: map[string]string{"id": fe.f.ID, "kind": fe.f.Kind}})
			}
			key := fmt.Sprintf("k%d", rng.IntN(2))
			token := fmt.Sprintf("%s-%d-%d", im.name[:3], w.proc, len(ops))
			cycleStart := w.t
			aborted := false
			for pi, ph := range spec.phases {
				inKill := w.t >= kill.Start && w.t < kill.End
				inSlow := w.t >= slow.Start && w.t < slow.End
				lat := im.baseUS * math.Exp(rng.NormFloat64()*0.35) * (1 + 0.3*float64(pi%2))
				if rng.Float64() < 0.003 {
					lat *= 20 + rng.Float64()*30 // rare stalls: the tail
				}
				if inSlow {
					lat += 40000 * (1 + 0.2*rng.NormFloat64())
				}
				typ := history.OK
				errStr := ""
				if inKill {
					lat *= 3
					if rng.Float64() < 0.08 {
						typ, errStr, lat = history.Info, "i/o timeout", 250000
					} else if rng.Float64() < 0.08 {
						typ, errStr = history.Fail, "not-acquired"
					}
				}
				lat = math.Max(lat, 20)
				ns := int64(lat * 1000)
				inv := history.Op{Time: w.t, Type: history.Invoke, Process: w.proc, Impl: im.name, F: ph, Key: key}
				if ph == "write" {
					inv.Value = history.Int(value + 1)
				}
				iIdx := emit(inv)
				done := history.Op{Time: w.t + ns, Type: typ, Process: w.proc, Impl: im.name, F: ph, Key: key, Error: errStr}
				switch ph {
				case "acquire":
					if typ == history.OK {
						done.Token, done.Fence = token, uint64(len(ops))
					}
				case "read":
					done.Value = history.Int(value)
				case "write":
					if typ == history.OK {
						value++
					}
				}
				cIdx := emit(done)
				w.t += ns + 15e3
				st := stats[ph]
				if st == nil {
					st = &results.OpStats{Errors: map[string]int64{}}
					stats[ph] = st
				}
				st.Count++
				if typ == history.OK {
					st.OK++
					_ = get(hists, ph).RecordValue(int64(lat))
					if inKill || inSlow {
						_ = get(inH, ph).RecordValue(int64(lat))
					} else {
						_ = get(outH, ph).RecordValue(int64(lat))
					}
				} else {
					st.Errors[string(typ)]++
					if errStr != "" {
						st.Errors[errStr]++
					}
				}
				if im.mutant && ph == "write" && inKill && len(violations) < 3 && rng.Float64() < 0.2 {
					other := ws[(wi+1)%len(ws)].proc
					violations = append(violations, results.Violation{
						Kind:        "overlap",
						Description: fmt.Sprintf("process %d wrote %s while process %d still held the lock: its release deleted the new holder's key without checking the token", w.proc, key, other),
						Processes:   []int{w.proc, other}, Keys: []string{key}, Tokens: []string{token, fmt.Sprintf("%s-%d-x", im.name[:3], other)},
						Time: w.t, Indexes: []int64{iIdx, cIdx},
					})
				}
				if typ != history.OK {
					aborted = true
					break
				}
			}
			if !aborted {
				st := stats[spec.headline()]
				if st == nil {
					st = &results.OpStats{}
					stats[spec.headline()] = st
				}
				st.Count++
				st.OK++
				_ = get(hists, spec.headline()).RecordValue((w.t - cycleStart) / 1000)
			}
			w.t += int64(rng.IntN(600e3))
		}
		ir := results.ImplResult{Name: im.name, Mutant: im.mutant, Start: start, End: end, Ops: map[string]results.OpStats{},
			InsideFaults: map[string]results.Percentiles{}, OutsideFaults: map[string]results.Percentiles{},
			Counters: map[string]int64{"fenced": int64(rng.IntN(20)), "cycles": stats[spec.headline()].Count}}
		for k, st := range stats {
			h := hists[k]
			st.Percentiles = pct(h)
			st.Throughput = float64(st.OK) / (float64(spec.perImpl) / 1e9)
			if len(st.Errors) == 0 {
				st.Errors = nil
			}
			s := h.Export()
			st.Histogram = &results.Histogram{LowestTrackableValue: s.LowestTrackableValue, HighestTrackableValue: s.HighestTrackableValue, SignificantFigures: s.SignificantFigures, Counts: s.Counts}
			ir.Ops[k] = *st
			if inH[k] != nil {
				ir.InsideFaults[k] = pct(inH[k])
				ir.OutsideFaults[k] = pct(outH[k])
			}
		}
		if ii > 0 {
			ir.Baseline = spec.impls[0].name
			ir.Ratio = map[string]float64{"throughput": ir.Ops[spec.phases[0]].Throughput / res.Impls[0].Ops[spec.phases[0]].Throughput}
		}
		res.Impls = append(res.Impls, ir)
		if spec.workload == "bank" {
			res.Verdicts = append(res.Verdicts,
				results.Verdict{Checker: "conservation", Impl: im.name, Valid: results.Valid, Summary: "total money conserved: 10000 before and after"},
				results.Verdict{Checker: "no-prepared-left", Impl: im.name, Valid: results.Valid, Summary: "no prepared transaction left behind",
					Measures: map[string]float64{"in_doubt_ms_p50": 12 + float64(ii)*30, "in_doubt_ms_max": 480 + float64(ii)*200, "blocked_ms_max": 510}})
		} else {
			mx := results.Verdict{Checker: "mutual-exclusion", Impl: im.name, Valid: results.Valid, Summary: "no two holders ever wrote inside the same critical section"}
			if len(violations) > 0 {
				mx.Valid, mx.Violations = results.Invalid, violations
				mx.Summary = fmt.Sprintf("%d writes happened while another process held the lock", len(violations))
			}
			lv := results.Verdict{Checker: "liveness", Impl: im.name, Valid: results.Valid, Summary: "every crashed holder's lock was taken over",
				Measures: map[string]float64{"recovery_ms_p50": 505 + float64(ii)*40, "recovery_ms_max": 620 + float64(ii)*90, "crashes": 3}}
			res.Verdicts = append(res.Verdicts, mx, lv)
			if im.name == "redlock" {
				res.Verdicts = append(res.Verdicts, results.Verdict{Checker: "lost-update", Impl: im.name, Valid: results.Unknown,
					Summary: "final counter is 1 below acknowledged writes, but 2 writes were indeterminate"})
			}
		}
		t0 = end
	}
	res.Duration = float64(t0) / 1e9
	return res, ops
}

func pct(h *hdr.Histogram) results.Percentiles {
	if h == nil || h.TotalCount() == 0 {
		return results.Percentiles{}
	}
	return results.Percentiles{Count: h.TotalCount(), P50: float64(h.ValueAtQuantile(50)), P90: float64(h.ValueAtQuantile(90)),
		P99: float64(h.ValueAtQuantile(99)), P999: float64(h.ValueAtQuantile(99.9)), Max: float64(h.Max()), Mean: h.Mean()}
}

// saveFixture writes results.json and history.jsonl into a new directory.
func saveFixture(t testing.TB, spec fixtureSpec) string {
	t.Helper()
	res, ops := buildFixture(spec)
	dir := t.TempDir()
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ResultsFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(f)
	for i := range ops {
		if err := enc.Encode(&ops[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}
