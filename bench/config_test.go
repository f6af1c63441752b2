package bench

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidateSaysWhatIsValid(t *testing.T) {
	base := Config{Impls: []string{"redis-setnx"}}
	cases := []struct {
		name string
		edit func(*Config)
		want string // "" = valid
	}{
		{"ok", func(*Config) {}, ""},
		{"unknown impl", func(c *Config) { c.Impls = []string{"nope"} }, "known: "},
		{"no impl", func(c *Config) { c.Impls = nil }, "give --impl"},
		{"twice", func(c *Config) { c.Impls = []string{"redis-setnx", "redis-setnx"} }, "given twice"},
		{"unknown workload", func(c *Config) { c.Workload = "nope" }, "fenced-counter"},
		{"bad fault", func(c *Config) { c.Faults = []string{"explode:all@1s"} }, "valid kinds"},
		{"bad nemesis", func(c *Config) { c.Nemesis = []string{"explode"} }, "valid kinds:"},
		{"bad path", func(c *Config) { c.Path = "sideways" }, "auto, direct, proxied"},
		{"direct with kill", func(c *Config) { c.Path = PathDirect; c.Faults = []string{"kill:redis-1@1s+1s"} }, "--path direct"},
		{"direct with holder pause", func(c *Config) { c.Path = PathDirect; c.Faults = []string{"holder-pause:2xttl@1s"} }, ""},
		{"warmup too long", func(c *Config) { c.Warmup = time.Hour }, "shorter than the duration"},
		{"provider", func(c *Config) { c.Provider = "cloud" }, "auto, local, docker"},
		{"share on a lock workload", func(c *Config) { c.Share = 2 }, ""},
		{"share on the bank", func(c *Config) { c.Workload = "bank"; c.Impls = []string{"2pc"}; c.Share = 2 }, "cannot share"},
		{"share too high", func(c *Config) { c.Share = 65 }, "--share 65"},
		{"share on an exec implementation", func(c *Config) { c.Impls = []string{"exec:examples/python/safe_lock.py"}; c.Share = 2 }, "one process per worker"},
		{"fault after the phase", func(c *Config) { c.Duration = 5 * time.Second; c.Faults = []string{"kill:redis-1@6s+1s"} }, `"kill:redis-1@6s+1s": starts at 6s, when the 5s phase is over`},
		{"fault past the phase", func(c *Config) { c.Duration = 5 * time.Second; c.Faults = []string{"kill:redis-1@4s+2s"} }, "past the end of the 5s phase"},
		{"NaN start", func(c *Config) { c.Faults = []string{"holder-pause:k1=ttl@NaNxttl"} }, "bad ttl multiple"},
		{"inf length", func(c *Config) { c.Faults = []string{"kill:redis-1@1s+infxttl"} }, "bad ttl multiple"},
		{"overflowing start", func(c *Config) { c.Faults = []string{"kill:redis-1@1e300xttl"} }, "bad ttl multiple"},
		{"NaN drift", func(c *Config) { c.Faults = []string{"clock-drift=NaN@1s"} }, "want a rate"},
		{"nemesis interval too long", func(c *Config) {
			c.Duration = 5 * time.Second
			c.Nemesis = []string{"kill"}
			c.NemesisInterval = 4 * time.Second
		}, "draws no fault"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := base
			c.edit(&cfg)
			err := cfg.WithDefaults().Validate()
			if c.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want a usage error containing %q, got %v", c.want, err)
			}
		})
	}
	err := Config{Impls: []string{"nope"}}.WithDefaults().Validate()
	for _, known := range []string{"redis-setnx", "redis-fenced", "pg-lease"} {
		if !strings.Contains(err.Error(), known) {
			t.Errorf("unknown-impl error %q does not list %s", err, known)
		}
	}
}

func TestResolvedPath(t *testing.T) {
	cases := []struct {
		path    string
		faults  []string
		nemesis []string
		want    string
	}{
		{PathAuto, nil, nil, PathDirect},
		{PathAuto, []string{"holder-pause:2xttl@1s", "clock-drift:2@1s+1s", "holder-crash@2s"}, nil, PathDirect},
		{PathAuto, []string{"latency:all=50ms@1s+1s"}, nil, PathProxied},
		{PathAuto, []string{"delayed-write:resource=1s@1s+2s"}, nil, PathProxied},
		{PathAuto, nil, []string{"pause"}, PathProxied},
		{PathAuto, nil, []string{"holder-pause"}, PathDirect},
		{PathProxied, nil, nil, PathProxied},
		// The delayed-write path bug: aimed at a node, it is a network fault.
		{PathAuto, []string{"delayed-write:redis-1=1s@1s"}, nil, PathProxied},
		{PathAuto, []string{"delayed-write:k0=1s@1s"}, nil, PathDirect},
	}
	for _, c := range cases {
		cfg := Config{Path: c.path, Faults: c.faults, Nemesis: c.nemesis, Workload: "counter", Impls: []string{"redis-setnx"}}
		if got := cfg.ResolvedPath(); got != c.want {
			t.Errorf("%s %v %v: path %s, want %s", c.path, c.faults, c.nemesis, got, c.want)
		}
	}
}

func TestConfigMapHasResolvedValues(t *testing.T) {
	m := Config{Impls: []string{"redis-setnx"}, TTL: 500 * time.Millisecond}.WithDefaults().Map()
	for k, want := range map[string]any{"ttl": "500ms", "op_timeout": "500ms", "quiet": "1s", "resolved_path": "direct", "clients": float64(DefaultClients)} {
		if m[k] != want {
			t.Errorf("config[%s] = %v, want %v", k, m[k], want)
		}
	}
}

// The note about the replicated topology's 10 s lease is for lock
// workloads: the bank holds no lease.
func TestTopologyTTLNoteOnLockWorkloadsOnly(t *testing.T) {
	for _, tc := range []struct {
		workload, topology string
		note               bool
	}{
		{"counter", "redis-sentinel", true},
		{"fenced-counter", "pg-standby", true},
		{"bank", "pg-standby", false},
		{"counter", "", false},
	} {
		c := Config{Workload: tc.workload, Topology: tc.topology}.WithDefaults()
		got := strings.Contains(strings.Join(c.Notes, "\n"), "--ttl not given")
		if got != tc.note {
			t.Errorf("%s on %q: note %v, want %v (notes %q)", tc.workload, tc.topology, got, tc.note, c.Notes)
		}
		if tc.topology != "" && c.TTL != DefaultTopologyTTL {
			t.Errorf("%s on %s: ttl %v, want %v", tc.workload, tc.topology, c.TTL, DefaultTopologyTTL)
		}
	}
}
