package lock_test

import (
	"errors"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
)

// redlockIOs are redlock's two ways of collecting a round's replies:
// reader goroutines (netpoll) and the caller polling the sockets itself
// (blocking, what faultline picks with one client).
var redlockIOs = []string{lock.IONetpoll, lock.IOBlocking}

// TestRedlockLateReplyNotCountedForLaterRound: nodes 4 and 5 answer 300 ms
// late; a round that reached its quorum on nodes 1-3 leaves their replies
// owed on those connections. The next round, on a key another owner holds
// on nodes 1, 2 and 4, must read those owed "OK"s as the first round's:
// counted for the second round (a reply taken as the answer to the latest
// command) they would make 3 yes (nodes 3, 4, 5) and hand out a lock that
// another owner holds on 3 of 5 nodes.
func TestRedlockLateReplyNotCountedForLaterRound(t *testing.T) {
	needEnv(t)
	slowNodesBy(t, 300, 3, 4)
	for _, io := range redlockIOs {
		t.Run(io, func(t *testing.T) {
			info := mustLookup(t, "redlock")
			l := newLockerOn(t, info, endpointsFor(info, testEnv.proxied), lock.Options{Params: map[string]string{
				lock.OptIO: io, "node-timeout": "2s"}})
			k1, k2 := uniqueKey(t)+"-1", uniqueKey(t)+"-2"
			for _, i := range []int{0, 1, 3} {
				if err := rawRedis(t, i).Set(ctxFor(t, time.Second), k2, "A", 10*time.Second).Err(); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			if _, err := l.TryAcquire(ctxFor(t, 3*time.Second), k1, 5*time.Second); err != nil {
				t.Fatalf("TryAcquire %s with nodes 4-5 slow: %v", k1, err)
			}
			if d := time.Since(start); d >= 300*time.Millisecond {
				t.Fatalf("first round took %v: it waited for the slow nodes, the test proves nothing", d)
			}
			lease, err := l.TryAcquire(ctxFor(t, 3*time.Second), k2, 5*time.Second)
			if err == nil {
				t.Fatalf("TryAcquire %s held by A on nodes 1, 2 and 4 succeeded (%+v): the first round's late replies were counted for it", k2, lease)
			}
			if !errors.Is(err, lock.ErrNotAcquired) {
				t.Fatalf("TryAcquire %s: %v, want ErrNotAcquired", k2, err)
			}
		})
	}
}

// TestRedlockSlowMajorityEndsAtDeadline: three of five nodes answer 1 s
// late and the node timeout is 100 ms: an acquire must fail, and a release
// answer, at about the node timeout, never waiting for the slow nodes;
// once they are fast again the Locker acquires again (their connections,
// closed at the deadline, are dialled again).
func TestRedlockSlowMajorityEndsAtDeadline(t *testing.T) {
	needEnv(t)
	for _, io := range redlockIOs {
		t.Run(io, func(t *testing.T) {
			info := mustLookup(t, "redlock")
			opt := lock.Options{Params: map[string]string{lock.OptIO: io, "node-timeout": "100ms"}}
			// Two Lockers: a round that timed out closed its slow nodes'
			// connections, and the next round on the same Locker would find
			// none (not sent: no wait).
			l := newLockerOn(t, info, endpointsFor(info, testEnv.proxied), opt)
			l2 := newLockerOn(t, info, endpointsFor(info, testEnv.proxied), opt)
			key := uniqueKey(t)
			rmToxics := slowNodesBy(t, 1000, 2, 3, 4)
			start := time.Now()
			_, err := l.TryAcquire(ctxFor(t, 5*time.Second), key, 5*time.Second)
			took := time.Since(start)
			if !errors.Is(err, lock.ErrNotAcquired) {
				t.Fatalf("TryAcquire with 3 of 5 nodes 1 s late: %v, want ErrNotAcquired", err)
			}
			if took > 600*time.Millisecond {
				t.Fatalf("TryAcquire with 3 of 5 nodes 1 s late took %v: the 100 ms node timeout did not end the round", took)
			}
			start = time.Now()
			_ = l2.Release(ctxFor(t, 5*time.Second), lock.Lease{Key: key, Token: "nobody"})
			if took := time.Since(start); took > 600*time.Millisecond {
				t.Fatalf("Release with 3 of 5 nodes 1 s late took %v: the 100 ms node timeout did not end the round", took)
			}
			rmToxics()
			// The nodes answer at once again: within a few retries (the
			// closed connections are dialled again) another key is taken
			// (this one may keep the timed-out SETs' token for its ttl:
			// their clean-up found no connection).
			lease, err := l.Acquire(ctxFor(t, 3*time.Second), key+"-after", 5*time.Second)
			if err != nil {
				t.Fatalf("Acquire once the nodes are fast again: %v", err)
			}
			if err := l.Release(ctxFor(t, 2*time.Second), lease); err != nil {
				t.Fatalf("Release: %v", err)
			}
		})
	}
}

// TestRedlockOwedRepliesAreNotOverdue: a round that reached its quorum
// leaves the slow nodes' replies owed; once they have arrived, long after
// that round's node timeout, nobody may take those nodes for stuck: the
// next release must still reach all five (a polled connection whose
// arrived replies were never read looked overdue, was closed, and the
// release was not sent to nodes 4-5, which kept the key).
func TestRedlockOwedRepliesAreNotOverdue(t *testing.T) {
	needEnv(t)
	slowNodesBy(t, 100, 3, 4)
	for _, io := range redlockIOs {
		t.Run(io, func(t *testing.T) {
			info := mustLookup(t, "redlock")
			l := newLockerOn(t, info, endpointsFor(info, testEnv.proxied), lock.Options{Params: map[string]string{
				lock.OptIO: io, "node-timeout": "200ms"}})
			key := uniqueKey(t)
			lease, err := l.TryAcquire(ctxFor(t, 2*time.Second), key, 5*time.Second)
			if err != nil {
				t.Fatalf("TryAcquire with nodes 4-5 slow: %v", err)
			}
			elapse(500 * time.Millisecond) // the late replies arrived; the round's node timeout passed
			if err := l.Release(ctxFor(t, 2*time.Second), lease); err != nil {
				t.Fatalf("Release: %v", err)
			}
			if !goneFromEveryNode(t, key, 2*time.Second) {
				t.Fatalf("released %s still on some node 2 s later", key)
			}
		})
	}
}
