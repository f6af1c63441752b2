package infra

import (
	"errors"
	"os"
)

// Windows has no /proc (proctree.go): faultline gc tells a live owner of a
// temp dir by opening its pid, and cannot read a start time.

// procAlive reports whether pid can be opened, i.e. is a live process.
func procAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	_ = p.Release()
	return true
}

// procStartTime is unknown on Windows; ownerGone then goes by the pid alone.
func procStartTime(int) (uint64, error) { return 0, errors.ErrUnsupported }
