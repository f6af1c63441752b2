package lock_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/infra"
)

// io=blocking through a node's Toxiproxy proxy: a lock works; with a reply
// latency past the read timeout the call fails at the read timeout (a
// timeout error, not a hang); once the latency goes, the lock works again;
// an unknown io value is refused.
func TestBlockingIOThroughProxy(t *testing.T) {
	needEnv(t)
	info, err := lock.Lookup("redis-setnx")
	if err != nil {
		t.Fatal(err)
	}
	ep := lock.Endpoints{Redis: testEnv.proxied.Redis[:1]}
	opt := lock.Options{Params: map[string]string{"io": "blocking", "read-timeout": "300ms"}}
	l := newLockerOn(t, info, ep, opt)
	ctx := ctxFor(t, 30*time.Second)
	cycle := func() error {
		key := uniqueKey(t) // the timed-out SET NX may have taken its key
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		le, err := l.TryAcquire(cctx, key, 5*time.Second)
		if err != nil {
			return err
		}
		return l.Release(cctx, le)
	}
	if err := cycle(); err != nil {
		t.Fatalf("cycle through the proxy: %v", err)
	}

	px := testEnv.env.ByKind(infra.Redis)[0].Proxy()
	if err := px.AddToxic(ctx, infra.Toxic{Name: "io-slow", Type: "latency", Stream: "downstream", Toxicity: 1,
		Attributes: map[string]any{"latency": 1500}}); err != nil {
		t.Fatal(err)
	}
	removed := false
	remove := func() {
		if !removed {
			removed = true
			if err := px.RemoveToxic(context.WithoutCancel(ctx), "io-slow"); err != nil {
				t.Errorf("remove toxic: %v", err)
			}
		}
	}
	defer remove()
	start := time.Now()
	err = cycle()
	took := time.Since(start)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("cycle with 1.5 s latency: %v, want a read timeout", err)
	}
	if took < 300*time.Millisecond || took > 700*time.Millisecond {
		t.Errorf("cycle with 1.5 s latency failed after %v, want the 300 ms read timeout", took)
	}
	remove()
	if err := cycle(); err != nil {
		t.Errorf("cycle after the latency went: %v", err)
	}

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := info.New(cctx, ep, lock.Options{Params: map[string]string{"io": "epoll"}}); err == nil || !strings.Contains(err.Error(), "io") {
		t.Errorf("io=epoll: %v, want an error naming the option", err)
	}
}
