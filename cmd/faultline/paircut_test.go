package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// Per-pair partitions (partition-pair, isolate) need the docker provider:
// with --provider local they are a usage error before anything starts,
// saying why; a bad pair is one too. So is a docker engine on another host
// (DOCKER_HOST=tcp://…): the cuts run iptables in a container's network
// namespace there (192.0.2.10 is TEST-NET: nothing answers).
func TestPairCutUsageErrors(t *testing.T) {
	remote := "tcp://192.0.2.10:2376"
	for _, c := range []struct {
		args       []string
		want       []string
		dockerHost string
	}{
		{[]string{"--provider", "local", "--fault", "isolate:sentinel-1@1s+1s"}, []string{"isolate", "--provider docker", "loopback"}, ""},
		{[]string{"--provider", "local", "--nemesis", "partition-pair", "--nemesis-interval", "1s"}, []string{"partition-pair", "--provider docker"}, ""},
		{[]string{"--fault", "partition-pair:redis-3@1s+1s"}, []string{"want A|B"}, ""},
		{[]string{"--fault", "partition-pair:redis-3|redis-9@1s+1s"}, []string{"redis-9"}, ""},
		{[]string{"--provider", "docker", "--fault", "partition-pair:redis-3|redis-1@1s+1s"},
			[]string{"partition-pair", "DOCKER_HOST=" + remote, "another host", "nsenter"}, remote},
		{[]string{"--nemesis", "isolate", "--nemesis-interval", "1s"}, []string{"isolate", "DOCKER_HOST=" + remote}, remote},
	} {
		t.Run(strings.Join(c.args, " ")+c.dockerHost, func(t *testing.T) {
			if c.dockerHost != "" {
				t.Setenv("DOCKER_HOST", c.dockerHost)
			}
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
