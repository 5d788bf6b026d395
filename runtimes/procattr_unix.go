//go:build unix && !linux

package runtimes

import "syscall"

// sysProcAttr puts the action in its own process group, so it can be killed
// as a tree. Only Linux can also tie the action's life to the agent's.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
