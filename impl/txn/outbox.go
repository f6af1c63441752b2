package txn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/faultline-dev/faultline/internal/clock"
)

// Batch sizes of the outbox relay and consumer.
const (
	// relayBatch is how many unsent rows one relay step reads, publishes
	// (pipelined XADDs) and marks sent (one UPDATE).
	relayBatch = 500
	// consumeBatch is the COUNT of one XREADGROUP; one batch is applied in
	// one local transaction per target node.
	consumeBatch = 1000
	// consumeBlock is the BLOCK of one XREADGROUP: short, so that Close
	// and a pending re-read are never far away.
	consumeBlock = 100 * time.Millisecond
)

// outbox is the transactional outbox ("reliable message"): Transfer debits
// the source and inserts the message row in ONE local transaction on the
// source's node and returns (the credit is eventual). Per node a relay
// goroutine publishes unsent rows to the Redis stream OutboxStream in
// batches (pipelined XADDs, field msg_id…) and then marks them sent in one
// UPDATE — at-least-once: a relay that dies between the two publishes
// again. A consumer goroutine reads the stream in batches (consumer group
// OutboxGroup) and applies a batch in one local transaction per target
// node; with dedup it inserts the batch's msg_ids into inbox_dedup ON
// CONFLICT DO NOTHING in that transaction and credits only the new ones,
// so a duplicate is applied once. Every handled message writes an inbox
// row (applied or skipped) in that same transaction. A batch is
// acknowledged only after its transaction committed.
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
		o.poke(t.From.Node)
	}
	return out, err
}

// poke wakes the relay of node (never blocks).
func (o *outbox) poke(node int) {
	select {
	case o.nudge[node] <- struct{}{}:
	default:
	}
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

// outboxRow is an unsent outbox row as the relay reads it.
type outboxRow struct {
	id           int64
	msg, tr      string
	toNode, toID int
	amount       int64
}

// relayOnce publishes node's unsent rows in batches of relayBatch: read
// the batch, publish it (pipelined XADDs), then mark the published rows
// sent in one UPDATE. A crash (error) between publish and mark publishes
// those rows again on the next pass.
//
// An injected crash (OutboxFaults.CrashRelayAfterPublish) publishes only
// the batch's first row and stops before marking it: each crash
// republishes exactly one message, as in a one-at-a-time relay.
func (o *outbox) relayOnce(ctx context.Context, node int) error {
	pl := o.p.part[node]
	for range 1000 { // bounded: 500 000 rows per pass
		qctx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
		rows, _ := pl.Query(qctx, `SELECT id, msg_id, transfer_id, to_node, to_id, amount FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1`, relayBatch)
		batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (outboxRow, error) {
			var x outboxRow
			return x, r.Scan(&x.id, &x.msg, &x.tr, &x.toNode, &x.toID, &x.amount)
		})
		cancel()
		if err != nil {
			return fmt.Errorf("read unsent rows: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		full := len(batch) == relayBatch
		armed := o.crashes.Load() > 0
		if armed {
			batch = batch[:1]
		}
		sent, perr := o.publish(ctx, batch)
		if armed && len(sent) > 0 && o.crashes.Add(-1) >= 0 {
			return errRelayCrash
		}
		if len(sent) > 0 {
			mctx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
			_, err = pl.Exec(mctx, `UPDATE outbox SET sent_at = clock_timestamp() WHERE id = ANY($1)`, sent)
			cancel()
			if err != nil {
				return fmt.Errorf("mark %d rows sent (they will be published again): %w", len(sent), err)
			}
		}
		if perr != nil {
			return perr
		}
		if !full {
			return nil
		}
	}
	return nil
}

// publish XADDs batch in one pipeline and returns the ids of the rows
// whose XADD succeeded (a failed XADD may still have reached Redis: its
// row stays unsent and is published again).
func (o *outbox) publish(ctx context.Context, batch []outboxRow) ([]int64, error) {
	xctx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
	defer cancel()
	pipe := o.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(batch))
	for i, x := range batch {
		cmds[i] = pipe.XAdd(xctx, &redis.XAddArgs{Stream: OutboxStream, Values: map[string]any{
			"msg_id": x.msg, "transfer_id": x.tr, "to_node": x.toNode, "to_id": x.toID, "amount": x.amount,
		}})
	}
	_, err := pipe.Exec(xctx)
	sent := make([]int64, 0, len(batch))
	for i, c := range cmds {
		if c.Err() == nil {
			sent = append(sent, batch[i].id)
		}
	}
	if err != nil {
		return sent, fmt.Errorf("publish %d rows (%d confirmed): %w", len(batch), len(sent), err)
	}
	return sent, nil
}

// consumer reads the stream in batches and applies them; it acks a
// message only after its credit committed, and re-reads its own pending
// entries first (after an error) so nothing acked is lost.
func (o *outbox) consumer(ctx context.Context) {
	defer o.wg.Done()
	pendingFirst := true
	for ctx.Err() == nil {
		id := ">"
		if pendingFirst {
			id = "0"
		}
		rctx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout+consumeBlock)
		res, err := o.rdb.XReadGroup(rctx, &redis.XReadGroupArgs{
			Group: OutboxGroup, Consumer: "consumer-1", Streams: []string{OutboxStream, id},
			Count: consumeBatch, Block: consumeBlock,
		}).Result()
		cancel()
		if err != nil {
			if !errors.Is(err, redis.Nil) && ctx.Err() == nil {
				o.opt.Logger.Debug("outbox consumer: read failed", "err", err)
				o.pause(ctx)
				pendingFirst = true
			}
			continue
		}
		var msgs []redis.XMessage
		for _, st := range res {
			msgs = append(msgs, st.Messages...)
		}
		// A batch that was read is finished (applied and acknowledged)
		// even if Close comes meanwhile, bounded by the op timeout: an
		// applied but unacknowledged batch would be applied again by the
		// next consumer (harmless with dedup, a false alarm without).
		if err := o.handle(context.WithoutCancel(ctx), msgs); err != nil {
			o.opt.Logger.Debug("outbox consumer: batch not fully applied; will re-read", "messages", len(msgs), "err", err)
			o.pause(ctx)
			pendingFirst = true
		} else if pendingFirst && len(msgs) == 0 {
			pendingFirst = false
		}
	}
}

// pause waits a little after an error (or until ctx ends).
func (o *outbox) pause(ctx context.Context) {
	_ = clock.Sleep(ctx, 50*time.Millisecond)
}

// inMsg is one stream entry the consumer handles.
type inMsg struct {
	streamID string
	msg, tr  string
	node, id int
	amount   int64
}

func parseMsg(m redis.XMessage) (inMsg, error) {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	x := inMsg{streamID: m.ID, msg: str("msg_id"), tr: str("transfer_id")}
	var err1, err2, err3 error
	x.node, err1 = strconv.Atoi(str("to_node"))
	x.id, err2 = strconv.Atoi(str("to_id"))
	x.amount, err3 = strconv.ParseInt(str("amount"), 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return x, err
	}
	if x.msg == "" {
		return x, errors.New("no msg_id")
	}
	return x, nil
}

// handle applies one batch read from the stream: per target node one
// local transaction (the nodes in parallel), each acknowledged after its
// commit. Malformed messages and messages to a node that does not exist
// are dropped (acknowledged). It returns the first failure; the failed
// nodes' messages stay pending.
func (o *outbox) handle(ctx context.Context, msgs []redis.XMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	byNode := map[int][]inMsg{}
	var dropped []string
	for _, m := range msgs {
		x, err := parseMsg(m)
		if err == nil {
			_, err = o.p.node(x.node)
		}
		if err != nil {
			o.opt.Logger.Warn("outbox consumer: malformed message dropped", "id", m.ID, "err", err)
			dropped = append(dropped, m.ID)
			continue
		}
		byNode[x.node] = append(byNode[x.node], x)
	}
	errs := make([]error, len(o.p.part))
	var wg sync.WaitGroup
	for node, batch := range byNode {
		wg.Go(func() {
			if err := o.applyBatch(ctx, node, batch); err != nil {
				errs[node] = fmt.Errorf("apply %d messages on %s: %w", len(batch), NodeName(node), err)
				return
			}
			ids := make([]string, len(batch))
			for i, x := range batch {
				ids[i] = x.streamID
			}
			errs[node] = o.ack(ctx, ids)
		})
	}
	wg.Wait()
	return errors.Join(append(errs, o.ack(ctx, dropped))...)
}

// ack acknowledges stream entries (after their transaction committed).
func (o *outbox) ack(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
	defer cancel()
	if err := o.rdb.XAck(actx, OutboxStream, OutboxGroup, ids...).Err(); err != nil {
		return fmt.Errorf("ack %d messages (they will be re-read and deduplicated): %w", len(ids), err)
	}
	return nil
}

// applyBatch applies the messages of one target node in one local
// transaction: with dedup, the batch's msg_ids go into inbox_dedup ON
// CONFLICT DO NOTHING and only the new ones (each once) are credited;
// without, every message is. The credits are summed per account and
// applied by one UPDATE; every message writes its inbox row. If a credit
// cannot apply (no such account), the batch is applied message by message
// instead and the failing messages are dropped.
func (o *outbox) applyBatch(ctx context.Context, node int, batch []inMsg) error {
	err := o.p.runLocal(ctx, node, o.opt.OpTimeout, func(ctx context.Context, tx pgx.Tx) error {
		applied := make([]bool, len(batch))
		if o.dedup {
			seen := make(map[string]bool, len(batch))
			ids := make([]string, 0, len(batch))
			for _, x := range batch {
				if !seen[x.msg] {
					seen[x.msg] = true
					ids = append(ids, x.msg)
				}
			}
			rows, _ := tx.Query(ctx, `INSERT INTO inbox_dedup(msg_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING RETURNING msg_id`, ids)
			fresh, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return fmt.Errorf("dedup: %w", err)
			}
			isNew := make(map[string]bool, len(fresh))
			for _, m := range fresh {
				isNew[m] = true
			}
			for i, x := range batch { // a duplicate inside the batch applies once too
				applied[i] = isNew[x.msg]
				delete(isNew, x.msg)
			}
		} else {
			for i := range applied {
				applied[i] = true
			}
		}
		msgIDs := make([]string, len(batch))
		trs := make([]string, len(batch))
		accts := make([]int32, len(batch))
		amts := make([]int64, len(batch))
		for i, x := range batch {
			msgIDs[i], trs[i], accts[i], amts[i] = x.msg, x.tr, int32(x.id), x.amount
		}
		if _, err := tx.Exec(ctx, `INSERT INTO inbox(msg_id, transfer_id, account, amount, applied)
			SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::boolean[])`, msgIDs, trs, accts, amts, applied); err != nil {
			return fmt.Errorf("inbox rows: %w", err)
		}
		// The credits last: the account rows stay locked (against
		// concurrent debits) only from here to the commit.
		sum := map[int]int64{}
		for i, x := range batch {
			if applied[i] {
				sum[x.id] += x.amount
			}
		}
		if len(sum) > 0 {
			accts = make([]int32, 0, len(sum))
			for a := range sum {
				accts = append(accts, int32(a))
			}
			slices.Sort(accts)
			amts = make([]int64, len(accts))
			for i, a := range accts {
				amts[i] = sum[int(a)]
			}
			ct, err := tx.Exec(ctx, `UPDATE accounts a SET balance = a.balance + d.amount
				FROM unnest($1::int[], $2::bigint[]) AS d(id, amount) WHERE a.id = d.id`, accts, amts)
			if err != nil {
				return fmt.Errorf("credit %d accounts: %w", len(accts), err)
			}
			if ct.RowsAffected() != int64(len(accts)) {
				return fmt.Errorf("%w: credit %d accounts, %d exist", ErrNoAccount, len(accts), ct.RowsAffected())
			}
		}
		return nil
	})
	if !isBusiness(err) {
		return err
	}
	for _, x := range batch { // find and drop the messages that cannot apply
		if err := o.apply(ctx, x); err != nil {
			return err
		}
	}
	return nil
}

// apply applies one message in its own local transaction (the fallback of
// a batch that cannot apply as a whole).
func (o *outbox) apply(ctx context.Context, x inMsg) error {
	err := o.p.runLocal(ctx, x.node, o.opt.OpTimeout, func(ctx context.Context, tx pgx.Tx) error {
		applied := true
		if o.dedup {
			ct, err := tx.Exec(ctx, `INSERT INTO inbox_dedup(msg_id) VALUES ($1) ON CONFLICT DO NOTHING`, x.msg)
			if err != nil {
				return err
			}
			applied = ct.RowsAffected() == 1
		}
		if applied {
			if err := credit(ctx, tx, x.id, x.amount); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO inbox(msg_id, transfer_id, account, amount, applied) VALUES ($1, $2, $3, $4, $5)`,
			x.msg, x.tr, x.id, x.amount, applied)
		return err
	})
	if isBusiness(err) {
		o.opt.Logger.Warn("outbox consumer: message cannot apply, dropped", "msg", x.msg, "err", err)
		return nil
	}
	return err
}

// Recover waits (bounded by ctx) until every outbox row of every node is
// sent and every message is handled by the consumer. It polls cheap
// counts (unsent rows through outbox_unsent_idx, the consumer group's
// undelivered and pending entries), from every 5ms backing off to every
// 250ms, and confirms a zero against the tables (as many distinct
// messages in the inboxes as rows in the outboxes).
func (o *outbox) Recover(ctx context.Context) error {
	const minPoll, maxPoll = 5 * time.Millisecond, 250 * time.Millisecond
	poll := minPoll
	for {
		left, err := o.inFlight(ctx)
		if err == nil && left == 0 {
			return nil
		}
		for node := range o.nudge {
			o.poke(node)
		}
		if cerr := clock.Sleep(ctx, poll); cerr != nil {
			return fmt.Errorf("txn: outbox recover: %d messages still undelivered (last error %v): %w", left, err, cerr)
		}
		poll = min(poll*2, maxPoll)
	}
}

// inFlight counts the messages not yet handled: unsent outbox rows, else
// stream entries not yet delivered to or acknowledged by the consumer
// group, else (the cheap counts are zero) outbox rows without an inbox
// row — e.g. entries the stream lost. The rows are counted before the
// stream is read: a row marked sent was published before it was marked.
func (o *outbox) inFlight(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
	defer cancel()
	unsent := 0
	for node, pl := range o.p.part {
		var n int
		if err := pl.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL`).Scan(&n); err != nil {
			return -1, fmt.Errorf("count unsent rows on %s: %w", NodeName(node), err)
		}
		unsent += n
	}
	if unsent > 0 {
		return unsent, nil
	}
	undelivered, pending, err := o.streamBacklog(ctx)
	if err != nil {
		return -1, err
	}
	if undelivered+pending > 0 {
		return int(undelivered + pending), nil
	}
	var committed, handled int
	for node, pl := range o.p.part {
		var c, h int
		if err := pl.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox), (SELECT count(DISTINCT msg_id) FROM inbox)`).Scan(&c, &h); err != nil {
			return -1, fmt.Errorf("count messages on %s: %w", NodeName(node), err)
		}
		committed, handled = committed+c, handled+h
	}
	return max(committed-handled, 0), nil
}

// streamBacklog returns how many stream entries the consumer group has not
// been delivered yet, and how many it was delivered but has not
// acknowledged.
func (o *outbox) streamBacklog(ctx context.Context) (undelivered, pending int64, err error) {
	groups, err := o.rdb.XInfoGroups(ctx, OutboxStream).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("read consumer groups of %s: %w", OutboxStream, err)
	}
	i := slices.IndexFunc(groups, func(g redis.XInfoGroup) bool { return g.Name == OutboxGroup })
	if i < 0 {
		return 0, 0, fmt.Errorf("consumer group %s of %s is gone", OutboxGroup, OutboxStream)
	}
	g := groups[i]
	st, err := o.rdb.XInfoStream(ctx, OutboxStream).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("read stream %s: %w", OutboxStream, err)
	}
	if g.LastDeliveredID != st.LastGeneratedID {
		undelivered = max(g.Lag, 1) // Lag is -1 when Redis cannot tell
	}
	return undelivered, g.Pending, nil
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
