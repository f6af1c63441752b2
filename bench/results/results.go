// Package results is the versioned schema of results.json, the saved summary
// of a run that reports render and the gate compares. Checkers return
// Verdicts defined here.
package results

// Schema is the version of the results.json layout. Bump it on any
// incompatible change; readers refuse other versions with a clear error.
const Schema = 1

// Verdict is one checker's judgement of one implementation's history.
type Verdict struct {
	Checker string   `json:"checker"` // mutual-exclusion, lost-update, fencing, liveness, leaked-locks, conservation…
	Impl    string   `json:"impl"`
	Valid   Validity `json:"valid"`
	Summary string   `json:"summary,omitempty"` // one plain-words line
	// Violations are counterexamples: at most a checker's cap (20 by
	// default) of the Count it found.
	Violations []Violation `json:"violations,omitempty"`
	// Count is how many violations the checker found, stored or not (0 in
	// files written before it existed: see Found).
	Count int `json:"count"`
	// Measures are numbers the checker measured (e.g. recovery_ms_p50).
	Measures map[string]float64 `json:"measures,omitempty"`
}

// Found is the number of violations the checker found: Count, or the
// stored counterexamples when there are more of them (a verdict built
// without Count, or read from an older file).
func (v Verdict) Found() int { return max(v.Count, len(v.Violations)) }

// Validity is true, false or unknown (when only indeterminate operations
// could have caused the anomaly).
type Validity string

// Validity values.
const (
	Valid   Validity = "true"
	Invalid Validity = "false"
	Unknown Validity = "unknown"
)

// Violation is one concrete counterexample.
type Violation struct {
	Kind        string   `json:"kind"`        // e.g. "overlap", "lost-update", "stale-fence", "leak", "money-created"
	Description string   `json:"description"` // plain words: who did what when
	Processes   []int    `json:"processes,omitempty"`
	Keys        []string `json:"keys,omitempty"`
	Tokens      []string `json:"tokens,omitempty"`
	Time        int64    `json:"time"`              // ns since run start
	Fault       string   `json:"fault,omitempty"`   // fault active then, if any
	Indexes     []int64  `json:"indexes,omitempty"` // history entries that show it
}

// Results is the content of results.json.
type Results struct {
	Schema   int    `json:"schema"` // == Schema
	RunID    string `json:"run_id"`
	Started  string `json:"started"` // RFC 3339
	Seed     int64  `json:"seed"`
	Command  string `json:"command"` // command line that reproduces the run
	Workload string `json:"workload"`
	// Config is the full run configuration, as given (flags resolved).
	Config   map[string]any    `json:"config"`
	Versions map[string]string `json:"versions"` // faultline, go, redis, postgres
	Provider string            `json:"provider"` // local, docker or external
	// ProviderReason says why auto chose that provider.
	ProviderReason string `json:"provider_reason,omitempty"`
	// Capabilities says which fault kinds the provider made possible and
	// which it refused, and why (nil in files written before it existed).
	Capabilities *Capabilities `json:"capabilities,omitempty"`
	// Path is what the clients measured: "direct" to the servers or
	// "proxied" through Toxiproxy.
	Path     string        `json:"path"`
	Duration float64       `json:"duration_s"` // measured phase, all implementations
	Faults   []FaultWindow `json:"faults,omitempty"`
	Impls    []ImplResult  `json:"impls"`
	Verdicts []Verdict     `json:"verdicts"`
	// Interrupted: the run was stopped early (Ctrl-C); what was done up to
	// then is recorded and checked.
	Interrupted bool `json:"interrupted,omitempty"`
	// Checkpoint is set in a results.json written while the run was still
	// going (the run's final save drops it): if it is there, the run died
	// and the last Impls entry (Checkpoint.Phase) holds that phase's
	// figures only up to Checkpoint.Time.
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// Notes are plain-words remarks on the run (skipped phases, errors).
	Notes []string `json:"notes,omitempty"`
	// Calibration is the machine reference measured in this run, on the
	// same server and path, before the implementations' phases (nil when
	// the run has no Redis node, or for files written before it existed).
	Calibration *Calibration `json:"calibration,omitempty"`
	// WorkloadInfo describes the workload as the runner ran it: what the
	// report reads instead of guessing from names (nil in files written
	// before it existed; reports then fall back, see reports.describe).
	WorkloadInfo *WorkloadInfo `json:"workload_info,omitempty"`
}

// Capabilities are what a provider let a run do: the fault kinds possible
// on its nodes, the ones refused (kind → why), and for external servers
// the targets (no password, no full DSN) and the run's key prefix and schema.
type Capabilities struct {
	Possible []string          `json:"possible"`
	Refused  map[string]string `json:"refused,omitempty"`
	Targets  []string          `json:"targets,omitempty"`
	// KeyPrefix and Schema are where the run wrote on external servers.
	KeyPrefix string `json:"key_prefix,omitempty"`
	Schema    string `json:"schema,omitempty"`
}

// Workload kinds (WorkloadInfo.Kind).
const (
	KindLock = "lock" // workers take a lock around a critical section
	KindTxn  = "txn"  // workers run distributed transactions (the bank)
)

// WorkloadInfo describes a run's workload: its kind, the operation kinds
// it records, which of them are transaction phases, and the measures its
// checkers write, with their units.
type WorkloadInfo struct {
	Kind string `json:"kind"` // KindLock or KindTxn
	// Headline is the operation kind of one whole iteration (cycle,
	// transfer): Ops[0].
	Headline string `json:"headline"`
	// Ops are every operation kind recorded, in the workload's order.
	Ops []string `json:"ops"`
	// Phases are the transaction protocol phases among Ops, in protocol
	// order (local, prepare, decide, commit, rollback, try, confirm,
	// cancel, forward, compensate); empty for locks.
	Phases   []string      `json:"phases,omitempty"`
	Measures []MeasureInfo `json:"measures,omitempty"`
}

// MeasureInfo declares one verdict measure (Verdict.Measures key) a
// workload's checkers may write.
type MeasureInfo struct {
	Checker string `json:"checker"`
	Name    string `json:"name"`
	Unit    string `json:"unit"` // UnitMS, UnitCount or UnitRatio
	// Chart names the report chart that draws it (ChartRecovery,
	// ChartInDoubt); "" = shown in the measures table only.
	Chart string `json:"chart,omitempty"`
}

// Measure units and charts (MeasureInfo).
const (
	UnitMS    = "ms"
	UnitCount = "count"
	UnitRatio = "ratio"

	ChartRecovery = "recovery" // locks: time until a crashed holder's key is taken again
	ChartInDoubt  = "in-doubt" // transactions: how long transactions stayed in doubt
	ChartDelivery = "delivery" // messaging: commit-to-apply delay
)

// Measure returns the declaration of checker's measure name, or nil.
func (w *WorkloadInfo) Measure(checker, name string) *MeasureInfo {
	if w == nil {
		return nil
	}
	for i := range w.Measures {
		if m := &w.Measures[i]; m.Checker == checker && m.Name == name {
			return m
		}
	}
	return nil
}

// Calibration measures the machine and the harness in the same run as the
// implementations: redis-benchmark (the reference load tool) and
// faultline's own Go client sending sequential PINGs to the same Redis
// node over the same path, one connection each, at quiet points of the run
// (before each phase and after the last), pooled. The Go PING p50 is the
// unit the gate normalises by, so that runs on a slower or busier machine
// compare with a baseline taken elsewhere; the ratio of the two p50s is
// the harness's own overhead.
type Calibration struct {
	Node     string `json:"node"`     // the Redis node measured, e.g. redis-1
	Path     string `json:"path"`     // direct or proxied: as the implementations
	Requests int    `json:"requests"` // PINGs per tool per sample
	// Samples is how many times the run calibrated (before each phase and
	// after the last); the figures pool them.
	Samples int `json:"samples,omitempty"`
	// redis-benchmark -t ping_mbulk -c 1, median over the samples (zero
	// when it was not run: see Note).
	RedisBenchmarkRPS    float64 `json:"redis_benchmark_rps,omitempty"`
	RedisBenchmarkP50us  float64 `json:"redis_benchmark_p50_us,omitempty"`
	RedisBenchmarkP99us  float64 `json:"redis_benchmark_p99_us,omitempty"`
	RedisBenchmarkMeanUs float64 `json:"redis_benchmark_mean_us,omitempty"`
	// go-redis, MaxRetries -1, one connection, timed through the recorder;
	// one histogram of every sample's PINGs.
	GoPingRPS    float64 `json:"go_ping_rps,omitempty"`
	GoPingP50us  float64 `json:"go_ping_p50_us,omitempty"`
	GoPingP99us  float64 `json:"go_ping_p99_us,omitempty"`
	GoPingMeanUs float64 `json:"go_ping_mean_us,omitempty"`
	// GoPingP50Min and GoPingP50Max are the lowest and highest p50 of one
	// sample: the calibration's own noise.
	GoPingP50Min float64 `json:"go_ping_p50_min_us,omitempty"`
	GoPingP50Max float64 `json:"go_ping_p50_max_us,omitempty"`
	// Note says what was skipped or failed (redis-benchmark absent…).
	Note string `json:"note,omitempty"`
}

// Overhead is the Go client's PING p50 over redis-benchmark's (0 when
// either is missing).
func (c *Calibration) Overhead() float64 {
	if c == nil || c.GoPingP50us <= 0 || c.RedisBenchmarkP50us <= 0 {
		return 0
	}
	return c.GoPingP50us / c.RedisBenchmarkP50us
}

// Unit is the machine reference the gate normalises by: the Go client's
// PING p50 in µs (0 when unmeasured).
func (c *Calibration) Unit() float64 {
	if c == nil || c.GoPingP50us <= 0 {
		return 0
	}
	return c.GoPingP50us
}

// FaultWindow is one fault from start to heal.
type FaultWindow struct {
	ID    string   `json:"id,omitempty"` // pairs with the history's fault events (attrs.id)
	Fault string   `json:"fault"`        // spec, e.g. "kill:redis-2"
	Kind  string   `json:"kind"`         // kill, pause, latency, partition…
	Nodes []string `json:"nodes,omitempty"`
	Impl  string   `json:"impl,omitempty"`
	Start int64    `json:"start"` // ns since run start
	End   int64    `json:"end"`
}

// Checkpoint says where a run stood when its results.json was written
// during the run.
type Checkpoint struct {
	// Phase is the implementation whose phase was running ("" when the
	// checkpoint was written before any phase).
	Phase string `json:"phase"`
	// At is the wall-clock time of the checkpoint (RFC 3339, UTC).
	At string `json:"at"`
	// Time is the history time (ns since run start) the running phase's
	// figures go up to (0: the phase had not started: no figures).
	Time int64 `json:"time,omitempty"`
	// Interval is the checkpoint interval ("" when checkpoints are only
	// written before each phase).
	Interval string `json:"interval,omitempty"`
	// Done is how many phases had finished, of Phases.
	Done   int `json:"done"`
	Phases int `json:"phases"`
}

// ImplResult is one implementation's measurements.
type ImplResult struct {
	Name   string `json:"name"`
	Mutant bool   `json:"mutant,omitempty"`
	Start  int64  `json:"start"` // ns since run start of its measured phase
	End    int64  `json:"end"`
	// Ops per operation kind (acquire, release, cycle, transfer, prepare…).
	Ops map[string]OpStats `json:"ops"`
	// InsideFaults and OutsideFaults are per operation kind latency
	// percentiles of operations that started inside / outside fault windows.
	InsideFaults  map[string]Percentiles `json:"inside_faults,omitempty"`
	OutsideFaults map[string]Percentiles `json:"outside_faults,omitempty"`
	// Counters are workload counts (e.g. "fenced" rejected writes).
	Counters map[string]int64 `json:"counters,omitempty"`
	// Baseline names the implementation this one is compared against, and
	// Ratio holds the throughput/latency ratios against it.
	Baseline string             `json:"baseline,omitempty"`
	Ratio    map[string]float64 `json:"ratio,omitempty"`
	// Faults says which faults reached the nodes this implementation uses
	// (nil: the run had no faults, or the file predates it).
	Faults *FaultCoverage `json:"fault_coverage,omitempty"`
	// Topology is the server topology the implementation ran on ("" =
	// independent nodes), Roles the node roles over its phase (sampled at
	// its start and after each failover), Failovers each failover's times.
	Topology  string       `json:"topology,omitempty"`
	Roles     []RoleSample `json:"roles,omitempty"`
	Failovers []Failover   `json:"failovers,omitempty"`
}

// RoleSample is the role of every node of a replicated topology at one
// moment: which node was primary when.
type RoleSample struct {
	Time  int64             `json:"time"`  // ns since run start
	Why   string            `json:"why"`   // "phase start", "after failover f0", "after heal f0"…
	Roles map[string]string `json:"roles"` // node → primary, replica, sentinel, down
}

// Failover is one failover of a replicated topology: the primary lost (a
// kill, or a forced failover), a replica promoted, and the first write
// the clients got through afterwards.
type Failover struct {
	ID    string `json:"id,omitempty"` // the fault window's id
	Fault string `json:"fault"`
	Impl  string `json:"impl,omitempty"`
	Old   string `json:"old,omitempty"` // the primary lost
	New   string `json:"new,omitempty"` // the node promoted
	Lost  int64  `json:"lost"`          // ns since run start: the primary lost
	// Promoted is when infra saw the new primary (0: unknown).
	Promoted int64 `json:"promoted,omitempty"`
	// FirstWrite is when the first write invoked after the loss completed
	// (0: none did before the phase ended).
	FirstWrite int64 `json:"first_write,omitempty"`
	End        int64 `json:"end"` // the fault's heal (old primary back)
	// PromotionMs is Lost→Promoted; FailoverMs Lost→FirstWrite (the
	// failover time clients saw); 0 when unknown.
	PromotionMs float64 `json:"promotion_ms,omitempty"`
	FailoverMs  float64 `json:"failover_ms,omitempty"`
	// Held is the lock holder a lossy failover kept working across it
	// ("p3 k5"), or why none ("none: …", "off …"); empty for other modes.
	Held string `json:"held,omitempty"`
}

// FaultCoverage is what the faults of a run did to one implementation's
// nodes.
type FaultCoverage struct {
	Nodes     []string       `json:"nodes"`      // the nodes the implementation uses
	PerNode   map[string]int `json:"per_node"`   // faults that hit each of them
	OpsInside int            `json:"ops_inside"` // operations that ran inside a fault window
	// Untested, when set, says why the implementation was not tested under
	// faults (no fault hit its nodes…): its verdicts must not read as a
	// pass under faults.
	Untested string `json:"untested,omitempty"`
}

// OpStats summarises one operation kind.
type OpStats struct {
	Count  int64            `json:"count"` // completed (ok+fail+info)
	OK     int64            `json:"ok"`
	Errors map[string]int64 `json:"errors,omitempty"` // by kind: fail, info, timeout, not-acquired…
	// ErrorExamples keeps one full message per error kind whose name was
	// normalised from its messages (ports, addresses, numbers removed).
	ErrorExamples map[string]string `json:"error_examples,omitempty"`
	Throughput    float64           `json:"throughput"` // ok per second
	Percentiles
	// Histogram is the exported HdrHistogram (µs) of ok operations.
	Histogram *Histogram `json:"histogram,omitempty"`
}

// Percentiles are latencies in microseconds.
type Percentiles struct {
	Count int64   `json:"n"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
	Mean  float64 `json:"mean_us"`
}

// Histogram is hdrhistogram.Snapshot, copied here so that readers of
// results.json need not import the histogram library. Counts may stop
// before the last bucket: the missing trailing buckets are empty
// (hdrhistogram.Import fills them with zeros).
type Histogram struct {
	LowestTrackableValue  int64   `json:"lowest"`
	HighestTrackableValue int64   `json:"highest"`
	SignificantFigures    int64   `json:"sigfigs"`
	Counts                []int64 `json:"counts"`
}
