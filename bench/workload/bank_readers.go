package workload

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/impl/txn"
)

// bankReaders are concurrent reader processes: each read sums every
// account (balance + frozen, the owner's money) of each node in one
// statement per node — a consistent snapshot of that node — and counts
// negative amounts. The two nodes are read concurrently, not atomically:
// no protocol here gives a global snapshot, so a cross-node total that
// differs from the initial total is money in flight (measured), not a
// violation. Checked: no reader ever sees a negative amount, and where
// every transfer stays within one node (single-db) each node's sum is
// constant. Readers wake once per read-every transfers, so they run only
// while the load runs and in proportion to it.
type bankReaders struct {
	p     *bankSession
	nudge chan struct{}
	pools []*pgxpool.Pool
	once  sync.Once
	wg    sync.WaitGroup
	stop  chan struct{}
	mu    sync.Mutex
	done  bool
}

func (r *bankReaders) open(ctx context.Context, ep txn.Endpoints) error {
	for _, e := range ep.Participants {
		cfg, err := pgxpool.ParseConfig(e.DSN)
		if err != nil {
			return fmt.Errorf("bank readers: bad DSN of %s: %w", e.Name, err)
		}
		cfg.MaxConns = int32(max(r.p.prm.readers, 1))
		cfg.ConnConfig.ConnectTimeout = r.p.t.OpTimeout
		cfg.ConnConfig.RuntimeParams["application_name"] = "faultline-bank-reader"
		pl, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return fmt.Errorf("bank readers: pool on %s: %w", e.Name, err)
		}
		r.pools = append(r.pools, pl)
	}
	r.stop = make(chan struct{})
	return nil
}

// start launches the readers once, with recorders of w's Stats.
func (r *bankReaders) start(w *recorder.Worker) {
	if len(r.pools) == 0 {
		return
	}
	r.once.Do(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.done {
			return
		}
		for i := range r.p.prm.readers {
			rw := w.Sibling(ReaderProcess0 + i)
			r.wg.Add(1)
			go r.loop(rw)
		}
	})
}

func (r *bankReaders) poke() {
	select {
	case r.nudge <- struct{}{}:
	default: // every reader is busy: skip this one
	}
}

func (r *bankReaders) loop(w *recorder.Worker) {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case <-r.nudge:
		}
		r.read(w)
	}
}

func (r *bankReaders) read(w *recorder.Worker) {
	call := w.Invoke(bkRead, history.Op{F: "read", Key: "bank"})
	ctx, cancel := context.WithTimeout(context.Background(), r.p.t.OpTimeout)
	defer cancel()
	sums := make([]int64, len(r.pools))
	negs := make([]int64, len(r.pools))
	errs := make([]error, len(r.pools))
	var wg sync.WaitGroup
	for i, pl := range r.pools {
		wg.Go(func() {
			errs[i] = pl.QueryRow(ctx, `SELECT coalesce(sum(balance + frozen), 0)::bigint,
				count(*) FILTER (WHERE balance < 0 OR frozen < 0 OR pending < 0) FROM accounts`).Scan(&sums[i], &negs[i])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		w.Complete(call, history.Info, history.Op{Error: recorder.ErrorKind(err)})
		return
	}
	attrs := map[string]string{}
	var total, neg int64
	for i := range sums {
		attrs[txn.NodeName(i)] = strconv.FormatInt(sums[i], 10)
		total += sums[i]
		neg += negs[i]
	}
	attrs["negative"] = strconv.FormatInt(neg, 10)
	w.Complete(call, history.OK, history.Op{Value: history.Int(total), Attrs: attrs})
}

func (r *bankReaders) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return
	}
	r.done = true
	if r.stop != nil {
		close(r.stop)
	}
	r.wg.Wait()
}

func (r *bankReaders) close() {
	r.stopAll()
	for _, pl := range r.pools {
		pl.Close()
	}
	r.pools = nil
}
