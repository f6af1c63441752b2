//go:build unix

// Unix only: tests proctree.go.

package infra

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestProcAlive checks the one liveness test on real processes: a running
// child is alive; once it exits it is a zombie until reaped, and dead both
// as a zombie and once reaped. GC agrees: a zombie owner's dir is stale.
func TestProcAlive(t *testing.T) {
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatalf("start sleep: %v", err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })

	exited := exec.Command("true")
	if err := exited.Start(); err != nil {
		t.Fatalf("start true: %v", err)
	}
	zombie := exited.Process.Pid
	// Not reaped (no Wait yet): poll until the kernel shows it as a zombie.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pollEvery(ctx, 5*time.Millisecond, nil, func(context.Context) error {
		f, err := procStat(zombie)
		if err != nil {
			return err
		}
		if f[0] != "Z" {
			return fmt.Errorf("state %s", f[0])
		}
		return nil
	}); err != nil {
		t.Fatalf("child %d never became a zombie: %v", zombie, err)
	}
	zombieDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(zombieDir, ownerFile), []byte(fmt.Sprintf("%d 0\n", zombie)), 0o644); err != nil {
		t.Fatal(err)
	}
	if gone, known := ownerGone(zombieDir); !gone || !known {
		t.Errorf("ownerGone(zombie owner) = gone %v, known %v; want a zombie owner gone", gone, known)
	}

	for _, tc := range []struct {
		name string
		pid  func() int
		want bool
	}{
		{"this process", os.Getpid, true},
		{"running child", func() int { return sleeper.Process.Pid }, true},
		{"exited, not reaped (zombie)", func() int { return zombie }, false},
		{"exited and reaped", func() int {
			if err := exited.Wait(); err != nil {
				t.Fatalf("wait: %v", err)
			}
			return zombie
		}, false},
		{"never existed", func() int { return 1 << 30 }, false}, // above any pid_max
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := procAlive(tc.pid()); got != tc.want {
				t.Errorf("procAlive = %v, want %v", got, tc.want)
			}
		})
	}
}
