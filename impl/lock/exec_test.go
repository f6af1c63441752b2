package lock_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
)

// needPython skips when the Debian python3 with redis-py (scripts/deps.sh)
// is missing.
func needPython(t *testing.T, module string) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import "+module).Run(); err != nil {
		t.Skipf("/usr/bin/python3 with %s not installed (scripts/deps.sh installs python3-redis): %v", module, err)
	}
}

// TestExecBrokenAdapters: every way an adapter can misbehave gives a clear
// error naming the process (and the stdout line for bad output), marks the
// call as a lost process (indeterminate, restart), and never hangs past the
// deadline plus the grace period. No servers needed.
func TestExecBrokenAdapters(t *testing.T) {
	needPython(t, "json")
	cases := []struct {
		mode     string
		kind     string   // ProcessError.Kind of the acquire
		contains []string // in the error text
	}{
		{"garbage", "protocol-error", []string{"process 7", "stdout line 2", "not a JSON reply", "garbage on stdout"}},
		{"hang", "no-reply", []string{"process 7", "no reply to request 1 (acquire)"}},
		{"crash", "process-died", []string{"process 7", "exited", "exit status 3", "crashing mid-operation"}},
		{"unknown-id", "protocol-error", []string{"stdout line 2", "answers id 1001, which no request in flight has"}},
		{"bad-outcome", "protocol-error", []string{"stdout line 2", `outcome "maybe"`}},
		{"no-token", "protocol-error", []string{"stdout line 2", `needs a non-empty "token"`}},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			info, err := lock.Lookup("exec:testdata/exec/broken.py:" + c.mode)
			if err != nil {
				t.Fatalf("Lookup: %v", err)
			}
			l, err := info.New(ctxFor(t, 10*time.Second), lock.Endpoints{}, lock.Options{Process: 7})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer l.Close()
			const deadline = 300 * time.Millisecond
			start := time.Now()
			_, err = l.Acquire(ctxFor(t, deadline), "k0", ttl)
			took := time.Since(start)
			var pe *lock.ProcessError
			if !errors.As(err, &pe) || pe.Kind != c.kind || !errors.Is(err, lock.ErrProcessLost) {
				t.Fatalf("Acquire: %v, want a ProcessError of kind %s", err, c.kind)
			}
			if errors.Is(err, lock.ErrNotAcquired) {
				t.Fatalf("Acquire: %v must not be a definite not-acquired", err)
			}
			for _, s := range c.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if limit := deadline + 500*time.Millisecond + 2*time.Second; took > limit {
				t.Errorf("Acquire took %v, want at most the deadline plus the grace period (%v)", took, limit)
			}
			// The process is dead for good: the next call fails at once.
			if err := l.Release(ctxFor(t, time.Second), lock.Lease{Key: "k0", Token: "t"}); !errors.Is(err, lock.ErrProcessLost) {
				t.Errorf("Release after the loss: %v, want ErrProcessLost", err)
			}
		})
	}
}

// TestExecBadDeclarations: an init reply that is not a declaration fails
// the lookup with the line, before anything runs.
func TestExecBadDeclarations(t *testing.T) {
	needPython(t, "json")
	for _, c := range []struct{ spec, want string }{
		{"exec:testdata/exec/broken.py:init-garbage", "stdout line 1 is not a JSON reply"},
		{"exec:testdata/exec/broken.py:init-kind", `kind "queue"`},
		{"exec:testdata/exec/missing.py", "no such executable file"},
		{"exec:testdata/exec", "no such executable file"},
		{"exec:examples/python/twopc.py", `declares kind "txn", not lock`},
	} {
		if _, err := lock.Lookup(c.spec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Lookup(%s): %v, want an error containing %q", c.spec, err, c.want)
		}
	}
}

// execSpecs are the example lock adapters tested against real Redis: the
// Python safe lock and the Go adapter of redis-setnx (built into a
// temporary directory).
func execSpecs(t *testing.T) []string {
	t.Helper()
	needPython(t, "redis")
	bin := filepath.Join(t.TempDir(), "setnx")
	out, err := exec.Command("go", "build", "-o", bin, "../../examples/go/setnx").CombinedOutput()
	if err != nil {
		t.Fatalf("go build examples/go/setnx: %v\n%s", err, out)
	}
	return []string{"exec:examples/python/safe_lock.py", "exec:" + bin, "exec:" + readmeAdapter(t)}
}

// readmeAdapter writes the README's complete adapter (the python block of
// "Your own implementation, in any language") next to a copy of the helper,
// so the README's example is tested as printed.
func readmeAdapter(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "## Your own implementation, in any language")
	_, code, ok2 := strings.Cut(sec, "```python\n")
	code, _, ok3 := strings.Cut(code, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README: no python adapter under \"## Your own implementation, in any language\"")
	}
	if n := strings.Count(code, "\n"); n >= 40 {
		t.Errorf("README adapter is %d lines, want under 40", n)
	}
	dir := t.TempDir()
	helper, err := os.ReadFile("../../examples/python/faultline_adapter.py")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "faultline_adapter.py"), helper, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "my_lock.py")
	if err := os.WriteFile(path, []byte(code), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestExecConformance runs the correct example adapters through the lock
// contract over the protocol, on real Redis.
func TestExecConformance(t *testing.T) {
	needEnv(t)
	for _, spec := range execSpecs(t) {
		t.Run(filepath.Base(spec), func(t *testing.T) {
			info, err := lock.Lookup(spec)
			if err != nil {
				t.Fatalf("Lookup: %v", err)
			}
			if info.Mutant || info.RedisNodes != 1 {
				t.Fatalf("declaration %+v: want a non-mutant on 1 Redis node", info)
			}
			a, b := newLocker(t, info, lock.Options{}), newLocker(t, info, lock.Options{})
			key := uniqueKey(t)
			l := mustAcquire(t, a, key, 5*time.Second)
			if _, err := b.TryAcquire(ctxFor(t, 2*time.Second), key, ttl); !errors.Is(err, lock.ErrNotAcquired) {
				t.Fatalf("TryAcquire on a held key: %v, want ErrNotAcquired", err)
			}
			start := time.Now()
			if _, err := b.Acquire(ctxFor(t, 300*time.Millisecond), key, ttl); !errors.Is(err, lock.ErrNotAcquired) {
				t.Fatalf("Acquire on a held key: %v, want ErrNotAcquired at its timeout", err)
			}
			if d := time.Since(start); d > 300*time.Millisecond+400*time.Millisecond {
				t.Errorf("Acquire gave up after %v, want about 300ms", d)
			}
			if strings.HasSuffix(spec, "my_lock.py") { // the README adapter has no refresh: indeterminate, never a "no"
				if _, err := a.Refresh(ctxFor(t, time.Second), l, 5*time.Second); err == nil || errors.Is(err, lock.ErrNotHeld) {
					t.Errorf("Refresh of an adapter without refresh: %v, want indeterminate", err)
				}
			} else if _, err := a.Refresh(ctxFor(t, time.Second), l, 5*time.Second); err != nil {
				t.Errorf("Refresh: %v", err)
			}
			if err := b.Release(ctxFor(t, time.Second), lock.Lease{Key: key, Token: "not-mine"}); !errors.Is(err, lock.ErrNotHeld) {
				t.Errorf("Release by a non-holder: %v, want ErrNotHeld", err)
			}
			if err := a.Release(ctxFor(t, time.Second), l); err != nil {
				t.Fatalf("Release: %v", err)
			}
			if err := a.Release(ctxFor(t, time.Second), l); !errors.Is(err, lock.ErrNotHeld) {
				t.Errorf("second Release: %v, want ErrNotHeld", err)
			}
			wantFree(t, info, key)
		})
	}
}

// TestExecProcessFaults: a Locker with a process of its own is stopped,
// continued and killed for real, and a killed process's next call is a
// lost process, not a verdict.
func TestExecProcessFaults(t *testing.T) {
	needEnv(t)
	needPython(t, "redis")
	info := mustLookup(t, "exec:examples/python/safe_lock.py")
	l := newLocker(t, info, lock.Options{})
	p, ok := lock.ProcessOf(l)
	if !ok || p.Pid() <= 0 {
		t.Fatalf("ProcessOf: %v %v, want the adapter's OS process", p, ok)
	}
	state := func() string {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.Pid()), "stat"))
		if err != nil {
			return "gone"
		}
		f := strings.Fields(string(b))
		return f[2]
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return state() == "T" }, "process stopped (state T)")
	if err := p.Continue(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return state() != "T" }, "process running again")
	mustAcquire(t, l, uniqueKey(t), ttl)
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	_, err := l.Acquire(ctxFor(t, time.Second), uniqueKey(t), ttl)
	var pe *lock.ProcessError
	if !errors.As(err, &pe) || pe.Kind != "process-died" || !strings.Contains(err.Error(), "SIGKILL") {
		t.Fatalf("Acquire after Kill: %v, want a process-died ProcessError", err)
	}
}

// TestExecSeedLockCrashAfterSetNX: the article's lock, with its process
// killed between SETNX and EXPIRE (crash-after-setnx=true: the adapter
// SIGKILLs itself there), leaves the key with no ttl: held forever.
func TestExecSeedLockCrashAfterSetNX(t *testing.T) {
	needEnv(t)
	needPython(t, "redis")
	info := mustLookup(t, "exec:examples/python/seed_lock.py")
	if !info.Mutant {
		t.Fatalf("seed_lock.py must declare itself a mutant")
	}
	l := newLocker(t, info, lock.Options{Params: map[string]string{"crash-after-setnx": "true"}})
	key := uniqueKey(t)
	_, err := l.Acquire(ctxFor(t, 2*time.Second), key, ttl)
	var pe *lock.ProcessError
	if !errors.As(err, &pe) || pe.Kind != "process-died" {
		t.Fatalf("Acquire with crash-after-setnx: %v, want the process to die", err)
	}
	pttl, err := rawRedis(t, 0).PTTL(ctxFor(t, time.Second), key).Result()
	if err != nil || pttl != -1 {
		t.Fatalf("PTTL %s: %v %v, want -1 (a key with no ttl: leaked forever)", key, pttl, err)
	}
	wantHeld(t, info, key)
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		elapse(5 * time.Millisecond)
	}
}

// BenchmarkExecOverhead measures the process protocol's cost: one
// uncontended Acquire+Release cycle of redis-setnx in-process, the same Go
// implementation over the protocol (examples/go/setnx: the pipes, JSON and
// the adapter process's scheduling alone), and the Python safe lock (SET NX
// PX + Lua, redis-py), on the same Redis node (direct). Each benchmark
// iteration is one round of 50 cycles of each, interleaved so that a
// machine whose load changes during the run affects all three alike; the
// metrics are the median µs per cycle and the ratios to in-process:
//
//	go test -bench ExecOverhead -run '^$' -benchtime 20x ./impl/lock/
func BenchmarkExecOverhead(b *testing.B) {
	needEnv(b)
	if err := exec.Command("/usr/bin/python3", "-c", "import redis").Run(); err != nil {
		b.Skip("/usr/bin/python3 with redis-py not installed")
	}
	bin := filepath.Join(b.TempDir(), "setnx")
	if out, err := exec.Command("go", "build", "-o", bin, "../../examples/go/setnx").CombinedOutput(); err != nil {
		b.Fatalf("go build examples/go/setnx: %v\n%s", err, out)
	}
	impls := []struct{ metric, impl string }{
		{"inproc-us/cycle", "redis-setnx"},
		{"go-protocol-us/cycle", "exec:" + bin},
		{"python-us/cycle", "exec:examples/python/safe_lock.py"},
	}
	lockers := make([]lock.Locker, len(impls))
	for i, c := range impls {
		info, err := lock.Lookup(c.impl)
		if err != nil {
			b.Fatal(err)
		}
		lockers[i] = newLocker(b, info, lock.Options{})
	}
	const cycles = 50
	key := uniqueKey(b)
	samples := make([][]float64, len(impls))
	for b.Loop() {
		for i, l := range lockers {
			start := time.Now()
			for range cycles {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				lease, err := l.Acquire(ctx, key, 2*time.Second)
				if err == nil {
					err = l.Release(ctx, lease)
				}
				cancel()
				if err != nil {
					b.Fatalf("%s cycle: %v", impls[i].impl, err)
				}
			}
			samples[i] = append(samples[i], float64(time.Since(start).Microseconds())/cycles)
		}
	}
	med := make([]float64, len(impls))
	for i, s := range samples {
		sort.Float64s(s)
		med[i] = s[len(s)/2]
		b.ReportMetric(med[i], impls[i].metric)
	}
	b.ReportMetric(med[1]/med[0], "go-protocol/inproc")
	b.ReportMetric(med[2]/med[0], "python/inproc")
	b.ReportMetric(med[2]/med[1], "python/go-protocol")
}
