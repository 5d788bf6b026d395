package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
)

// TestWatchAcrossARestart: `troupe execution watch` outlives its node's
// restart: it connects again by itself, says on stderr that the restarted
// node cannot resume after the last execution it printed, and goes on
// printing the executions that finish from then on.
func TestWatchAcrossARestart(t *testing.T) {
	c := StartCluster(t, 1) // its nodes keep their HTTP port across restarts
	n := c.Node("n1")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd, stdout, stderr := startTroupe(t, ctx, n, "execution", "watch", "-o", "json")
	printed := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var v api.ExecutionView
			if json.Unmarshal(sc.Bytes(), &v) == nil {
				printed <- v.ID.String()
			}
		}
	}()
	// watch prints what finishes once it has subscribed; run until it does.
	expect := func(what string) string {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			e, err := n.Client.Run(t.Context(), "core.echo", map[string]any{"message": what})
			if err != nil {
				t.Fatalf("run %s: %v", what, err)
			}
			select {
			case id := <-printed:
				if id == e.ID.String() {
					return id
				}
			case <-time.After(2 * time.Second):
			case <-deadline:
				t.Fatalf("watch printed no %s run within 30s (exited: %v); its stderr:\n%s", what, cmd.ProcessState, stderr.String())
			}
		}
	}
	last := expect("before")
	n.Stop()
	c.Restart(n)
	expect("after")
	for _, want := range []string{"connecting again in", "cannot resume after execution " + last, "going on from now"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("watch's stderr does not say %q:\n%s", want, stderr.String())
		}
	}
}
