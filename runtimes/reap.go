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

// Reap stops the process groups that dir (a Config.RunDir) records as
// running: after the agent was killed, they belong to runs nobody waits
// for, whose executions recovery marks abandoned. A group is killed only
// if one of its processes still carries the recorded execution's
// TROUPE_EXECUTION_ID, so a reused process ID is never hit. It returns how
// many groups it killed.
func Reap(dir string) (int, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("reap leftover actions: %w", err)
	}
	records, err := os.ReadDir(dir)
	if err != nil || len(records) == 0 {
		return 0, err
	}
	members := groups()
	killed := 0
	var errs []error
	for _, r := range records {
		path := filepath.Join(dir, r.Name())
		id, err := os.ReadFile(path)
		pgid, perr := strconv.Atoi(r.Name())
		if err == nil && perr == nil && carries(members[pgid], "TROUPE_EXECUTION_ID="+string(id)) {
			if err := syscall.Kill(-pgid, syscall.SIGKILL); err == nil {
				killed++
			} else if !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill process group %d of execution %s: %w", pgid, id, err))
			}
		}
		os.Remove(path)
	}
	return killed, errors.Join(errs...)
}

// groups maps process group IDs to their processes, from /proc.
func groups() map[int][]int {
	out := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
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
		if pgrp, err := strconv.Atoi(f[2]); err == nil {
			out[pgrp] = append(out[pgrp], pid)
		}
	}
	return out
}

func carries(pids []int, marker string) bool {
	for _, pid := range pids {
		env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
		if err == nil && bytes.Contains(append([]byte{0}, env...), append(append([]byte{0}, marker...), 0)) {
			return true
		}
	}
	return false
}
