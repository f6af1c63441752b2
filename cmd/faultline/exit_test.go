package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// TestMain lets a test run the CLI as a child process (to send it real
// signals): with FAULTLINE_CLI_CHILD=1 the test binary is faultline.
func TestMain(m *testing.M) {
	if os.Getenv("FAULTLINE_CLI_CHILD") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// SIGTERM exits 143 and SIGINT 130; either way the run stops gracefully:
// what was recorded is flushed and checked, results.json says interrupted,
// and no server temp dir is left behind.
func TestSignalsExitCodesAndCleanup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers (-short)")
	}
	for _, c := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGTERM, 143}, {syscall.SIGINT, 130}} {
		t.Run(c.sig.String(), func(t *testing.T) {
			child := startRunChild(t, "--duration", "60s")
			// The load is running once the history has its first entries.
			child.waitFor(t, "history", func(size int64) bool { return size > 0 })
			sent := time.Now()
			if err := child.cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			<-child.exited
			if got := child.cmd.ProcessState.ExitCode(); got != c.code {
				t.Fatalf("exit %d after %s, want %d:\n%s", got, c.sig, c.code, child.stderr.String())
			}
			t.Logf("%s: exit %d %v after the signal", c.sig, c.code, time.Since(sent).Round(time.Millisecond))
			res, err := results.Load(child.out)
			if err != nil {
				t.Fatalf("no results after %s: %v", c.sig, err)
			}
			if !res.Interrupted || len(res.Verdicts) == 0 {
				t.Errorf("results: interrupted %v, %d verdicts", res.Interrupted, len(res.Verdicts))
			}
			if ents, _ := os.ReadDir(child.tmp); len(ents) != 0 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("left behind in TMPDIR: %v", names)
			}
		})
	}
}

// --fail-on-violation: a run whose checker finds a violation exits 1.
// The mutant's release deletes without checking its token; a holder paused
// past its ttl makes two holders at once (chaos/expected.md).
func TestRunFailOnViolation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers (-short)")
	}
	dir := t.TempDir()
	code, stdout, stderr := cli(t, "run", "--impl", "redis-release-unchecked", "--ttl", "200ms", "--duration", "2s",
		"--fault", "holder-pause:k0=2xttl@0.4s", "--out", dir, "--seed", "3", "--fail-on-violation")
	if code != exitFail || !strings.Contains(stderr, "--fail-on-violation") {
		t.Fatalf("exit %d, want 1 naming --fail-on-violation\n%s\n%s", code, stdout, stderr)
	}
	res, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if invalidVerdicts(res) == 0 {
		t.Fatalf("no invalid verdict: %+v", res.Verdicts)
	}
	// The same saved run, re-checked without the flag: exit 0.
	if code, _, errs := cli(t, "check", dir); code != 0 {
		t.Errorf("check without --fail-on-violation: exit %d\n%s", code, errs)
	}
}

// A run killed outright (kill -9: no graceful stop) still leaves a saved
// run: the checkpoint results.json and the history up to its last flush,
// which `faultline check` judges, saying the history was cut.
func TestKilledRunIsCheckable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers (-short)")
	}
	child := startRunChild(t, "--duration", "60s")
	// Past the first compressed blocks: the load has run a while.
	child.waitFor(t, "history over 64 KiB", func(size int64) bool { return size > 64<<10 })
	child.kill(t)
	out := child.out
	code, stdout, errs := cli(t, "check", out)
	if code != 0 {
		t.Fatalf("check of the killed run: exit %d\n%s\n%s", code, stdout, errs)
	}
	res, err := results.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(res.Notes, "\n")
	if !res.Interrupted || len(res.Verdicts) == 0 || !strings.Contains(notes, "checkpoint at") ||
		!strings.Contains(notes, "stops inside its last compressed frame") {
		t.Errorf("killed run: interrupted %v, %d verdicts, notes:\n%s", res.Interrupted, len(res.Verdicts), notes)
	}
	for _, v := range res.Verdicts {
		if v.Checker == "mutual-exclusion" && v.Valid == results.Invalid {
			t.Errorf("a cut history is not a violation: %+v", v)
		}
	}
}

// A run killed outright during its phase keeps that phase's figures up to
// its last checkpoint (--checkpoint 1s: operations counted, a latency
// histogram, throughput), and `faultline check` and `faultline report`
// work on it. Its twin without checkpoints, killed the same way, has only
// the checkpoint written before the phase: no figures for it.
func TestKilledRunKeepsCheckpointFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers (-short)")
	}
	for _, c := range []struct {
		checkpoint string
		figures    bool
	}{{"1s", true}, {"0", false}} {
		t.Run("checkpoint="+c.checkpoint, func(t *testing.T) {
			child := startRunChild(t, "--duration", "30s", "--checkpoint", c.checkpoint)
			// Kill about 3 s into the phase: the history's first entry
			// marks its start, then a little over 3 s of load.
			var loadSince time.Time
			child.waitFor(t, "3 s of load", func(size int64) bool {
				if loadSince.IsZero() && size > 0 {
					loadSince = time.Now()
				}
				return !loadSince.IsZero() && time.Since(loadSince) >= 3200*time.Millisecond
			})
			child.kill(t)
			out := child.out

			res, err := results.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Interrupted || res.Checkpoint == nil || res.Checkpoint.Phase != "redis-setnx" || len(res.Impls) != 1 {
				t.Fatalf("checkpoint: interrupted %v, %+v, %d impls", res.Interrupted, res.Checkpoint, len(res.Impls))
			}
			ops := res.Impls[0].Ops["acquire"]
			got := ops.Count > 0 && ops.Histogram != nil && ops.Throughput > 0 && res.Checkpoint.Time > 0
			if got != c.figures {
				t.Errorf("phase figures kept %v, want %v: checkpoint %+v, acquire %+v", got, c.figures, res.Checkpoint, ops)
			}

			code, stdout, errs := cli(t, "check", out)
			if code != 0 {
				t.Fatalf("check of the killed run: exit %d\n%s\n%s", code, stdout, errs)
			}
			checked, err := results.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(checked.Verdicts) == 0 || checked.Impls[0].Ops["acquire"].Count != ops.Count {
				t.Errorf("check: %d verdicts, acquire count %d (checkpoint had %d)", len(checked.Verdicts), checked.Impls[0].Ops["acquire"].Count, ops.Count)
			}
			// The acquires in flight at the kill were cut, not timed out:
			// left out of the checks (noted), no stall reported for them.
			if notes := strings.Join(checked.Notes, "\n"); !strings.Contains(notes, "in flight when the run died") {
				t.Errorf("no note on the operations cut by the kill:\n%s", notes)
			}
			for _, v := range checked.Verdicts {
				if (v.Checker == "availability" || v.Checker == "mutual-exclusion") && v.Valid == results.Invalid {
					t.Errorf("a killed correct run is not a violation: %+v", v)
				}
			}
			if code, stdout, errs := cli(t, "report", out); code != 0 {
				t.Errorf("report of the killed run: exit %d\n%s\n%s", code, stdout, errs)
			}
		})
	}
}

// runChild is a `faultline run` started as a child process of the test
// binary (so a test can signal or kill it): local provider, redis-setnx,
// 2 clients, its servers' temp dir in tmp, its saved run in out.
type runChild struct {
	cmd      *exec.Cmd
	exited   chan struct{}
	stderr   *strings.Builder
	out, tmp string
}

// startRunChild starts the child with extra run flags (e.g. --duration).
func startRunChild(t *testing.T, args ...string) *runChild {
	t.Helper()
	// The local servers run as user nobody: their temp dir must be
	// reachable (t.TempDir's parent is private).
	tmp, err := os.MkdirTemp("", "fl-child-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &runChild{exited: make(chan struct{}), stderr: &strings.Builder{}, out: filepath.Join(t.TempDir(), "run"), tmp: tmp}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	c.cmd = exec.CommandContext(ctx, os.Args[0], append([]string{"run", "--impl", "redis-setnx", "--provider", "local",
		"--clients", "2", "--out", c.out}, args...)...)
	c.cmd.Env = append(os.Environ(), "FAULTLINE_CLI_CHILD=1", "TMPDIR="+tmp)
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	return c
}

// waitFor polls the child's history size until ready says so; it fails
// the test if the child exits first or 60 s pass.
func (c *runChild) waitFor(t *testing.T, what string, ready func(historySize int64) bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var size int64
		if st, err := os.Stat(filepath.Join(c.out, history.FileName)); err == nil {
			size = st.Size()
		}
		if ready(size) {
			return
		}
		if time.Now().After(deadline) {
			_ = c.cmd.Process.Kill()
			<-c.exited
			t.Fatalf("no %s 60 s after the start:\n%s", what, c.stderr.String())
		}
		select {
		case <-c.exited:
			t.Fatalf("exited before %s (%d):\n%s", what, c.cmd.ProcessState.ExitCode(), c.stderr.String())
		case <-time.After(50 * time.Millisecond): // polling a file, with a deadline
		}
	}
}

// kill sends SIGKILL (no graceful stop) and waits for the exit.
func (c *runChild) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.exited
}
