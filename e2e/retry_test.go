package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/domain"
)

// TestRetryPolicy: an action that fails twice, then succeeds, ends
// succeeded on its third attempt with both failures in its history; one
// that always fails stops after its retries.
func TestRetryPolicy(t *testing.T) {
	counter := filepath.Join(t.TempDir(), "count")
	pack := writePack(t, "flaky", map[string]string{
		"actions/twice.yaml": "name: twice\nruntime: shell\nentry_point: twice.sh\nretry: {count: 2, on: [failed], delay: 0.2}\n",
		"actions/twice.sh":   "#!/bin/sh\necho x >> " + counter + "\n[ $(wc -l < " + counter + ") -ge 3 ]\n",
		"actions/never.yaml": "name: never\nruntime: shell\ncmd: exit 7\nretry: {count: 1}\n",
	})
	n := StartNode(t, "n1", WithPacks(pack))
	ex, err := n.Client.Run(t.Context(), "flaky.twice", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := n.WaitExecution(ex.ID.String(), domain.StatusSucceeded, 15*time.Second)
	var retries []string
	for _, h := range got.History {
		if h.Status == domain.StatusRequested && h.Error != "" {
			retries = append(retries, h.Error)
		}
	}
	if got.Attempt != 3 || len(retries) != 2 || !strings.Contains(retries[0], "attempt 1 failed") {
		t.Errorf("attempt %d, retries %q; want attempt 3 after two recorded failures", got.Attempt, retries)
	}

	ex, err = n.Client.Run(t.Context(), "flaky.never", nil)
	if err != nil {
		t.Fatal(err)
	}
	got = n.WaitExecution(ex.ID.String(), domain.StatusFailed, 15*time.Second)
	if got.Attempt != 2 || got.Result == nil || got.Result.ExitCode != 7 {
		t.Errorf("attempt %d result %+v, want the second attempt's exit code 7", got.Attempt, got.Result)
	}
}
