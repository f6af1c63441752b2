package bench

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestCheckRanges(t *testing.T) {
	all := func(string) bool { return true }
	cases := []struct {
		name  string
		cfg   Config
		given func(string) bool
		want  string // "" = valid; else in the error
	}{
		{"zeros are defaults", Config{}, nil, ""},
		{"explicit zero duration", Config{}, func(f string) bool { return f == "duration" }, "--duration 0s: out of range (valid: > 0s)"},
		{"negative duration", Config{Duration: -time.Second}, nil, "--duration -1s"},
		{"ttl 1ns", Config{TTL: time.Nanosecond}, nil, "valid: >= 1ms"},
		{"ttl 1ms", Config{TTL: time.Millisecond}, nil, ""},
		{"clients 1024", Config{Clients: 1024}, nil, ""},
		{"clients 1025", Config{Clients: 1025}, nil, "--clients 1025: out of range (valid: 1–1024)"},
		{"keys max", Config{Keys: MaxKeys}, nil, ""},
		{"keys huge", Config{Keys: 100_000_000}, nil, "--keys 100000000: out of range (valid: 1–10000)"},
		{"quiet 0 given", Config{}, func(f string) bool { return f == "quiet" }, ""},
		{"quiet negative", Config{Quiet: -1}, nil, "--quiet"},
		{"rate NaN", Config{Rate: math.NaN()}, nil, "--rate NaN"},
		{"rate +Inf", Config{Rate: math.Inf(1)}, nil, "--rate +Inf"},
		{"share 64", Config{Share: MaxShare}, nil, ""},
		{"share 65", Config{Share: 65}, nil, "--share 65: out of range (valid: 1–64)"},
		{"share 0 given", Config{}, func(f string) bool { return f == "share" }, "--share 0"},
		{"all given, all valid", Config{Clients: 1, Share: 1, Keys: 1, Duration: 1, TTL: time.Millisecond, OpTimeout: 1, AcquireTimeout: 1, NemesisInterval: 1}, all, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.CheckRanges(c.given)
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want a usage error with %q", err, c.want)
			}
		})
	}
}

func TestWithDefaultsKeepsNegativesForValidate(t *testing.T) {
	c := Config{Impls: []string{"redis-setnx"}, Duration: -time.Second, Quiet: -time.Second}.WithDefaults()
	if c.Duration != -time.Second || c.Quiet != -time.Second {
		t.Fatalf("WithDefaults replaced a negative: duration %v quiet %v", c.Duration, c.Quiet)
	}
	var ue *UsageError
	if err := c.Validate(); !errors.As(err, &ue) || !strings.Contains(err.Error(), "--duration") {
		t.Fatalf("Validate: %v", err)
	}
}

func TestRaiseQuiet(t *testing.T) {
	c := Config{TTL: time.Second, Quiet: 200 * time.Millisecond}.RaiseQuiet()
	if c.Quiet != time.Second || len(c.Notes) != 1 {
		t.Fatalf("quiet %v notes %q", c.Quiet, c.Notes)
	}
	if c2 := c.RaiseQuiet(); len(c2.Notes) != 1 {
		t.Fatalf("raised twice: %q", c2.Notes)
	}
}
