package runtimes

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// runMarker starts the environment variable that names the agent an action
// process belongs to (Config.RunDir); its children inherit it.
const runMarker = "TROUPE_RUN_DIR="

// Reap stops the process groups of actions that an agent with run dir dir
// (a Config.RunDir) started and left running: after that agent was killed,
// they belong to runs nobody waits for, whose executions recovery marks
// abandoned. They are found in /proc by the TROUPE_RUN_DIR they carry (a
// python-warm child shows the environment of the fork server it was forked
// from, which carries it too, and the server is found alike), so a reused
// process ID is never hit and a spawn does no file-system work
// (creating and removing a record file per run cost the shell runtime a
// sixth of the agent's CPU). Call it before this agent starts any action. It
// returns how many groups it killed.
func Reap(dir string) (int, error) {
	if dir == "" {
		return 0, nil
	}
	marker := append(append([]byte{0}, runMarker+dir...), 0)
	own := syscall.Getpgrp()
	killed := 0
	var errs []error
	for pgid := range leftGroups(marker) {
		if pgid == own {
			continue
		}
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err == nil {
			killed++
		} else if !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill process group %d left by the previous agent: %w", pgid, err))
		}
	}
	return killed, errors.Join(errs...)
}

// leftGroups returns the process groups of the processes whose environment
// holds marker (NUL-delimited), from /proc.
func leftGroups(marker []byte) map[int]bool {
	out := map[int]bool{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), marker) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name: state ppid pgrp ...
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 {
			continue
		}
		if pgrp, err := strconv.Atoi(f[2]); err == nil && pgrp > 1 {
			out[pgrp] = true
		}
	}
	return out
}
