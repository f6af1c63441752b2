package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsExit2AndSayWhatIsValid(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want []string // in stderr
	}{
		{[]string{"run", "--impl", "nope"}, 2, []string{`unknown implementation "nope"`, "redis-setnx", "redis-fenced", "pg-lease", "redlock"}},
		{[]string{"run", "--impl", "redis-setnx", "--workload", "nope"}, 2, []string{`unknown workload "nope"`, "counter", "fenced-counter"}},
		{[]string{"run"}, 2, []string{"give --impl", "redis-setnx"}},
		{[]string{"run", "--impl", "redis-setnx", "--fault", "boom@1s"}, 2, []string{"valid kinds", "holder-pause"}},
		{[]string{"run", "--impl", "redis-setnx", "--format", "xml"}, 2, []string{"text, json, gobench"}},
		{[]string{"run", "--impl", "redis-setnx", "--bogus"}, 2, []string{"flag provided but not defined: -bogus"}},
		{[]string{"run", "--impl", "redis-setnx", "--provider", "cloud"}, 2, []string{"auto, local, docker"}},
		{[]string{"frobnicate"}, 2, []string{`unknown command "frobnicate"`, "run, list, report, gate, gc, version"}},
		{nil, 2, []string{"Usage:"}},
		{[]string{"run", "--help"}, 0, []string{"-impl", "-workload", "-fault", "-nemesis", "-rate", "-lock-opt"}},
		{[]string{"gate", "--baseline", "/nonexistent/baseline.json", "/nonexistent/results.json"}, 2, []string{"baseline.json"}},
		{[]string{"report", "/nonexistent"}, 2, []string{"/nonexistent"}},
		{[]string{"ceiling", "--clients", "1,0"}, 2, []string{"from 1 to 1000"}},
		{[]string{"ceiling", "--ops", "ping,get"}, 2, []string{"valid commands are ping, set"}},
		{[]string{"ceiling", "--requests", "5"}, 2, []string{"--requests must be 100"}},
		{[]string{"ceiling", "--provider", "cloud"}, 2, []string{"auto, local, docker"}},
		{[]string{"ceiling", "extra"}, 2, []string{`unexpected argument "extra"`}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, _, stderr := cli(t, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, c.code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

func TestListAndVersion(t *testing.T) {
	code, out, _ := cli(t, "list")
	if code != 0 {
		t.Fatalf("list exit %d", code)
	}
	for _, w := range []string{"redis-setnx", "redis-release-unchecked", "[mutant]", "counter", "fenced-counter", "holder-pause", "kill"} {
		if !strings.Contains(out, w) {
			t.Errorf("list lacks %q", w)
		}
	}
	if code, out, _ := cli(t, "version"); code != 0 || !strings.Contains(out, "faultline ") {
		t.Errorf("version: %d %q", code, out)
	}
}

// The acceptance run: redis-setnx on counter, 8 clients, 5 s, on
// real servers; results.json valid, history complete.
func TestRunCounterEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers (-short)")
	}
	dir := t.TempDir()
	code, stdout, stderr := cli(t, "run", "--impl", "redis-setnx", "--workload", "counter", "--clients", "8",
		"--duration", "5s", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	t.Logf("summary:\n%s", stdout)
	if !strings.Contains(stdout, "redis-setnx") || !strings.Contains(stdout, dir) {
		t.Errorf("summary lacks the implementation or the results path:\n%s", stdout)
	}
	res, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ir := res.Impl("redis-setnx")
	if res.Schema != 1 || ir == nil || ir.Ops["cycle"].OK == 0 || ir.Ops["acquire"].Histogram == nil {
		t.Fatalf("results lack measurements: schema %d, impl %+v", res.Schema, ir)
	}
	if res.WorkloadInfo == nil || res.WorkloadInfo.Kind != results.KindLock || res.WorkloadInfo.Headline != "cycle" {
		t.Errorf("results lack the workload description: %+v", res.WorkloadInfo)
	}
	if !strings.Contains(res.Command, "--seed ") || res.Versions["redis"] == "" || res.Versions["go"] == "" || res.Path != "direct" {
		t.Errorf("results lack the reproducing command, versions or path: %q %v %q", res.Command, res.Versions, res.Path)
	}
	found := false
	for _, v := range res.Verdicts {
		if v.Checker == "mutual-exclusion" && v.Impl == "redis-setnx" {
			found = true
			if v.Valid != results.Valid {
				t.Errorf("mutual-exclusion verdict %s: %s", v.Valid, v.Summary)
			}
		}
	}
	if !found {
		t.Errorf("no mutual-exclusion verdict in %+v", res.Verdicts)
	}
	ops, err := history.Load(filepath.Join(dir, history.FileName))
	if err != nil {
		t.Fatal(err)
	}
	checkPaired(t, ops)
}

// checkPaired asserts that every invocation has exactly one completion by
// the same process, and nothing completes what was not invoked.
func checkPaired(t *testing.T, ops []history.Op) {
	t.Helper()
	open := map[int]history.Op{}
	n := 0
	for _, op := range ops {
		if op.Process < 0 {
			continue
		}
		if op.Type == history.Invoke {
			if prev, ok := open[op.Process]; ok {
				t.Fatalf("process %d invoked %s (index %d) before completing %s (index %d)", op.Process, op.F, op.Index, prev.F, prev.Index)
			}
			open[op.Process] = op
			n++
			continue
		}
		inv, ok := open[op.Process]
		if !ok || inv.F != op.F {
			t.Fatalf("completion %+v has no matching invocation", op)
		}
		delete(open, op.Process)
	}
	for p, op := range open {
		t.Errorf("process %d: %s (index %d) never completed", p, op.F, op.Index)
	}
	if n == 0 {
		t.Fatal("no operation in the history")
	}
}

// The canonical command line recorded in results.json parses back into the
// same configuration.
func TestCommandLineReproducesTheConfig(t *testing.T) {
	args := []string{"--impl", "redis-setnx,redis-fenced", "--workload", "fenced-counter", "--clients", "3", "--ttl", "400ms",
		"--fault", "latency:all=200ms±50ms@1s+2s", "--fault", "holder-pause:2xttl@3s", "--nemesis", "pause,kill",
		"--nemesis-interval", "4s", "--lock-opt", "watchdog=true", "--seed", "9", "--rate", "50", "--warmup", "1s", "--ops", "1000"}
	rf, code, ok := parseRun(args, io.Discard)
	if !ok {
		t.Fatalf("parse: exit %d", code)
	}
	rf.cfg.Command = ""
	line := rf.cfg.CommandLine()
	again, code, ok := parseRun(shellSplit(t, line)[2:], io.Discard)
	if !ok {
		t.Fatalf("canonical command %q does not parse: exit %d", line, code)
	}
	a, b := rf.cfg.Map(), again.cfg.Map()
	for _, k := range []string{"run_id", "out"} {
		delete(a, k)
		delete(b, k)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("command %q\ngave %v\nwant %v", line, b, a)
	}
	// And the CLI's own record keeps what was typed, plus a random seed.
	rf, _, _ = parseRun([]string{"--impl", "redis-setnx", "--fault", "kill:redis-1@1s+1s"}, io.Discard)
	if !strings.HasPrefix(rf.cfg.Command, "faultline run --impl redis-setnx --fault kill:redis-1@1s+1s --seed ") {
		t.Errorf("recorded command %q", rf.cfg.Command)
	}
}

// shellSplit splits a command line that uses single quotes only.
func shellSplit(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	in, any := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			in, any = !in, true
		case c == ' ' && !in:
			if any {
				out = append(out, cur.String())
			}
			cur.Reset()
			any = false
		case c == '\\' && !in && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			any = true
		default:
			cur.WriteByte(c)
			any = true
		}
	}
	if in {
		t.Fatalf("unbalanced quote in %q", s)
	}
	if any {
		out = append(out, cur.String())
	}
	return out
}

// A fault whose target the environment lacks is a usage error found before
// any load runs.
func TestRunUnknownFaultTargetExits2(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers (-short)")
	}
	code, _, stderr := cli(t, "run", "--impl", "redis-setnx", "--provider", "local", "--duration", "2s",
		"--fault", "kill:redis-7@1s+1s", "--out", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "redis-7") || !strings.Contains(stderr, "redis-1") {
		t.Fatalf("exit %d, want 2 naming the bad target and the valid nodes; stderr:\n%s", code, stderr)
	}
}
