// Package history is the record of a run: every operation's invocation and
// completion, and every fault's start and heal, as Jepsen records them. The
// runner writes it (one buffered JSONL writer); checkers read it offline.
package history

// Type is the kind of history entry.
type Type string

// Entry types. An operation is an Invoke followed by exactly one of OK, Fail
// or Info from the same process. Info means indeterminate (timeout, lost
// connection): the operation may or may not have taken effect. Fault events
// are recorded by the nemesis (Process == Nemesis) as Info entries with F
// "fault-start" or "fault-heal".
const (
	Invoke Type = "invoke"
	OK     Type = "ok"
	Fail   Type = "fail"
	Info   Type = "info"
)

// Nemesis is the process id of fault events.
const Nemesis = -1

// Fault event names (Op.F of nemesis entries).
const (
	FaultStart = "fault-start"
	FaultHeal  = "fault-heal"
)

// Op is one history entry. Fields that do not apply stay empty.
type Op struct {
	Index   int64  `json:"index"` // position in the history, from 0
	Time    int64  `json:"time"`  // monotonic nanoseconds since run start
	Type    Type   `json:"type"`
	Process int    `json:"process"`
	Impl    string `json:"impl,omitempty"` // implementation under test
	F       string `json:"f"`              // acquire, release, read, write, transfer, fault-start…
	Key     string `json:"key,omitempty"`
	Value   *int64 `json:"value,omitempty"`
	Token   string `json:"token,omitempty"` // lock owner token / transfer id
	Fence   uint64 `json:"fence,omitempty"` // fencing token
	Error   string `json:"error,omitempty"` // why it failed or is indeterminate
	// Fault is the fault spec of a nemesis event ("kill:redis-2", …) and
	// Nodes the nodes it hit.
	Fault string   `json:"fault,omitempty"`
	Nodes []string `json:"nodes,omitempty"`
	// Attrs carries workload-specific values (e.g. from/to/amount of a transfer).
	Attrs map[string]string `json:"attrs,omitempty"`
}

// Int returns a pointer to v, for Op.Value.
func Int(v int64) *int64 { return &v }

// Resource is the process id of the protected resource's own log entries,
// appended at the end of a run (ground truth for the checkers).
const Resource = -2
