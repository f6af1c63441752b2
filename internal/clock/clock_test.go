package clock

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		d       time.Duration
		want    error
		minWait time.Duration
	}{
		{"full wait", context.Background(), 20 * time.Millisecond, nil, 20 * time.Millisecond},
		{"zero", context.Background(), 0, nil, 0},
		{"negative", context.Background(), -time.Second, nil, 0},
		{"canceled before", canceled, time.Hour, context.Canceled, 0},
		{"canceled, zero wait", canceled, 0, context.Canceled, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := Sleep(tc.ctx, tc.d)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Sleep = %v, want %v", err, tc.want)
			}
			if got := time.Since(start); got < tc.minWait || got > tc.minWait+5*time.Second {
				t.Fatalf("Sleep took %s, want about %s", got, tc.minWait)
			}
		})
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sleep = %v, want DeadlineExceeded", err)
	}
	if got := time.Since(start); got > 5*time.Second {
		t.Fatalf("Sleep outlived its context: %s", got)
	}
}
