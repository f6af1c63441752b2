package workload

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/recorder"
	"github.com/faultline-dev/faultline/impl/txn"
)

// Finish recovers with a fresh coordinator (the faults are healed and the
// quiet period passed), measures what stayed in doubt, snapshots the bank
// and appends it all to the history. probe < 0 (interrupted) changes
// nothing: recovery is what makes the snapshot meaningful.
func (p *bankSession) Finish(ctx context.Context, h *recorder.History, _ int) error {
	p.stopBackground()
	var errs []error
	var drainErr error
	if p.shared != nil {
		// Let a running consumer drain first (best effort: the
		// recovering coordinator below finishes what is left): closing it
		// in the middle of a credit would leave that message
		// unacknowledged and the next consumer would apply it again
		// (harmless with dedup, a false alarm without).
		if p.info.HasService(txn.ServiceConsumer) {
			dctx, cancel := budget(ctx, 0.6)
			drainErr = p.drainOutbox(dctx)
			cancel()
		}
		errs = append(errs, p.shared.Close())
		p.shared = nil
	}
	p.mon.poll(ctx)
	p.mon.markOpen()

	ep, err := bankEndpoints(p.t, p.info, p.t.Direct)
	if err != nil {
		return err
	}
	recStart := time.Now()
	rctx, cancel := budget(ctx, 0.7)
	var recErr error
	if tr, err := p.info.New(rctx, ep, p.recoveryOptions(0)); err != nil {
		recErr = fmt.Errorf("open a recovering coordinator: %w", err)
	} else {
		recErr = tr.Recover(rctx)
		tr.Close()
	}
	cancel()
	recEnd := time.Now()
	p.mon.poll(ctx)
	if recErr != nil {
		errs = append(errs, fmt.Errorf("txn %s: recover: %w", p.info.Name, recErr))
	}

	direct, err := bankEndpoints(p.t, p.info, true)
	if err != nil {
		return err
	}
	snap, err := txn.TakeSnapshot(ctx, direct)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("txn %s: snapshot the bank: %w", p.info.Name, err))...)
	}
	res := func(f string, op history.Op) {
		op.Type, op.Process, op.Impl, op.F = history.OK, history.Resource, p.t.Impl, f
		h.Log(op)
	}
	res("bank-layout", history.Op{Attrs: map[string]string{
		"accounts": strconv.Itoa(p.prm.accounts), "balance": strconv.FormatInt(p.prm.balance, 10),
		"nodes": strconv.Itoa(len(direct.Participants)), "single_node": strconv.FormatBool(p.info.SingleNode),
		"blocked_min_ms":  strconv.FormatInt(p.prm.blockedMin.Milliseconds(), 10),
		"lock_timeout_ms": strconv.FormatInt(p.prm.lockTimeout.Milliseconds(), 10),
		"op_timeout_ms":   strconv.FormatInt(p.t.OpTimeout.Milliseconds(), 10),
		"inject":          p.prm.describe(), "injected": strconv.FormatInt(p.injectedCount(), 10),
		"checks": strings.Join(p.info.Checks, ","),
	}})
	rec := history.Op{Value: history.Int(recEnd.Sub(recStart).Milliseconds()), Attrs: map[string]string{
		"start": strconv.FormatInt(h.Since(recStart), 10), "end": strconv.FormatInt(h.Since(recEnd), 10)}}
	if recErr != nil {
		rec.Error = recorder.ErrorKind(recErr)
	}
	if drainErr != nil {
		rec.Attrs["drain"] = recorder.ErrorKind(drainErr)
	}
	res("bank-recover", rec)
	// In doubt: still prepared when the final Recover started, or prepared
	// longer than a live coordinator holds a transaction (prepare answer to
	// decision and commit: two calls of op-timeout), or than the recovery
	// cron's minimum age when it runs.
	bound := 2 * p.t.OpTimeout
	if p.prm.recoverEvery > 0 && p.prm.minAge > 0 {
		bound = min(bound, p.prm.minAge)
	}
	for _, d := range p.mon.inDoubt(bound) {
		attrs := map[string]string{"node": strconv.Itoa(d.node), "transfer": transferOfGID(d.gid),
			"prepared": strconv.FormatInt(h.Since(d.prepared), 10), "by": d.by}
		if !d.gone.IsZero() {
			attrs["resolved"] = strconv.FormatInt(h.Since(d.gone), 10)
		}
		res("in-doubt", history.Op{Key: txn.NodeName(d.node), Token: d.gid, Value: history.Int(d.duration().Milliseconds()), Attrs: attrs})
	}
	for _, op := range SnapshotOps(snap) {
		res(op.F, op)
	}
	return errors.Join(errs...)
}

// budget bounds a step of Finish by a share of what is left of ctx's
// deadline (30s without one), so that the snapshot always gets its turn.
func budget(ctx context.Context, share float64) (context.Context, context.CancelFunc) {
	d := 30 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		d = time.Duration(float64(time.Until(dl)) * share)
	}
	return context.WithTimeout(ctx, d)
}

// drainOutbox waits (polling every 50ms, bounded by ctx) until the
// running consumer service has handled every committed message (as many
// distinct messages in the inboxes as rows in the outboxes) and
// acknowledged it (no pending entry in the consumer group), so that closing
// its consumer cannot make the next one re-apply a credit. It reads
// counts directly, never through a fault, and costs the service little.
func (p *bankSession) drainOutbox(ctx context.Context) error {
	ep, err := bankEndpoints(p.t, p.info, true)
	if err != nil {
		return err
	}
	if len(ep.Redis) == 0 {
		return nil
	}
	rc := newRedis(ep.Redis[0].Addr, ep.Redis[0].Password, 2*time.Second, 1)
	defer rc.Close()
	var conns []*pgx.Conn
	defer func() {
		for _, c := range conns {
			c.Close(context.Background())
		}
	}()
	for _, e := range ep.Participants {
		c, err := pgx.Connect(ctx, e.DSN)
		if err != nil {
			return fmt.Errorf("connect %s: %w", e.Name, err)
		}
		conns = append(conns, c)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var left int64
	var lastErr error
	for {
		var committed, handled int64
		lastErr = nil
		for _, c := range conns {
			var o, in int64
			if err := c.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox), (SELECT count(DISTINCT msg_id) FROM inbox)`).Scan(&o, &in); err != nil {
				lastErr = err
			}
			committed, handled = committed+o, handled+in
		}
		stream, _ := ep.OutboxKeys()
		pend, err := rc.XPending(ctx, stream, txn.OutboxGroup).Result()
		if err != nil {
			lastErr = err
		}
		if lastErr == nil && handled >= committed && pend.Count == 0 {
			return nil
		}
		left = committed - handled
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d messages not yet applied (last error %v): %w", left, lastErr, ctx.Err())
		case <-tick.C:
		}
	}
}

func (p *bankSession) Close() error {
	p.stopBackground()
	var errs []error
	if p.shared != nil {
		errs = append(errs, p.shared.Close())
		p.shared = nil
	}
	p.readers.close()
	p.mon.close()
	return errors.Join(errs...)
}

// transferOfGID is the transfer id inside a gid (fl:2pc:<id>).
func transferOfGID(gid string) string { return gid[strings.LastIndex(gid, ":")+1:] }
