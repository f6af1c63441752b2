package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// Per-pair partitions (partition-pair, isolate) need the docker provider:
// with --provider local they are a usage error before anything starts,
// saying why; a bad pair is one too.
func TestPairCutUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--provider", "local", "--fault", "isolate:sentinel-1@1s+1s"}, []string{"isolate", "--provider docker", "loopback"}},
		{[]string{"--provider", "local", "--nemesis", "partition-pair", "--nemesis-interval", "1s"}, []string{"partition-pair", "--provider docker"}},
		{[]string{"--fault", "partition-pair:redis-3@1s+1s"}, []string{"want A|B"}},
		{[]string{"--fault", "partition-pair:redis-3|redis-9@1s+1s"}, []string{"redis-9"}},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			args := append([]string{"run", "--impl", "redis-sentinel-setnx", "--topology", "redis-sentinel", "--duration", "3s",
				"--out", filepath.Join(t.TempDir(), "run")}, c.args...)
			code, _, stderr := cli(t, args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}
