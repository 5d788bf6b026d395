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

// TestReapStopsLeftoverGroups plays a restart after a crash: the record a
// run leaves in its RunDir is handed to Reap while the run (standing in for
// one whose agent died) still goes on, with a grandchild.
func TestReapStopsLeftoverGroups(t *testing.T) {
	runDir, leftover := t.TempDir(), t.TempDir()
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
	var record string
	waitFor(t, 10*time.Second, func() error {
		entries, _ := os.ReadDir(runDir)
		if len(entries) != 1 {
			return fmt.Errorf("%d records in the run dir, want 1", len(entries))
		}
		record = entries[0].Name()
		if _, err := os.Stat(pidfile); err != nil {
			return fmt.Errorf("grandchild not started: %v", err)
		}
		return nil
	})
	data, _ := os.ReadFile(filepath.Join(runDir, record))
	os.WriteFile(filepath.Join(leftover, record), data, 0o600)

	// A record of a group that does not carry its execution's ID (a reused
	// process ID) must be left alone.
	stranger := exec.Command("sleep", "300")
	stranger.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stranger.Process.Kill(); stranger.Wait() })
	os.WriteFile(filepath.Join(leftover, strconv.Itoa(stranger.Process.Pid)), []byte("01J0000000000000000000TEST"), 0o600)

	killed, err := Reap(leftover)
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
	if syscall.Kill(stranger.Process.Pid, 0) != nil {
		t.Error("Reap killed a group that did not carry the execution's ID")
	}
	if entries, _ := os.ReadDir(leftover); len(entries) != 0 {
		t.Errorf("Reap left %d records behind", len(entries))
	}
}
