//go:build unix

package bench

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestLockRunDir(t *testing.T) {
	dir := t.TempDir()
	release, err := lockRunDir(dir)
	if err != nil {
		t.Fatalf("first lock: %v", err)
	}
	_, err = lockRunDir(dir)
	var ue *UsageError
	if !errors.As(err, &ue) {
		t.Fatalf("second lock of a held run directory: got %v, want a UsageError", err)
	}
	if !strings.Contains(ue.Msg, "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(ue.Msg, "--out") {
		t.Errorf("error should name the holder's pid and the way out: %q", ue.Msg)
	}
	release()
	if _, err := os.Stat(filepath.Join(dir, runDirLock)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file left after release: %v", err)
	}
	again, err := lockRunDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
}
