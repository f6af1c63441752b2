package bench

import (
	"errors"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/bench/workload"
)

// Options are checked against what the workload and the implementations
// declare, before anything starts: an unknown key or a bad value is a
// usage error listing the valid options.
func TestOptionsValidated(t *testing.T) {
	for _, c := range []struct {
		name                 string
		workload             string
		impls                []string
		opts, txnOpts, locks map[string]string
		want                 string // "" = valid
	}{
		{"bank ok", "bank", []string{"2pc"}, map[string]string{"accounts": "10"}, map[string]string{"crash-at": "after-prepare"}, nil, ""},
		{"bank unknown workload option", "bank", []string{"2pc"}, map[string]string{"acounts": "10"}, nil, nil, `workload bank has no option "acounts" (valid: accounts,`},
		{"bank bad value", "bank", []string{"2pc"}, map[string]string{"inject-prob": "2"}, nil, nil, "out of range"},
		{"txn option of another impl", "bank", []string{"tcc"}, nil, map[string]string{"crash-at": "after-prepare"}, nil, `tcc has no option "crash-at" (valid: dup-cancel`},
		{"txn option declared by one of the run", "bank", []string{"2pc", "tcc"}, nil, map[string]string{"crash-at": "after-prepare", "late-try": "debit"}, nil, ""},
		{"bad crash point", "bank", []string{"2pc"}, nil, map[string]string{"crash-at": "later"}, nil, "want one of before-prepare"},
		{"lock ok", "counter", []string{"redsync"}, nil, nil, map[string]string{"reentrant": "true", "tries": "3"}, ""},
		{"lock unknown", "counter", []string{"redis-setnx"}, nil, nil, map[string]string{"foo": "bar"}, `redis-setnx has no option "foo"`},
		{"lock bad bool", "counter", []string{"redis-setnx"}, nil, nil, map[string]string{"reentrant": "maybe"}, "want true or false"},
		{"lock workload: unknown --opt", "counter", []string{"redis-setnx"}, map[string]string{"accounts": "1"}, nil, nil, `workload counter has no option "accounts" (valid: failover-holder, hold)`},
		{"lock workload: hold", "counter", []string{"redis-setnx"}, map[string]string{"hold": "2s"}, nil, nil, ""},
		{"lock workload: bad hold", "fenced-counter", []string{"redis-setnx"}, map[string]string{"hold": "-2s"}, nil, nil, "out of range"},
		{"--txn-opt on locks", "counter", []string{"redis-setnx"}, nil, map[string]string{"x": "1"}, nil, "use --lock-opt"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Workload: c.workload, Impls: c.impls, Opts: c.opts, TxnOpts: c.txnOpts, LockOpts: c.locks}.WithDefaults()
			err := cfg.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want a usage error with %q", err, c.want)
			}
		})
	}
}

// Bank settings given the old way (--lock-opt) still work, with a note.
func TestRouteOptionsDeprecatedLockOpt(t *testing.T) {
	cfg := Config{Workload: "bank", Impls: []string{"2pc"}, LockOpts: map[string]string{"accounts": "10", "crash-at": "after-commit"}}.WithDefaults().RouteOptions()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Opts["accounts"] != "10" || cfg.TxnOpts["crash-at"] != "after-commit" || len(cfg.LockOpts) != 0 {
		t.Fatalf("routed: opts %v txn %v lock %v", cfg.Opts, cfg.TxnOpts, cfg.LockOpts)
	}
	if len(cfg.Notes) != 1 || !strings.Contains(cfg.Notes[0], "deprecated") || !strings.Contains(cfg.Notes[0], "--opt accounts=10") {
		t.Fatalf("notes %v", cfg.Notes)
	}
	wl, err := workload.Lookup("bank")
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.implParams(wl, "single-db"); len(p) != 0 {
		t.Errorf("single-db declares no option, got %v", p)
	}
	if p := cfg.implParams(wl, "2pc"); p["crash-at"] != "after-commit" {
		t.Errorf("2pc params %v", p)
	}
}

// A 1-client lock phase gets blocking I/O where the implementation offers
// the io option, the netpoller with more clients; --lock-opt io=... wins;
// an implementation without the option (redsync: a go-redis five-node
// fan-out) gets none; redlock polls its own five sockets at 1 client.
func TestImplParamsPickRedisIOByClients(t *testing.T) {
	wl, err := workload.Lookup("counter")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		clients int
		opts    map[string]string
		impl    string
		want    string
	}{
		{1, nil, "redis-setnx", "blocking"},
		{1, nil, "redislock", "blocking"},
		{2, nil, "redis-setnx", "netpoll"},
		{8, nil, "redislock", "netpoll"},
		{1, nil, "redlock", "blocking"}, // the caller polls its five sockets
		{32, nil, "redlock", "netpoll"}, // reader goroutines: rounds share connections
		{1, map[string]string{"io": "netpoll"}, "redis-setnx", "netpoll"},
		{8, map[string]string{"io": "blocking"}, "redis-setnx", "blocking"},
		{1, nil, "redsync", ""},
		{1, nil, "pg-advisory", ""},
	} {
		cfg := Config{Workload: "counter", Impls: []string{tc.impl}, Clients: tc.clients, LockOpts: tc.opts}.WithDefaults()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		if got := cfg.implParams(wl, tc.impl)["io"]; got != tc.want {
			t.Errorf("%s, %d clients, --lock-opt %v: io %q, want %q", tc.impl, tc.clients, tc.opts, got, tc.want)
		}
	}
}
