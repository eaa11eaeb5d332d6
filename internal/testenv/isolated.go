package testenv

import (
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// Isolated is a server process started as PID 1 of a PID namespace of its
// own: killing it ends every process it started, daemons that detach
// included, so nothing of the server outlives the test.
type Isolated struct {
	pid    int
	exited chan struct{}
}

// StartIsolated starts cmd (its Stdout, Stderr, Env and Dir set by the
// caller, and any namespace flags it wants in cmd.SysProcAttr) as PID 1 of
// a new PID namespace, and waits until ready reports true. The process
// exiting first, or timeout passing, is an error, and the process is then
// stopped.
func StartIsolated(cmd *exec.Cmd, ready func() bool, timeout time.Duration) (*Isolated, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWPID
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s in a new PID namespace: %w", cmd.Path, err)
	}
	p := &Isolated{pid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(timeout)
	for !ready() {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s exited during start-up", cmd.Path)
		default:
		}
		if time.Now().After(deadline) {
			return nil, errors.Join(fmt.Errorf("%s not ready within %v", cmd.Path, timeout), p.Stop(timeout))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p, nil
}

// Stop kills the process, and with it its whole namespace, and waits up to
// timeout for it to be gone. It may be called more than once.
func (p *Isolated) Stop(timeout time.Duration) error {
	syscall.Kill(-p.pid, syscall.SIGKILL)
	select {
	case <-p.exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("pid %d did not exit after SIGKILL", p.pid)
	}
}
