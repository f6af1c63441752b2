package execproc

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBadOutput: every kind of bad stdout fails the call in flight with
// ErrProtocol naming the line, within the deadline plus the grace period.
// The processes are /bin/sh one-liners that read one request and misbehave.
func TestBadOutput(t *testing.T) {
	cases := []struct {
		name, script string
		want         error
		contains     string
	}{
		{"empty line", `read l; echo ""; sleep 5`, ErrProtocol, "stdout line 1 is empty"},
		{"no id", `read l; echo '{"outcome":"ok"}'; sleep 5`, ErrProtocol, `stdout line 1 has no "id"`},
		{"not json", `read l; echo 'ok then'; sleep 5`, ErrProtocol, "stdout line 1 is not a JSON reply"},
		{"line too long", `read l; head -c ` + strconv.Itoa(maxLine+10) + ` /dev/zero | tr '\0' x; echo; sleep 5`, ErrProtocol, "longer than"},
		{"second line bad", `read l; echo '{"id":0,"outcome":"ok"}'; read l; echo nope; sleep 5`, ErrProtocol, "stdout line 2"},
		{"exits", `read l; echo dying >&2; exit 4`, ErrDied, "exit status 4; stderr: dying"},
		{"silent", `read l; sleep 5`, ErrNoReply, "sent no reply to request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Start(context.Background(), Config{Path: "/bin/sh", Args: []string{"-c", c.script}, Label: "test process 1"})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close(100 * time.Millisecond)
			var callErr error
			for i := 0; i < 2 && callErr == nil; i++ { // "second line bad" answers the first call
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				start := time.Now()
				_, callErr = p.Call(ctx, "acquire", map[string]any{"key": "k0"})
				cancel()
				if d := time.Since(start); d > 200*time.Millisecond+Grace+time.Second {
					t.Fatalf("call took %v: past deadline plus grace", d)
				}
			}
			if !errors.Is(callErr, c.want) || !strings.Contains(callErr.Error(), c.contains) || !strings.Contains(callErr.Error(), "test process 1") {
				t.Fatalf("call: %v, want %v containing %q and the process label", callErr, c.want, c.contains)
			}
			if _, lost := Lost(callErr); !lost {
				t.Errorf("Lost(%v) = false", callErr)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if _, err := p.Call(ctx, "release", nil); err == nil {
				t.Error("a call after the loss succeeded: the process must stay dead")
			}
		})
	}
}
