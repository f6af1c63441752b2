//go:build unix

// Unix only: process trees through /proc and signals (proctree_windows.go for gc).

package infra

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Process trees. PostgreSQL's postmaster puts every child in a session of
// its own (setsid), so a process-group signal reaches the postmaster alone:
// Pause, Kill and destroy signal the whole tree instead, found through
// /proc parent links.

// liveProcs maps every live (non-zombie) pid to its parent pid.
func liveProcs() map[int]int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	out := make(map[int]int, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := procParent(pid); ok {
			out[pid] = ppid
		}
	}
	return out
}

// procStat returns the fields of /proc/<pid>/stat from field 3 (state)
// on: f[0] is the state, f[1] the parent pid, f[19] the start time.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return nil, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

// deadState says whether a /proc state letter is a dead process: Z, a
// zombie (exited, not yet reaped by its parent), or X (dead).
func deadState(state string) bool { return state == "Z" || state == "X" }

// procParent returns pid's parent, ok false when pid is gone or a zombie.
func procParent(pid int) (ppid int, ok bool) {
	f, err := procStat(pid)
	if err != nil || deadState(f[0]) {
		return 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, err == nil
}

// procAlive reports whether pid is a live process, the one liveness test
// of this package: a zombie counts as dead (it has exited; only its exit
// status waits for its parent). Where /proc/<pid>/stat cannot be read for
// another reason than the pid being gone (procfs mounted with hidepid),
// signal 0 tells at least whether the pid exists; so it does where there
// is no /proc at all (macOS), where a missing file says nothing.
func procAlive(pid int) bool {
	f, err := procStat(pid)
	switch {
	case err == nil:
		return !deadState(f[0])
	case errors.Is(err, fs.ErrNotExist) && procMounted(), errors.Is(err, syscall.ESRCH):
		return false
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// procMounted says whether this system has a Linux-style /proc.
func procMounted() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}

// procStartTime is field 22 of /proc/<pid>/stat (clock ticks since boot).
func procStartTime(pid int) (uint64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// descendants lists the live descendants of root (not root itself).
func descendants(root int) []int {
	procs := liveProcs()
	children := map[int][]int{}
	for pid, ppid := range procs {
		children[ppid] = append(children[ppid], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// signalTree sends sig to leader and all its descendants and returns every
// pid it signalled. For SIGSTOP and SIGKILL the leader is stopped first, so
// it cannot fork a child the snapshot misses.
func signalTree(leader int, sig syscall.Signal) ([]int, error) {
	if sig == syscall.SIGSTOP || sig == syscall.SIGKILL {
		if err := syscall.Kill(leader, syscall.SIGSTOP); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				return nil, nil
			}
			return nil, err
		}
	}
	pids := descendants(leader)
	var errs []error
	for _, p := range pids {
		if err := syscall.Kill(p, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, err)
		}
	}
	if err := syscall.Kill(leader, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		errs = append(errs, err)
	}
	return append(pids, leader), errors.Join(errs...)
}
