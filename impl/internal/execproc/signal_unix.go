//go:build unix

package execproc

import (
	"fmt"
	"syscall"
)

// Stop SIGSTOPs the process's group (a holder pause: nothing it spawned
// runs either); Continue SIGCONTs it.
func (p *Proc) Stop() error     { return p.signal(syscall.SIGSTOP) }
func (p *Proc) Continue() error { return p.signal(syscall.SIGCONT) }

// signal sends sig to the process's group.
func (p *Proc) signal(sig syscall.Signal) error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s (pid %d): already exited", p.cfg.Label, p.Pid())
	default:
	}
	if err := syscall.Kill(-p.Pid(), sig); err != nil {
		return fmt.Errorf("%s: signal %v to process group %d: %w", p.cfg.Label, sig, p.Pid(), err)
	}
	return nil
}

// killGroup SIGKILLs the process's group.
func (p *Proc) killGroup() { _ = syscall.Kill(-p.Pid(), syscall.SIGKILL) }
