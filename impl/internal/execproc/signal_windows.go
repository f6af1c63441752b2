package execproc

import (
	"errors"
	"fmt"
	"syscall"
)

// Windows has no SIGSTOP/SIGCONT and no process group to signal: the
// process alone is killed, and stopping it is refused, not faked.

var errNoStop = errors.New("cannot stop a process and resume it on Windows (no SIGSTOP/SIGCONT): " +
	"a holder-pause of an exec: implementation needs faultline on Linux or macOS")

// Stop and Continue fail with errNoStop.
func (p *Proc) Stop() error { return fmt.Errorf("%s (pid %d): %w", p.cfg.Label, p.Pid(), errNoStop) }
func (p *Proc) Continue() error {
	return fmt.Errorf("%s (pid %d): %w", p.cfg.Label, p.Pid(), errNoStop)
}

// killGroup kills the process (not what it spawned: Windows has no group to signal).
func (p *Proc) killGroup() { _ = p.cmd.Process.Kill() }

// ownGroupDyingWithUs: a new console process group, so a console's Ctrl-C
// reaches only faultline; nothing kills the child if faultline dies.
func ownGroupDyingWithUs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}
