package txn

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// finishInterval is how often a finisher writes the final states gathered
// since its last write, when no new transaction carried them (begin).
const finishInterval = 50 * time.Millisecond

// finisher writes the final state of finished sagas (running → done) in
// batches, off the
// transfer's path: the next transaction's begin carries them in its own
// statement (begin), else one UPDATE per interval. The final state needs
// no durability of its own: a transaction whose mark is lost (a crash, a
// failed write) stays confirming / running, and Recover finishes it again,
// which the step log turns into a no-op.
// Recover and Close write what is pending first.
type finisher struct {
	p        *pools
	opt      Options
	from, to string

	mu      sync.Mutex
	pending []string
	// flushing is held through a whole write, so a flush returns only
	// after every mark queued before it is written (or failed), also one
	// the background loop was writing.
	flushing sync.Mutex

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newFinisher(p *pools, opt Options, from, to string) *finisher {
	f := &finisher{p: p, opt: opt, from: from, to: to, stop: make(chan struct{}), done: make(chan struct{})}
	go f.run()
	return f
}

// add queues gid's final state.
func (f *finisher) add(gid string) {
	f.mu.Lock()
	f.pending = append(f.pending, gid)
	f.mu.Unlock()
}

// begin records a new global transaction (gid in state, for transfer t)
// and, in the same statement, the final state of every finished one
// pending: one round trip and one commit for both. Pending marks are taken
// only when no flush is under way (Recover's flush then waits for this
// write); if the statement fails they stay pending.
func (f *finisher) begin(ctx context.Context, gid, proto, state string, t Transfer) error {
	ctx, cancel := context.WithTimeout(ctx, f.opt.OpTimeout)
	defer cancel()
	var gids []string
	if f.flushing.TryLock() {
		defer f.flushing.Unlock()
		f.mu.Lock()
		gids, f.pending = f.pending, nil
		f.mu.Unlock()
	}
	_, err := f.p.coord.Exec(ctx, `WITH done AS (UPDATE global_txn SET state = $11, updated_at = clock_timestamp() WHERE gid = ANY($12) AND state = $10)
		INSERT INTO global_txn(gid, protocol, state, transfer_id, from_node, from_id, to_node, to_id, amount)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, gid, proto, state, t.ID, t.From.Node, t.From.ID, t.To.Node, t.To.ID, t.Amount,
		f.from, f.to, gids)
	if err != nil {
		if len(gids) > 0 {
			f.mu.Lock()
			f.pending = append(gids, f.pending...)
			f.mu.Unlock()
		}
		return fmt.Errorf("%s: record global transaction %s: %w", proto, gid, err)
	}
	return nil
}

func (f *finisher) run() {
	defer close(f.done)
	tick := time.NewTicker(finishInterval)
	defer tick.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), f.opt.OpTimeout)
			_ = f.flush(ctx) // kept for the next tick
			cancel()
		}
	}
}

// flush writes every pending final state; on failure they stay pending.
func (f *finisher) flush(ctx context.Context) error {
	f.flushing.Lock()
	defer f.flushing.Unlock()
	f.mu.Lock()
	gids := f.pending
	f.pending = nil
	f.mu.Unlock()
	if len(gids) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, f.opt.OpTimeout)
	defer cancel()
	_, err := f.p.coord.Exec(ctx, `UPDATE global_txn SET state = $3, updated_at = clock_timestamp() WHERE gid = ANY($1) AND state = $2`,
		gids, f.from, f.to)
	if err != nil {
		f.mu.Lock()
		f.pending = append(gids, f.pending...)
		f.mu.Unlock()
	}
	return err
}

// close stops the background writes and writes what is pending (once;
// what fails is left to Recover). Idempotent.
func (f *finisher) close() {
	f.closeOnce.Do(f.shut)
}

func (f *finisher) shut() {
	close(f.stop)
	<-f.done
	ctx, cancel := context.WithTimeout(context.Background(), f.opt.OpTimeout)
	defer cancel()
	if err := f.flush(ctx); err != nil {
		f.mu.Lock()
		n := len(f.pending)
		f.mu.Unlock()
		f.opt.Logger.Warn("txn: could not record the final state of finished transactions; Recover finishes them again (a no-op)",
			"state", f.to, "transactions", n, "err", err)
	}
}
