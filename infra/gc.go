package infra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ownerFile, inside a faultline temp dir, names the process that owns the
// dir: "<pid> <start time in clock ticks since boot>" (the start time tells
// a reused pid apart). markTempDirOwner writes it.
const ownerFile = ".faultline-owner"

// gcUnownedAge is how old a faultline temp dir without an owner file must be
// (newest modification of the dir and its entries) before GC removes it, and
// only when no running process has its working directory or an open file in it.
const gcUnownedAge = time.Hour

// GC removes what runs of faultline left behind, for `faultline gc`:
//   - every docker container labelled dev.faultline=1, running, paused or
//     exited, with its anonymous volumes — including those of a run still in
//     progress in another process, so run it when no run is going on;
//   - every docker network labelled the same (the topologies' networks);
//   - temp dirs named faultline-* (in os.TempDir) whose owner process is
//     gone, best effort: a dir with an owner file is removed when that process
//     no longer exists; one without is removed when it is older than an hour
//     and no running process works or holds a file in it.
//
// No docker engine is not an error (there is nothing to collect there).
// removed lists container names and dir paths.
func GC(ctx context.Context) (removed []string, err error) {
	return gc(ctx, LabelFaultline+"=1", os.TempDir(), gcUnownedAge)
}

func gc(ctx context.Context, label, tmpRoot string, unownedAge time.Duration) (removed []string, err error) {
	var errs []error
	if ok, why := dockerEngine(ctx); ok {
		ctx2, cancel := context.WithTimeout(ctx, dockerCallTimeout)
		cli, err := dockerClient(ctx2)
		if err == nil {
			names, err := removeLabelled(ctx2, cli, label)
			for _, n := range names {
				removed = append(removed, "container "+n)
			}
			errs = append(errs, err)
			nets, err := removeLabelledNetworks(ctx2, cli, label)
			for _, n := range nets {
				removed = append(removed, "network "+n)
			}
			errs = append(errs, err)
			_ = cli.Close()
		} else {
			errs = append(errs, err)
		}
		cancel()
	} else {
		slog.Debug("faultline gc: containers skipped", "reason", why)
	}
	dirs, err := gcTempDirs(tmpRoot, unownedAge)
	for _, d := range dirs {
		removed = append(removed, "dir "+d)
	}
	errs = append(errs, err)
	return removed, errors.Join(errs...)
}

// dockerEngine tells whether an engine answers within 3 s.
func dockerEngine(ctx context.Context) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, dockerAvailTimeout)
	defer cancel()
	ch := make(chan error, 1)
	go func() {
		cli, err := dockerClient(ctx)
		if err == nil {
			_ = cli.Close()
		}
		ch <- err
	}()
	select {
	case <-ctx.Done():
		return false, "no docker engine: no answer within " + dockerAvailTimeout.String()
	case err := <-ch:
		if err != nil {
			return false, "no docker engine: " + err.Error()
		}
		return true, "docker engine answered"
	}
}

// markTempDirOwner records in dir that this process owns it, so GC can tell
// a leftover from a dir in use. Call it right after creating a faultline-*
// temp dir.
func markTempDirOwner(dir string) error {
	st, err := procStartTime(os.Getpid())
	if err != nil {
		st = 0
	}
	content := fmt.Sprintf("%d %d\n", os.Getpid(), st)
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(content), 0o644); err != nil {
		return fmt.Errorf("mark temp dir %s as ours: %w", dir, err)
	}
	return nil
}

// gcTempDirs removes stale faultline-* dirs directly under root.
func gcTempDirs(root string, unownedAge time.Duration) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("faultline gc: read %s: %w", root, err)
	}
	var removed []string
	var errs []error
	var inUse map[string]bool // lazily: dirs referenced by running processes
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "faultline-") {
			continue
		}
		dir := filepath.Join(root, e.Name())
		stale, known := ownerGone(dir)
		if !known {
			if newestMod(dir).After(time.Now().Add(-unownedAge)) {
				continue
			}
			if inUse == nil {
				inUse = procReferencedDirs(root)
			}
			stale = !inUse[dir]
		}
		if !stale {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("faultline gc: remove %s: %w", dir, err))
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errors.Join(errs...)
}

// ownerGone reads dir's owner file: known is false without one; gone is
// true when the owner process no longer exists (or the pid was reused).
func ownerGone(dir string) (gone, known bool) {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return false, false
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return false, false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return false, false
	}
	if !procAlive(pid) {
		return true, true
	}
	if len(f) >= 2 {
		want, _ := strconv.ParseUint(f[1], 10, 64)
		if got, err := procStartTime(pid); err == nil && want != 0 && got != want {
			return true, true // pid reused by another process
		}
	}
	return false, true
}

// newestMod is the latest modification time of dir and its direct entries.
func newestMod(dir string) time.Time {
	var t time.Time
	if st, err := os.Stat(dir); err == nil {
		t = st.ModTime()
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.ModTime().After(t) {
			t = info.ModTime()
		}
	}
	return t
}

// procReferencedDirs returns the faultline-* dirs under root that a running
// process has as working directory or holds an open file in (best effort:
// processes we may not inspect are skipped).
func procReferencedDirs(root string) map[string]bool {
	out := map[string]bool{}
	prefix := filepath.Join(root, "faultline-")
	note := func(p string) {
		if !strings.HasPrefix(p, prefix) {
			return
		}
		rest := strings.TrimPrefix(p, root+string(filepath.Separator))
		if i := strings.IndexByte(rest, filepath.Separator); i >= 0 {
			rest = rest[:i]
		}
		out[filepath.Join(root, rest)] = true
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		base := filepath.Join("/proc", p.Name())
		if cwd, err := os.Readlink(filepath.Join(base, "cwd")); err == nil {
			note(cwd)
		}
		fds, _ := os.ReadDir(filepath.Join(base, "fd"))
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(base, "fd", fd.Name())); err == nil {
				note(target)
			}
		}
	}
	return out
}
