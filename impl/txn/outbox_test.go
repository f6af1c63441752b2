package txn_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/faultline-dev/faultline/impl/txn"
	"github.com/redis/go-redis/v9"
)

// TestOutboxConsumerBatch feeds the consumer one pipelined burst straight
// into the stream: a message twice (one batch, or two), a credit to an
// account that does not exist, a malformed entry and a good message.
// outbox applies the duplicate once, outbox-no-dedup twice; the bad
// credit is dropped without holding back the rest of its batch.
func TestOutboxConsumerBatch(t *testing.T) {
	needEnv(t)
	for _, c := range []struct {
		impl   string
		copies int64 // how often the duplicated message is credited
	}{{"outbox", 1}, {"outbox-no-dedup", 2}} {
		t.Run(c.impl, func(t *testing.T) {
			ep := testEnv.direct
			bank(t, ep)
			tr := newTransferer(t, c.impl, ep, txn.Options{})
			rdb := redis.NewClient(&redis.Options{Addr: ep.Redis[0].Addr, Password: ep.Redis[0].Password, MaxRetries: -1,
				DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
			defer rdb.Close()
			ctx := ctxFor(t, 30*time.Second)
			msg := func(id string, node, acct int, amount int64) map[string]any {
				return map[string]any{"msg_id": txn.MsgID(id), "transfer_id": id, "to_node": node, "to_id": acct, "amount": amount}
			}
			pipe := rdb.Pipeline()
			for _, v := range []map[string]any{
				msg("dup", 1, 1, 7), msg("missing", 1, 999, 5), msg("dup", 1, 1, 7),
				{"msg_id": "garbage"}, msg("good", 1, 2, 3), msg("other", 0, 4, 11),
			} {
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: txn.OutboxStream, Values: v})
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if err := tr.Recover(ctx); err != nil {
				t.Fatalf("recover: %v", err)
			}
			snap, err := txn.TakeSnapshot(ctx, ep)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range []struct {
				a    txn.Account
				want int64
			}{
				{txn.Account{Node: 1, ID: 1}, initialBalance + 7*c.copies},
				{txn.Account{Node: 1, ID: 2}, initialBalance + 3},
				{txn.Account{Node: 0, ID: 4}, initialBalance + 11},
			} {
				if got := account(t, snap, w.a).Balance; got != w.want {
					t.Errorf("%s = %d, want %d", w.a, got, w.want)
				}
			}
			rows := map[string]int{}
			for _, e := range snap.Inbox {
				rows[e.TransferID]++
			}
			if rows["dup"] != 2 || rows["missing"] != 0 || rows["good"] != 1 || rows["other"] != 1 {
				t.Errorf("inbox rows per message %v, want dup 2 (applied or skipped), missing 0, good 1, other 1", rows)
			}
			pend, err := rdb.XPending(ctx, txn.OutboxStream, txn.OutboxGroup).Result()
			if err != nil || pend.Count != 0 {
				t.Errorf("pending after Recover: %+v %v, want none", pend, err)
			}
		})
	}
}

// TestOutboxStreamLoss: the consumer cannot apply (the target accounts
// are locked) while the relay publishes and marks every row sent; then
// Redis loses everything (FLUSHALL: what a restart without persistence
// leaves) and the lock goes. The relay must notice the new stream epoch and
// publish the unapplied rows again, the consumer must recreate its group,
// and every message is applied exactly once.
func TestOutboxStreamLoss(t *testing.T) {
	needEnv(t)
	for _, impl := range []string{"outbox", "outbox-no-dedup"} {
		t.Run(impl, func(t *testing.T) {
			ep := testEnv.direct
			lay := bank(t, ep)
			tr := newTransferer(t, impl, ep, txn.Options{LockTimeout: 100 * time.Millisecond})
			ctx := ctxFor(t, 60*time.Second)
			b, err := pgx.Connect(ctx, ep.Participants[1].DSN)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close(context.Background())
			lockTx, err := b.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := lockTx.Exec(ctx, `SELECT * FROM accounts FOR UPDATE`); err != nil {
				t.Fatal(err)
			}
			var l ledger
			for i := range 6 {
				if _, err := l.do(ctx, tr, txn.Transfer{ID: fmt.Sprintf("s%d", i), From: txn.Account{Node: 0, ID: 1 + i}, To: txn.Account{Node: 1, ID: 2}, Amount: 5}); err != nil {
					t.Fatal(err)
				}
			}
			a, err := pgx.Connect(ctx, ep.Participants[0].DSN)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close(context.Background())
			for { // every row published and marked sent
				var unsent int
				if err := a.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL`).Scan(&unsent); err != nil {
					t.Fatal(err)
				}
				if unsent == 0 {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("%d rows never marked sent", unsent)
				case <-time.After(20 * time.Millisecond):
				}
			}
			rdb := redis.NewClient(&redis.Options{Addr: ep.Redis[0].Addr, Password: ep.Redis[0].Password, MaxRetries: -1,
				DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
			defer rdb.Close()
			if err := rdb.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			// The consumer gives up the batch it held (its credits time out
			// on the lock) and meets NOGROUP: wait for its new group, so
			// that nothing read before the loss can still apply.
			for {
				groups, err := rdb.XInfoGroups(ctx, txn.OutboxStream).Result()
				if err == nil && len(groups) == 1 {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("the consumer never recreated its group: %v", err)
				case <-time.After(20 * time.Millisecond):
				}
			}
			if err := lockTx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			snap, vs := check(t, impl, tr, ep, lay, &l)
			requireValid(t, vs)
			pub := 0
			for _, o := range snap.Outbox {
				pub += o.Published
			}
			if pub < 12 {
				t.Errorf("the relay published %d times, want at least 12 (6 rows, each again after the loss)", pub)
			}
			if got := account(t, snap, txn.Account{Node: 1, ID: 2}).Balance; got != initialBalance+30 {
				t.Errorf("B:2 = %d, want %d", got, initialBalance+30)
			}
		})
	}
}
