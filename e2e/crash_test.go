package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// TestKill9UnderLoadThenRestart: webhooks pour in while the node is killed
// with SIGKILL; after a restart on the same data dir every event that got a
// 202 is there with its execution, every execution ends, and the action —
// which appends its execution ID to a file — ran at most once per
// execution, and exactly once for those that succeeded.
func TestKill9UnderLoadThenRestart(t *testing.T) {
	ledger := filepath.Join(t.TempDir(), "ledger")
	pack := writePack(t, "load", map[string]string{
		"actions/append.yaml": "name: append\nruntime: shell\nentry_point: append.sh\n",
		"actions/append.sh":   "#!/bin/sh\nsleep 0.05\necho \"$TROUPE_EXECUTION_ID\" >> " + ledger + "\n",
		"rules/on_hook.yaml": `name: on_hook
trigger: {type: core.webhook, parameters: {url: load}}
action: {ref: load.append}
`,
	})
	n := StartNode(t, "n1", WithPacks(pack), WithArgs("--slots", "8"))

	var (
		mu       sync.Mutex
		accepted []string
	)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 400; i++ {
				id, err := n.Client.Webhook(ctx, "load", map[string]any{"writer": w, "i": i})
				if err != nil {
					return // the node is gone: stop sending
				}
				mu.Lock()
				accepted = append(accepted, id)
				mu.Unlock()
			}
		}()
	}
	waitFor(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(accepted) < 150 {
			return fmt.Errorf("%d events accepted, want 150 before the kill", len(accepted))
		}
		return nil
	})
	n.Kill()
	wg.Wait()
	t.Logf("%d events accepted before SIGKILL", len(accepted))

	n.Restart()
	// Every acknowledged event has its execution, and it ends.
	for _, evID := range accepted {
		ex := executionOf(t, n, evID)
		if ex, err := n.Client.Wait(t.Context(), ex.ID.String()); err != nil || !ex.Status.Terminal() {
			t.Fatalf("execution of event %s: %v %v", evID, ex, err)
		}
	}
	// Events stored whose 202 the kill cut off are executions too: check
	// every execution the node has, not only the acknowledged ones.
	statuses := map[string]domain.Status{}
	for cursor := ""; ; {
		page, err := n.Client.Executions(t.Context(), api.ListQuery{Action: "load.append", Limit: 500, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, ex := range page.Items {
			if ex, err = n.Client.Wait(t.Context(), ex.ID.String()); err != nil {
				t.Fatal(err)
			}
			statuses[ex.ID.String()] = ex.Status
			if ex.Status != domain.StatusSucceeded && ex.Status != domain.StatusAbandoned {
				t.Errorf("execution %s ended %s (%s)", ex.ID, ex.Status, ex.Error)
			}
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	data, err := os.ReadFile(ledger)
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]int{}
	for _, id := range strings.Fields(string(data)) {
		runs[id]++
	}
	abandoned := 0
	for id, st := range statuses {
		switch {
		case runs[id] > 1:
			t.Errorf("execution %s ran %d times", id, runs[id])
		case st == domain.StatusSucceeded && runs[id] != 1:
			t.Errorf("execution %s succeeded but ran %d times", id, runs[id])
		case st == domain.StatusAbandoned:
			abandoned++
		}
	}
	for id := range runs {
		if _, ok := statuses[id]; !ok {
			t.Errorf("the ledger has %s, which is no stored execution", id)
		}
	}
	t.Logf("%d acknowledged events, %d executions: %d abandoned (running at the kill), the rest succeeded once",
		len(accepted), len(statuses), abandoned)

	// A restart changes nothing that already ended.
	before, _ := n.Client.Executions(t.Context(), api.ListQuery{Status: "succeeded", Limit: 1000})
	n.Kill()
	n.Restart()
	after, _ := n.Client.Executions(t.Context(), api.ListQuery{Status: "succeeded", Limit: 1000})
	if len(before.Items) != len(after.Items) {
		t.Errorf("succeeded executions: %d before a second restart, %d after", len(before.Items), len(after.Items))
	}
}

// TestSIGTERMStopsAndRecordsRunningActions: a clean shutdown stops a
// running action and records why, instead of leaving it running forever.
func TestSIGTERMStopsAndRecordsRunningActions(t *testing.T) {
	n := StartNode(t, "n1")
	ex, err := n.Client.Run(t.Context(), "core.local", map[string]any{"cmd": "sleep 60"})
	if err != nil {
		t.Fatal(err)
	}
	n.WaitExecution(ex.ID.String(), domain.StatusRunning, 10*time.Second)
	began := time.Now()
	n.Stop()
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	n.Restart()
	got := n.WaitExecution(ex.ID.String(), domain.StatusAbandoned, 5*time.Second)
	if !strings.Contains(got.Error, "shut down") {
		t.Errorf("abandoned with error %q, want it to say the node shut down", got.Error)
	}
}

// TestScriptSensor: a pack's script sensor emits events that rules act on;
// a malformed line is skipped, not fatal.
func TestScriptSensor(t *testing.T) {
	pack := writePack(t, "watch", map[string]string{
		"triggers/ping.yaml": "name: ping\ndescription: a ping\n",
		"sensors/pinger.yaml": `name: pinger
runtime: python
entry_point: pinger.py
trigger_types: [watch.ping]
`,
		"sensors/pinger.py": `import json, sys, time
print("this is not json", flush=True)
print(json.dumps({"trigger": "watch.ping", "payload": {"n": 1}}), flush=True)
time.sleep(3600)
`,
		"rules/on_ping.yaml": `name: on_ping
trigger: {type: watch.ping}
criteria:
  trigger.n: {type: equals, pattern: 1}
action: {ref: core.echo, parameters: {message: "ping {{ trigger.n }}"}}
`,
	})
	n := StartNode(t, "n1", WithPacks(pack))
	waitFor(t, 15*time.Second, func() error {
		page, err := n.Client.Executions(t.Context(), api.ListQuery{Rule: "watch.on_ping", Status: "succeeded"})
		if err != nil {
			return err
		}
		if len(page.Items) != 1 {
			return fmt.Errorf("%d succeeded executions of watch.on_ping, want 1", len(page.Items))
		}
		return nil
	})
	if !strings.Contains(n.Log(), "sensor line skipped") {
		t.Error("the malformed line was not logged")
	}
}

// TestKill9LeavesNoActionRunning: an action (with a child of its own) that
// was running when the node was killed is stopped at restart, not left
// running unowned while its execution says abandoned.
func TestKill9LeavesNoActionRunning(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "child")
	n := StartNode(t, "n1")
	ex, err := n.Client.Run(t.Context(), "core.local", map[string]any{"cmd": "sleep 300 & echo $! > " + pidfile + "; wait"})
	if err != nil {
		t.Fatal(err)
	}
	n.WaitExecution(ex.ID.String(), domain.StatusRunning, 10*time.Second)
	var child int
	waitFor(t, 10*time.Second, func() error {
		b, err := os.ReadFile(pidfile)
		if err == nil {
			child, err = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		return err
	})
	n.Kill()
	if syscall.Kill(child, 0) != nil {
		t.Fatal("the action's child died with the node; this test needs it to outlive the kill")
	}
	n.Restart()
	n.WaitExecution(ex.ID.String(), domain.StatusAbandoned, 10*time.Second)
	waitFor(t, 10*time.Second, func() error {
		if syscall.Kill(child, 0) == nil {
			return fmt.Errorf("the action's child %d is still running after the restart", child)
		}
		return nil
	})
}
