package runtimes

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troupehq/troupe/domain"
)

// TestReapStopsLeftoverGroups plays a restart after a crash: Reap is handed
// the run dir of an agent whose run (with a grandchild) still goes on.
func TestReapStopsLeftoverGroups(t *testing.T) {
	runDir := filepath.Join(t.TempDir(), "run")
	cfg := DefaultConfig()
	cfg.RunDir = runDir
	sh, err := NewShell(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pidfile := filepath.Join(t.TempDir(), "grandchild")
	done := make(chan Outcome, 1)
	go func() {
		done <- sh.Run(context.Background(), Request{ExecutionID: "01J0000000000000000000TEST", Action: "t.reap",
			Cmd: "sleep 300 & echo $! > " + pidfile + "; sleep 300"})
	}()
	waitFor(t, 10*time.Second, func() error {
		if _, err := os.Stat(pidfile); err != nil {
			return fmt.Errorf("grandchild not started: %v", err)
		}
		return nil
	})

	// Groups of another agent's runs, and of anything else, are left alone.
	var strangers []*exec.Cmd
	for _, env := range [][]string{{runMarker + runDir + "-other"}, nil} {
		c := exec.Command("sleep", "300")
		c.Env, c.SysProcAttr = env, &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		strangers = append(strangers, c)
	}

	killed, err := Reap(runDir)
	if err != nil || killed != 1 {
		t.Fatalf("Reap killed %d groups (%v), want 1", killed, err)
	}
	select {
	case out := <-done:
		if out.Status != domain.StatusFailed || !strings.Contains(out.Error, "killed") {
			t.Errorf("the reaped run ended %s (%s), want failed, killed", out.Status, out.Error)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reaped run is still going")
	}
	gpid, _ := os.ReadFile(pidfile)
	n, _ := strconv.Atoi(strings.TrimSpace(string(gpid)))
	waitFor(t, 10*time.Second, func() error {
		if syscall.Kill(n, 0) == nil {
			return fmt.Errorf("grandchild %d still alive", n)
		}
		return nil
	})
	for _, c := range strangers {
		if syscall.Kill(c.Process.Pid, 0) != nil {
			t.Errorf("Reap killed %v (environment %q), not one of the agent's runs", c.Args, c.Env)
		}
	}
}
