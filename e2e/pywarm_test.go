package e2e

import (
	"bytes"
	"encoding/json"
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

func needPython(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 on PATH")
	}
}

// TestPythonWarmAction: an action of runtime python-warm, run through the
// API, ends as the same script does under python: output, JSON result,
// exit code, and a timeout.
func TestPythonWarmAction(t *testing.T) {
	needPython(t)
	params := `parameters:
  name: {type: string, required: true}
  times: {type: integer, default: 2}
  exit: {type: integer, default: 0}
`
	pack := writePack(t, "greet", map[string]string{
		"actions/hello.py": `import json, os, sys
p = json.load(sys.stdin)
print(json.dumps({"greeting": "hello " + p["name"], "times": p["times"], "env": os.environ["TROUPE_PARAM_NAME"],
                  "action": os.environ["TROUPE_ACTION"], "execution": os.environ["TROUPE_EXECUTION_ID"]}))
sys.exit(p["exit"])
`,
		"actions/cold.yaml": "name: cold\nruntime: python\nentry_point: hello.py\n" + params,
		"actions/warm.yaml": "name: warm\nruntime: python-warm\nentry_point: hello.py\n" + params,
		"actions/slow.yaml": "name: slow\nruntime: python-warm\nentry_point: slow.py\ntimeout: 1\n",
		"actions/slow.py":   "import time\nprint('started', flush=True)\ntime.sleep(60)\n",
	})
	n := StartNode(t, "n1", WithPacks(pack))

	for _, tc := range []struct {
		name    string
		exit    int
		status  domain.Status
		errText string
	}{
		{"succeeds", 0, domain.StatusSucceeded, ""},
		{"fails", 3, domain.StatusFailed, "exit code 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, action := range []string{"greet.cold", "greet.warm"} {
				ex, err := n.Client.Run(t.Context(), action, map[string]any{"name": "troupe", "exit": tc.exit})
				if err != nil {
					t.Fatalf("run %s: %v", action, err)
				}
				ex = n.WaitExecution(ex.ID.String(), tc.status, 20*time.Second)
				want := fmt.Sprintf(`{"greeting": "hello troupe", "times": 2, "env": "troupe", "action": %q, "execution": %q}`, action, ex.ID)
				var output bytes.Buffer
				if ex.Result != nil {
					json.Compact(&output, ex.Result.Output)
				}
				var wantOutput bytes.Buffer
				json.Compact(&wantOutput, []byte(want))
				if ex.Error != tc.errText || ex.Result == nil || ex.Result.Stdout != want+"\n" || ex.Result.Stderr != "" ||
					ex.Result.ExitCode != tc.exit || output.String() != wantOutput.String() {
					t.Errorf("%s: error %q result %+v\nwant error %q, exit %d, stdout and output %s", action, ex.Error, ex.Result, tc.errText, tc.exit, want)
				}
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		ex, err := n.Client.Run(t.Context(), "greet.slow", nil)
		if err != nil {
			t.Fatal(err)
		}
		ex = n.WaitExecution(ex.ID.String(), domain.StatusTimeout, 20*time.Second)
		if ex.Runtime != "python-warm" || ex.Error != "timed out after 1s" || ex.Result == nil ||
			ex.Result.Stdout != "started\n" || ex.Result.ExitCode != -int(syscall.SIGKILL) {
			t.Errorf("runtime %s error %q result %+v", ex.Runtime, ex.Error, ex.Result)
		}
	})
}

// TestPythonWarmDiesWithAgent: kill -9 of the agent takes its fork server
// and the action forked from it down; a process the action started lives
// on until the restarted agent stops it.
func TestPythonWarmDiesWithAgent(t *testing.T) {
	needPython(t)
	pids := filepath.Join(t.TempDir(), "pids")
	pack := writePack(t, "tree", map[string]string{
		"actions/tree.yaml": "name: tree\nruntime: python-warm\nentry_point: tree.py\n",
		"actions/tree.py": fmt.Sprintf(`import os, subprocess, time
child = subprocess.Popen(["sleep", "300"])
open(%q + ".tmp", "w").write("%%d %%d %%d" %% (os.getppid(), os.getpid(), child.pid))
os.rename(%q + ".tmp", %q)
time.sleep(300)
`, pids, pids, pids),
	})
	n := StartNode(t, "n1", WithPacks(pack))
	ex, err := n.Client.Run(t.Context(), "tree.tree", nil)
	if err != nil {
		t.Fatal(err)
	}
	n.WaitExecution(ex.ID.String(), domain.StatusRunning, 10*time.Second)
	var server, action, child int
	waitFor(t, 10*time.Second, func() error {
		b, err := os.ReadFile(pids)
		if err != nil {
			return err
		}
		f := strings.Fields(string(b))
		server, _ = strconv.Atoi(f[0])
		action, _ = strconv.Atoi(f[1])
		child, _ = strconv.Atoi(f[2])
		return nil
	})
	t.Cleanup(func() {
		for _, pid := range []int{server, action, child} {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	n.Kill()
	for what, pid := range map[string]int{"fork server": server, "action": action} {
		waitFor(t, 10*time.Second, func() error {
			if syscall.Kill(pid, 0) == nil && !zombie(pid) {
				return fmt.Errorf("the %s (pid %d) outlived the agent", what, pid)
			}
			return nil
		})
	}
	if syscall.Kill(child, 0) != nil {
		t.Fatal("the action's own child died with the agent; this test needs it to outlive the kill")
	}
	n.Restart()
	n.WaitExecution(ex.ID.String(), domain.StatusAbandoned, 10*time.Second)
	waitFor(t, 10*time.Second, func() error {
		if syscall.Kill(child, 0) == nil && !zombie(child) {
			return fmt.Errorf("the action's child %d is still running after the restart", child)
		}
		return nil
	})
}

// zombie reports whether pid has exited but is not yet reaped.
func zombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := bytes.LastIndexByte(stat, ')')
	return err == nil && i > 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
