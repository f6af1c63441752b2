package chaos

// Event is what the fault runner reports: one fault starting or healing.
// The bench runner turns each into a history entry (history.Op with process
// Nemesis, type info); chaos itself knows nothing of the history format.
type Event struct {
	Time  int64  // history time, ns since the run started (RunOptions.Clock)
	Heal  bool   // false: the fault started; true: it healed
	ID    string // pairs a start with its heal
	Kind  string // fault kind (kill, latency, holder-pause…)
	Fault string // the spec's What(), e.g. "kill:redis-2"
	Nodes []string
	Impl  string // implementation under test (RunOptions.Impl)
	// Holder is the lock holder a client fault hit (HolderHit false when
	// the fault is not a client fault or hit nobody).
	Holder    Holder
	HolderHit bool
	// Length is the planned fault length (0: instant or until the end).
	Length int64
	// Error is set on a start that failed ("start failed: …").
	Error string
	// Attrs are what a Reporter fault said of its start (a failover's old
	// and new primary, marks as history times in ns).
	Attrs map[string]string
}

// Window is one fault from start to heal, in history time.
type Window struct {
	ID    string
	Fault string
	Kind  string
	Nodes []string
	Impl  string
	Start int64
	End   int64
}
