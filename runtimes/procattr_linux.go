package runtimes

import "syscall"

// sysProcAttr puts the action in its own process group, so it can be killed
// as a tree, and has the kernel kill it if the agent dies. Pdeathsig follows
// the forking OS thread, not the process; Go keeps its threads unless a
// goroutine exits while locked to one, which Run's callers must not do.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
