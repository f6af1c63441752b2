package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/infra"
)

// Issue 10 item 6: each bad input used to run (exit 0, often for the 10 s
// default). Each is now a usage error (exit 2) naming the flag and its
// valid range, before anything starts: the command returns at once, the
// run directory is not created, no temp dir appears, no environment lives.
func TestBadRunFlagsExit2BeforeAnythingStarts(t *testing.T) {
	cases := []struct {
		args []string
		want []string // in stderr
	}{
		{[]string{"--duration", "-1s"}, []string{"--duration", "> 0s"}},
		{[]string{"--duration", "0"}, []string{"--duration", "> 0s"}},
		{[]string{"--ttl", "0"}, []string{"--ttl", ">= 1ms"}},
		{[]string{"--ttl", "1ns"}, []string{"--ttl 1ns", ">= 1ms"}},
		{[]string{"--clients", "0"}, []string{"--clients", "1–1024"}},
		{[]string{"--clients", "5000"}, []string{"--clients", "1–1024"}},
		{[]string{"--keys", "0"}, []string{"--keys", "1–10000"}},
		{[]string{"--keys", "100000000"}, []string{"--keys", "1–10000"}},
		{[]string{"--quiet", "-1s"}, []string{"--quiet", ">= 0s"}},
		{[]string{"--op-timeout", "-1s"}, []string{"--op-timeout", "> 0s"}},
		{[]string{"--op-timeout", "0"}, []string{"--op-timeout", "> 0s"}},
		{[]string{"--acquire-timeout", "-1s"}, []string{"--acquire-timeout", "> 0s"}},
		{[]string{"--nemesis-interval", "-1s"}, []string{"--nemesis-interval", "> 0s"}},
		{[]string{"--nemesis", "kill", "--nemesis-interval", "0"}, []string{"--nemesis-interval", "> 0s"}},
		{[]string{"--warmup", "-1s"}, []string{"--warmup", ">= 0s"}},
		{[]string{"--ops", "-5"}, []string{"--ops", ">= 0"}},
		{[]string{"--rate", "NaN"}, []string{"--rate", ">= 0"}},
		{[]string{"--rate", "-1"}, []string{"--rate", ">= 0"}},
		{[]string{"--opt", "hold=-1s"}, []string{"hold", "out of range"}},
		{[]string{"--opt", "hold=soon"}, []string{"hold", "want a duration"}},
		// Issue 15: checkpoints during a phase.
		{[]string{"--checkpoint", "-1s"}, []string{"--checkpoint -1s", "0 (off) or >= 1s"}},
		{[]string{"--checkpoint", "500ms"}, []string{"--checkpoint 500ms", "0 (off) or >= 1s"}},
		{[]string{"--checkpoint", "1ns"}, []string{"--checkpoint 1ns", "0 (off) or >= 1s"}},
		{[]string{"--lock-opt", "foo"}, []string{"-lock-opt", "key=value"}},
		{[]string{"--lock-opt", "=x"}, []string{"-lock-opt", "key=value"}},
		// Issue 12: topologies.
		{[]string{"--topology", "redis-cluster"}, []string{"--topology", "unknown topology", "redis-sentinel"}},
		{[]string{"--topology", "redis-sentinel"}, []string{"redis-setnx runs on independent nodes", "redis-sentinel-setnx"}},
		{[]string{"--impl", "redis-sentinel-wait"}, []string{"redis-sentinel-wait needs the redis-sentinel topology", "--topology redis-sentinel"}},
		{[]string{"--fault", "failover@1s"}, []string{"failover need a replicated topology", "--topology"}},
		{[]string{"--fault", "replication-lag=200ms@1s+1s"}, []string{"replication-lag need a replicated topology"}},
	}
	outs := t.TempDir()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	for i, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			out := filepath.Join(outs, fmt.Sprint(i))
			args := append([]string{"run", "--impl", "redis-setnx", "--out", out}, c.args...)
			start := time.Now()
			code, _, stderr := cli(t, args...)
			took := time.Since(start)
			if code != exitUsage {
				t.Fatalf("exit %d, want 2; stderr:\n%s", code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if took > 2*time.Second {
				t.Errorf("took %v: something started", took)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("run directory %s was created (err %v)", out, err)
			}
			if n := infra.LiveEnvs(); n != 0 {
				t.Errorf("%d environments live", n)
			}
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("temp dir not empty: %v", ents)
			}
		})
	}
}

// Defaults fill only what the user left unset; an explicit quiet shorter
// than the ttl is raised to the ttl, with a note.
func TestParseRunDefaultsAndQuietRaise(t *testing.T) {
	cases := []struct {
		args      []string
		quiet     time.Duration
		noteQuiet bool
	}{
		{[]string{"--ttl", "1s"}, 2 * time.Second, false},
		{[]string{"--ttl", "1s", "--quiet", "100ms"}, time.Second, true},
		{[]string{"--ttl", "1s", "--quiet", "0"}, time.Second, true},
		{[]string{"--ttl", "1s", "--quiet", "3s"}, 3 * time.Second, false},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			rf, code, ok := parseRun(append([]string{"--impl", "redis-setnx"}, c.args...), io.Discard)
			if !ok {
				t.Fatalf("exit %d", code)
			}
			if rf.cfg.Quiet != c.quiet {
				t.Errorf("quiet %v, want %v", rf.cfg.Quiet, c.quiet)
			}
			noted := len(rf.cfg.Notes) == 1 && strings.Contains(rf.cfg.Notes[0], "raised to 1s")
			if noted != c.noteQuiet {
				t.Errorf("notes %q, want a raise note: %v", rf.cfg.Notes, c.noteQuiet)
			}
		})
	}
	rf, _, ok := parseRun([]string{"--impl", "redis-setnx"}, io.Discard)
	if !ok || rf.cfg.Duration != 10*time.Second || rf.cfg.Clients != 8 || rf.cfg.Keys != 8 || rf.cfg.TTL != time.Second {
		t.Errorf("defaults: %+v", rf.cfg)
	}
}

// --checkpoint: given, it is kept (0 turns it off); unset, a phase longer
// than a minute checkpoints every minute and a shorter one not at all.
func TestCheckpointFlag(t *testing.T) {
	cases := []struct {
		args []string
		want time.Duration
	}{
		{[]string{"--duration", "10s"}, 0},
		{[]string{"--duration", "1m"}, 0},
		{[]string{"--duration", "1h"}, time.Minute},
		{[]string{"--duration", "1h", "--checkpoint", "0"}, 0},
		{[]string{"--duration", "1h", "--checkpoint", "10s"}, 10 * time.Second},
		{[]string{"--duration", "10s", "--checkpoint", "1s"}, time.Second},
		// README's soak command.
		{[]string{"--duration", "1h", "--rate", "500", "--nemesis", "partition,kill,pause", "--nemesis-interval", "2m", "--checkpoint", "1m"}, time.Minute},
	}
	out := t.TempDir()
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var stderr strings.Builder
			rf, code, ok := parseRun(append([]string{"--impl", "redis-setnx", "--out", out}, c.args...), &stderr)
			if !ok {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			if rf.cfg.Checkpoint != c.want {
				t.Errorf("checkpoint %v, want %v", rf.cfg.Checkpoint, c.want)
			}
		})
	}
}
