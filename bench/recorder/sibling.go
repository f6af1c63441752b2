package recorder

// Accessors for workloads whose Step needs more than Invoke/Complete: the
// bank workload logs its transfer (timed by the runner as the headline
// kind) without timing it twice, and runs concurrent readers with
// recorders of their own.

// History is the history this worker logs to. Entries logged on it
// directly are not timed: use it for operations the runner times itself
// (a Step's headline kind) or for events such as a fault a workload
// injects.
func (w *Worker) History() *History { return w.h }

// Sibling returns a new recorder of the same Stats, logging as process
// under this worker's implementation: for a workload's helper goroutines
// (e.g. concurrent readers) whose operations are timed like the workers'.
// It is safe to call from any goroutine; the new worker, like every
// worker, belongs to one goroutine.
func (w *Worker) Sibling(process int) *Worker { return w.s.Worker(process, w.Impl) }
