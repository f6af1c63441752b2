//go:build unix && !linux

package infra

import "syscall"

// ownGroupDyingWithUs: a child in its own process group. Without Linux's
// parent-death signal, a faultline killed with SIGKILL leaves its children
// to `faultline gc`; every other exit still stops them.
func ownGroupDyingWithUs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
