package txn

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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
//
// The stream can vanish: a Redis node restarted without persistence comes
// back empty, without the stream, its consumer group or the messages not
// yet applied, while their rows are marked sent. The relay therefore
// publishes under a stream epoch (OutboxEpochKey, a random token on the
// same node, set by the first relay that finds it missing): a Lua script
// checks the epoch and appends the batch atomically, and every row is
// marked sent with the epoch it was published under. When a relay finds a
// new epoch, the rows it marked sent under another one whose message has
// no inbox row on its target node (not handled yet), read after a grace
// that outlasts a credit in flight, are made unsent and published again;
// the consumer recreates its group from the start of the stream on
// NOGROUP. The dedup table keeps each message exactly-once whatever the
// timing; without it (outbox-no-dedup) only a credit whose commit reached
// the server after its client's deadline could be applied twice.
type outbox struct {
	p     *pools
	opt   Options
	rdb   *redis.Client
	dedup bool

	crashes atomic.Int64 // remaining injected relay crashes
	nudge   []chan struct{}
	epochs  []string // per node: the stream epoch its relay last saw (its goroutine only)
	stop    context.CancelFunc
	wg      sync.WaitGroup
	// stream and epochKey are OutboxStream and OutboxEpochKey under the
	// endpoints' KeyPrefix (Endpoints.OutboxKeys).
	stream, epochKey string
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
		o.stream, o.epochKey = ep.OutboxKeys()
		o.crashes.Store(int64(opt.Outbox.CrashRelayAfterPublish))
		if err := o.ensureGroup(ctx); err != nil {
			o.Close()
			return nil, fmt.Errorf("txn: outbox: %w", err)
		}
		run, stop := context.WithCancel(context.Background())
		o.stop = stop
		o.epochs = make([]string, len(p.part))
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

// ensureGroup creates the consumer group (and the stream) unless it
// exists, reading from the start of the stream: after a loss, the relay
// may publish again before the consumer recreates its group.
func (o *outbox) ensureGroup(ctx context.Context) error {
	gctx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
	defer cancel()
	err := o.rdb.XGroupCreateMkStream(gctx, o.stream, OutboxGroup, "0").Err()
	if err != nil && !hasPrefix(err, "BUSYGROUP") {
		return fmt.Errorf("create consumer group %s of %s: %w", OutboxGroup, o.stream, err)
	}
	return nil
}

// hasPrefix says whether err is the Redis error reply kind (BUSYGROUP,
// NOGROUP…).
func hasPrefix(err error, kind string) bool {
	return err != nil && strings.HasPrefix(err.Error(), kind)
}

// streamEpoch returns the stream's epoch, setting a new random one if the
// key is missing (a fresh or a restarted Redis).
func (o *outbox) streamEpoch(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
	defer cancel()
	e, err := o.rdb.Get(ctx, o.epochKey).Result()
	if err == nil || !errors.Is(err, redis.Nil) {
		return e, err
	}
	var b [12]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	if err := o.rdb.SetNX(ctx, o.epochKey, hex.EncodeToString(b[:]), 0).Err(); err != nil {
		return "", err
	}
	return o.rdb.Get(ctx, o.epochKey).Result() // ours, or a concurrent relay's
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

// relayOnce publishes node's unsent rows in batches of relayBatch: claim
// the batch (count the publish), publish it under the stream epoch, then
// mark the rows sent with that epoch in one UPDATE. A crash (error)
// between publish and mark publishes those rows again on the next pass.
// First, if the epoch changed since the relay last looked, the rows of a
// lost stream are made unsent again (rewind).
//
// An injected crash (OutboxFaults.CrashRelayAfterPublish) publishes only
// the first unsent row and stops before marking it: each crash
// republishes exactly one message, as in a one-at-a-time relay.
func (o *outbox) relayOnce(ctx context.Context, node int) error {
	pl := o.p.part[node]
	epoch, err := o.streamEpoch(ctx)
	if err != nil {
		return fmt.Errorf("read the stream epoch: %w", err)
	}
	if epoch != o.epochs[node] {
		n, err := o.rewind(ctx, node, epoch)
		if err != nil {
			return fmt.Errorf("republish the rows of a lost stream: %w", err)
		}
		if n > 0 {
			o.opt.Logger.Warn("outbox relay: the stream was lost; republishing messages not yet applied", "node", NodeName(node), "rows", n)
		}
		o.epochs[node] = epoch
	}
	for range 1000 { // bounded: 500 000 rows per pass
		armed := o.crashes.Load() > 0
		limit := relayBatch
		if armed {
			limit = 1
		}
		qctx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
		rows, _ := pl.Query(qctx, `UPDATE outbox SET publishes = publishes + 1
			WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1)
			RETURNING id, msg_id, transfer_id, to_node, to_id, amount`, limit)
		batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (outboxRow, error) {
			var x outboxRow
			return x, r.Scan(&x.id, &x.msg, &x.tr, &x.toNode, &x.toID, &x.amount)
		})
		cancel()
		if err != nil {
			return fmt.Errorf("claim unsent rows: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		slices.SortFunc(batch, func(a, b outboxRow) int { return cmp.Compare(a.id, b.id) })
		if err := o.publish(ctx, epoch, batch); err != nil {
			return err
		}
		if armed && o.crashes.Add(-1) >= 0 {
			return errRelayCrash
		}
		ids := make([]int64, len(batch))
		for i, x := range batch {
			ids[i] = x.id
		}
		mctx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
		_, err = pl.Exec(mctx, `UPDATE outbox SET sent_at = clock_timestamp(), epoch = $2 WHERE id = ANY($1)`, ids, epoch)
		cancel()
		if err != nil {
			return fmt.Errorf("mark %d rows sent (they will be published again): %w", len(ids), err)
		}
		if len(batch) < limit {
			return nil
		}
	}
	return nil
}

// rewind makes node's rows marked sent under another epoch than epoch
// unsent again, unless their message was handled already (it has an inbox
// row on its target node); the handled ones take the new epoch. It returns
// how many rows will be published again.
//
// Before it reads the inboxes it lets rewindGrace pass: a credit the
// consumer read from the lost stream may still be committing (its local
// transaction is bounded by the op timeout); after the grace its inbox row
// shows, so the message is not published twice. Only the dedup table
// protects against what the grace cannot bound (a commit that reached the
// server after its client gave up).
func (o *outbox) rewind(ctx context.Context, node int, epoch string) (int, error) {
	pl := o.p.part[node]
	total := 0
	waited := false
	for range 1000 { // bounded: 1 000 000 rows
		n, err := o.rewindChunk(ctx, pl, epoch, !waited)
		if err != nil || n < 0 {
			return total, err
		}
		if !waited {
			waited = true
			t := time.NewTimer(o.rewindGrace())
			select {
			case <-ctx.Done():
				t.Stop()
				return total, ctx.Err()
			case <-t.C:
			}
			continue
		}
		total += n
	}
	return total, nil
}

// rewindGrace outlasts a consumer's credit transaction (see rewind).
func (o *outbox) rewindGrace() time.Duration { return 2 * o.opt.OpTimeout }

// rewindChunk handles up to 1000 stale rows of pl (see rewind) and returns
// how many it made unsent, or -1 when none is left; peek only says
// whether some are left (0) without changing them.
func (o *outbox) rewindChunk(ctx context.Context, pl *pgxpool.Pool, epoch string, peek bool) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*o.opt.OpTimeout)
	defer cancel()
	rows, _ := pl.Query(ctx, `SELECT id, msg_id, to_node FROM outbox
		WHERE sent_at IS NOT NULL AND epoch IS DISTINCT FROM $1 ORDER BY id LIMIT 1000`, epoch)
	type row struct {
		id     int64
		msg    string
		toNode int
	}
	stale, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.id, &x.msg, &x.toNode)
	})
	switch {
	case err != nil:
		return 0, fmt.Errorf("read rows sent under another epoch: %w", err)
	case len(stale) == 0:
		return -1, nil
	case peek:
		return 0, nil
	}
	byTarget := map[int][]string{}
	for _, x := range stale {
		byTarget[x.toNode] = append(byTarget[x.toNode], x.msg)
	}
	handled := map[string]bool{}
	for target, msgs := range byTarget {
		tp, err := o.p.node(target)
		if err != nil { // no such node: the consumer drops the message anyway
			for _, m := range msgs {
				handled[m] = true
			}
			continue
		}
		rows, _ := tp.Query(ctx, `SELECT DISTINCT msg_id FROM inbox WHERE msg_id = ANY($1)`, msgs)
		done, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return 0, fmt.Errorf("read the inbox of %s: %w", NodeName(target), err)
		}
		for _, m := range done {
			handled[m] = true
		}
	}
	var keep, resend []int64
	for _, x := range stale {
		if handled[x.msg] {
			keep = append(keep, x.id)
		} else {
			resend = append(resend, x.id)
		}
	}
	if _, err := pl.Exec(ctx, `UPDATE outbox SET epoch = $2 WHERE id = ANY($1)`, keep, epoch); err != nil {
		return 0, fmt.Errorf("keep %d handled rows: %w", len(keep), err)
	}
	if _, err := pl.Exec(ctx, `UPDATE outbox SET sent_at = NULL, epoch = NULL WHERE id = ANY($1)`, resend); err != nil {
		return 0, fmt.Errorf("make %d rows unsent: %w", len(resend), err)
	}
	return len(resend), nil
}

// publishScript appends a batch to the stream only if the stream epoch is
// still the relay's (KEYS: stream, epoch key; ARGV: epoch, then five
// fields per message). Atomic: the batch lands in the stream incarnation
// whose epoch the rows are marked with, or not at all.
var publishScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
	return redis.error_reply('EPOCH the outbox stream epoch changed')
end
for i = 2, #ARGV, 5 do
	redis.call('XADD', KEYS[1], '*', 'msg_id', ARGV[i], 'transfer_id', ARGV[i+1], 'to_node', ARGV[i+2], 'to_id', ARGV[i+3], 'amount', ARGV[i+4])
end
return 0
`)

// publish appends batch to the stream under epoch (all or nothing; an
// error may still have appended it: the rows stay unsent and are
// published again).
func (o *outbox) publish(ctx context.Context, epoch string, batch []outboxRow) error {
	xctx, cancel := context.WithTimeout(ctx, o.opt.OpTimeout)
	defer cancel()
	args := make([]any, 0, 1+5*len(batch))
	args = append(args, epoch)
	for _, x := range batch {
		args = append(args, x.msg, x.tr, x.toNode, x.toID, x.amount)
	}
	if err := publishScript.Run(xctx, o.rdb, []string{o.stream, o.epochKey}, args...).Err(); err != nil {
		return fmt.Errorf("publish %d rows: %w", len(batch), err)
	}
	return nil
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
			Group: OutboxGroup, Consumer: "consumer-1", Streams: []string{o.stream, id},
			Count: consumeBatch, Block: consumeBlock,
		}).Result()
		cancel()
		if err != nil {
			if hasPrefix(err, "NOGROUP") { // the stream was lost (see outbox)
				o.opt.Logger.Warn("outbox consumer: the stream or its group is gone; recreating the group")
				if err := o.ensureGroup(ctx); err != nil && ctx.Err() == nil {
					o.opt.Logger.Debug("outbox consumer: recreate the group", "err", err)
					o.pause(ctx)
				}
				pendingFirst = true
				continue
			}
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
	if err := o.rdb.XAck(actx, o.stream, OutboxGroup, ids...).Err(); err != nil {
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
	groups, err := o.rdb.XInfoGroups(ctx, o.stream).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("read consumer groups of %s: %w", o.stream, err)
	}
	i := slices.IndexFunc(groups, func(g redis.XInfoGroup) bool { return g.Name == OutboxGroup })
	if i < 0 {
		return 0, 0, fmt.Errorf("consumer group %s of %s is gone", OutboxGroup, o.stream)
	}
	g := groups[i]
	st, err := o.rdb.XInfoStream(ctx, o.stream).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("read stream %s: %w", o.stream, err)
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
