package execproc

import "syscall"

// ownGroupDyingWithUs: a child in its own process group (signals sent to
// the group reach whatever it spawned, a terminal's Ctrl-C reaches only
// faultline) that the kernel SIGKILLs when faultline dies, however it dies.
func ownGroupDyingWithUs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
