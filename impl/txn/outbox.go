package txn

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// outbox is the transactional outbox ("reliable message"): Transfer debits
// the source and inserts the message row in ONE local transaction on the
// source's node and returns (the credit is eventual). Per node a relay
// goroutine publishes unsent rows to the Redis stream OutboxStream (XADD,
// field msg_id…) and then marks them sent — at-least-once: a relay that
// dies between the two publishes again. A consumer goroutine reads the
// stream (consumer group OutboxGroup) and credits the target; with dedup it
// inserts msg_id into inbox_dedup ON CONFLICT DO NOTHING in the credit's
// local transaction, so a duplicate is applied once. Every handled message
// writes an inbox row (applied or skipped) in that same transaction.
type outbox struct {
	p     *pools
	opt   Options
	rdb   *redis.Client
	dedup bool

	crashes atomic.Int64 // remaining injected relay crashes
	nudge   []chan struct{}
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

func newOutbox(dedup bool) Factory {
	return func(ctx context.Context, ep Endpoints, opt Options) (Transferer, error) {
		opt = opt.withDefaults()
		if len(ep.Redis) == 0 {
			return nil, errors.New("txn: outbox needs a Redis endpoint for its stream")
		}
		p, err := openPools(ctx, ep, opt, false)
		if err != nil {
			return nil, err
		}
		o := &outbox{p: p, opt: opt, dedup: dedup, rdb: newRedis(ep.Redis[0], opt.OpTimeout)}
		o.crashes.Store(int64(opt.Outbox.CrashRelayAfterPublish))
		gctx, gcancel := context.WithTimeout(ctx, opt.OpTimeout)
		err = o.rdb.XGroupCreateMkStream(gctx, OutboxStream, OutboxGroup, "0").Err()
		gcancel()
		if err != nil && !isBusyGroup(err) {
			o.Close()
			return nil, fmt.Errorf("txn: outbox: create consumer group on %s: %w", ep.Redis[0].Addr, err)
		}
		run, stop := context.WithCancel(context.Background())
		o.stop = stop
		for node := range p.part {
			ch := make(chan struct{}, 1)
			o.nudge = append(o.nudge, ch)
			o.wg.Add(1)
			go o.relaySupervisor(run, node, ch)
		}
		o.wg.Add(1)
		go o.consumer(run)
		return o, nil
	}
}

func isBusyGroup(err error) bool {
	return err != nil && len(err.Error()) >= 9 && err.Error()[:9] == "BUSYGROUP"
}

// MsgID is the outbox message id of a transfer.
func MsgID(transferID string) string { return GIDPrefix + "msg:" + transferID }

func (o *outbox) Transfer(ctx context.Context, t Transfer) (out Outcome, err error) {
	start := time.Now()
	defer func() { out.Total = time.Since(start) }()
	if err = validate(t); err != nil {
		return out, err
	}
	if _, err = o.p.node(t.To.Node); err != nil {
		return out, err
	}
	err = o.p.runLocal(ctx, t.From.Node, o.opt.OpTimeout, func(ctx context.Context, tx pgx.Tx) error {
		if err := debit(ctx, tx, t.From.ID, t.Amount); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO outbox(msg_id, transfer_id, to_node, to_id, amount) VALUES ($1, $2, $3, $4, $5)`,
			MsgID(t.ID), t.ID, t.To.Node, t.To.ID, t.Amount)
		return err
	})
	out.add(PhaseCommit, start)
	if err == nil || Classify(err) == ClassInfo {
		select {
		case o.nudge[t.From.Node] <- struct{}{}:
		default:
		}
	}
	return out, err
}

// relaySupervisor restarts the relay of one node whenever it crashes.
func (o *outbox) relaySupervisor(ctx context.Context, node int, nudge <-chan struct{}) {
	defer o.wg.Done()
	tick := time.NewTicker(o.opt.RelayInterval)
	defer tick.Stop()
	for ctx.Err() == nil {
		if err := o.relayOnce(ctx, node); err != nil && ctx.Err() == nil {
			o.opt.Logger.Debug("outbox relay: pass failed (restarting)", "node", NodeName(node), "err", err)
		}
		select {
		case <-ctx.Done():
		case <-nudge:
		case <-tick.C:
		}
	}
}

var errRelayCrash = errors.New("outbox relay crashed after publish, before mark (injected)")

// relayOnce publishes up to 100 unsent rows of node, marking each sent
// after its XADD.
func (o *outbox) relayOnce(ctx context.Context, node int) error {
	pl := o.p.part[node]
	for range 1000 { // bounded: 100 000 rows per pass
		qctx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
		rows, _ := pl.Query(qctx, `SELECT id, msg_id, transfer_id, to_node, to_id, amount FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT 100`)
		type row struct {
			id           int64
			msg, tr      string
			toNode, toID int
			amount       int64
		}
		batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			return x, r.Scan(&x.id, &x.msg, &x.tr, &x.toNode, &x.toID, &x.amount)
		})
		cancel()
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		for _, x := range batch {
			xctx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
			err := o.rdb.XAdd(xctx, &redis.XAddArgs{Stream: OutboxStream, Values: map[string]any{
				"msg_id": x.msg, "transfer_id": x.tr, "to_node": x.toNode, "to_id": x.toID, "amount": x.amount,
			}}).Err()
			cancel()
			if err != nil {
				return fmt.Errorf("publish %s: %w", x.msg, err)
			}
			if o.crashes.Load() > 0 && o.crashes.Add(-1) >= 0 {
				return errRelayCrash
			}
			mctx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
			_, err = pl.Exec(mctx, `UPDATE outbox SET sent_at = clock_timestamp() WHERE id = $1`, x.id)
			cancel()
			if err != nil {
				return fmt.Errorf("mark %s sent: %w", x.msg, err)
			}
		}
	}
	return nil
}

// consumer reads the stream and applies credits; it acks a message only
// after its credit committed, and re-reads its own pending entries first
// (after an error) so nothing acked is lost.
func (o *outbox) consumer(ctx context.Context) {
	defer o.wg.Done()
	pendingFirst := true
	for ctx.Err() == nil {
		id := ">"
		if pendingFirst {
			id = "0"
		}
		res, err := o.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: OutboxGroup, Consumer: "consumer-1", Streams: []string{OutboxStream, id},
			Count: 100, Block: 200 * time.Millisecond,
		}).Result()
		if err != nil {
			if !errors.Is(err, redis.Nil) && ctx.Err() == nil {
				o.opt.Logger.Debug("outbox consumer: read failed", "err", err)
				o.pause(ctx)
				pendingFirst = true
			}
			continue
		}
		n := 0
		failed := false
		for _, st := range res {
			for _, m := range st.Messages {
				n++
				if err := o.apply(ctx, m); err != nil {
					o.opt.Logger.Debug("outbox consumer: apply failed; will re-read", "id", m.ID, "err", err)
					failed = true
					break
				}
				actx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
				_ = o.rdb.XAck(actx, OutboxStream, OutboxGroup, m.ID).Err()
				cancel()
			}
		}
		if failed {
			o.pause(ctx)
			pendingFirst = true
		} else if pendingFirst && n == 0 {
			pendingFirst = false
		}
	}
}

// pause waits a little after an error (or until ctx ends).
func (o *outbox) pause(ctx context.Context) {
	t := time.NewTimer(50 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (o *outbox) apply(ctx context.Context, m redis.XMessage) error {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	msg, tr := str("msg_id"), str("transfer_id")
	node, err1 := strconv.Atoi(str("to_node"))
	id, err2 := strconv.Atoi(str("to_id"))
	amount, err3 := strconv.ParseInt(str("amount"), 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil || msg == "" {
		o.opt.Logger.Warn("outbox consumer: malformed message dropped", "id", m.ID, "err", err)
		return nil
	}
	err := o.p.runLocal(ctx, node, o.opt.OpTimeout, func(ctx context.Context, tx pgx.Tx) error {
		applied := true
		if o.dedup {
			ct, err := tx.Exec(ctx, `INSERT INTO inbox_dedup(msg_id) VALUES ($1) ON CONFLICT DO NOTHING`, msg)
			if err != nil {
				return err
			}
			applied = ct.RowsAffected() == 1
		}
		if applied {
			if err := credit(ctx, tx, id, amount); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO inbox(msg_id, transfer_id, account, amount, applied) VALUES ($1, $2, $3, $4, $5)`,
			msg, tr, id, amount, applied)
		return err
	})
	if isBusiness(err) {
		o.opt.Logger.Warn("outbox consumer: message cannot apply, dropped", "msg", msg, "err", err)
		return nil
	}
	return err
}

// Recover waits (bounded by ctx) until every outbox row of every node is
// sent and every message is handled by the consumer.
func (o *outbox) Recover(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		left, err := o.inFlight(ctx)
		if err == nil && left == 0 {
			return nil
		}
		for _, ch := range o.nudge {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("txn: outbox recover: %d messages still undelivered (last error %v): %w", left, err, ctx.Err())
		case <-tick.C:
		}
	}
}

// inFlight counts outbox rows not yet sent, or sent but never handled.
func (o *outbox) inFlight(ctx context.Context) (int, error) {
	handled := map[string]bool{}
	var msgs []string
	for _, pl := range o.p.part {
		qctx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
		rows, _ := pl.Query(qctx, `SELECT msg_id FROM inbox`)
		in, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			cancel()
			return -1, err
		}
		for _, m := range in {
			handled[m] = true
		}
		rows, _ = pl.Query(qctx, `SELECT msg_id FROM outbox`)
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		cancel()
		if err != nil {
			return -1, err
		}
		msgs = append(msgs, out...)
	}
	left := 0
	for _, m := range msgs {
		if !handled[m] {
			left++
		}
	}
	return left, nil
}

func (o *outbox) Close() error {
	if o.stop != nil {
		o.stop()
	}
	o.wg.Wait()
	err := o.rdb.Close()
	o.p.close()
	return err
}
