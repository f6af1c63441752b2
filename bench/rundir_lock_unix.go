//go:build unix

package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// runDirLock is the lock file a run holds in its directory while it writes
// there (removed when the run ends).
const runDirLock = ".faultline-run.lock"

// lockRunDir takes an exclusive, non-blocking flock on dir's lock file, so
// that two runs given the same --out fail at once instead of interleaving
// their compressed histories into one unreadable file. The kernel drops
// the lock when the process dies, so a killed run never leaves dir locked.
func lockRunDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, runDirLock)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("run directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another faultline run"
			if pid := strings.TrimSpace(string(holder)); pid != "" {
				who += " (pid " + pid + ")"
			}
			return nil, &UsageError{Msg: fmt.Sprintf("%s is writing to %s: give each concurrent run its own --out", who, dir)}
		}
		return nil, fmt.Errorf("run directory lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
	return func() {
		_ = os.Remove(path) // while still held: a waiting run then locks a fresh file
		f.Close()
	}, nil
}
