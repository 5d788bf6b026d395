package e2e

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// TestTailFollowsTheWorker: `troupe execution tail`, asked of the member
// that owns an execution whose action runs on another member (the owner
// has no shell), prints each line as the action prints it, stdout and
// stderr apart, then how the execution ended, with its exit code; asked
// again after the end, it prints what the record kept.
func TestTailFollowsTheWorker(t *testing.T) {
	c := StartCluster(t, 2, WithNodeArgs("n1", "--runtimes", "builtin"))
	n1 := c.Node("n1")
	ex, err := n1.Client.Run(t.Context(), "core.local",
		map[string]any{"cmd": "for i in 1 2 3; do echo line $i; echo err $i >&2; sleep 1; done; exit 3"})
	if err != nil {
		t.Fatal(err)
	}
	id := ex.ID.String()

	cmd, stdout, stderr := startTroupe(t, t.Context(), n1, "execution", "tail", id)
	first := make([]byte, len("line 1\n"))
	if _, err := io.ReadFull(stdout, first); err != nil || string(first) != "line 1\n" {
		t.Fatalf("tail's first output: %q, %v", first, err)
	}
	// The first line came while the action still ran.
	if cur, err := n1.Client.Execution(t.Context(), id, 0); err != nil || cur.Status.Terminal() {
		t.Errorf("after the first line the execution is %v (%v); want it still running", cur.Status, err)
	}
	rest := new(bytes.Buffer)
	rest.ReadFrom(stdout)
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("tail exited %d (%v), want 1 for a failed execution", code, err)
	}
	final := n1.WaitExecution(id, domain.StatusFailed, 10*time.Second)
	if final.Worker != "n2" || final.Result.Stdout != string(first)+rest.String() {
		t.Errorf("tail printed %q; the execution, run by %s, kept %q", string(first)+rest.String(), final.Worker, final.Result.Stdout)
	}
	wantErr := "err 1\nerr 2\nerr 3\nexecution " + id + " failed after "
	if !strings.HasPrefix(stderr.String(), wantErr) || !strings.HasSuffix(stderr.String(), ": exit code 3\n") {
		t.Errorf("tail's stderr:\n%s\nwant the action's, then how it ended", stderr.String())
	}

	out, code := troupe(t, n1, "execution", "tail", id)
	if code != 1 || !strings.HasPrefix(out, "line 1\n") || !strings.Contains(out, "err 3\n") || !strings.Contains(out, "exit code 3") {
		t.Errorf("tail after the end exited %d:\n%s", code, out)
	}
	var got []string
	if _, err := n1.Client.Output(t.Context(), id, api.OutputFrom{Stdout: 7, Stderr: 12}, func(stream string, chunk []byte) error {
		got = append(got, stream+":"+string(chunk))
		return nil
	}); err != nil || strings.Join(got, "|") != "stdout:line 2\nline 3\n|stderr:err 3\n" {
		t.Errorf("output from offsets: %q, %v", got, err)
	}
}

// TestTailOutlivesItsWorker: when the member running the action dies, a
// tail asked of the owner does not fail with the broken connection: it
// ends when the owner gives the execution up, with what was printed.
func TestTailOutlivesItsWorker(t *testing.T) {
	c := StartCluster(t, 2, WithNodeArgs("n1", "--runtimes", "builtin"))
	n1, n2 := c.Node("n1"), c.Node("n2")
	ex, err := n1.Client.Run(t.Context(), "core.local", map[string]any{"cmd": "echo started; sleep 60"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd, stdout, stderr := startTroupe(t, ctx, n1, "execution", "tail", ex.ID.String())
	first := make([]byte, len("started\n"))
	if _, err := io.ReadFull(stdout, first); err != nil || string(first) != "started\n" {
		t.Fatalf("tail's first output: %q, %v", first, err)
	}
	c.Kill(n2)
	killed := time.Now()
	io.Copy(io.Discard, stdout)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr.String(), ex.ID.String()+" abandoned") {
		t.Errorf("tail exited %d after its worker died:\n%s\nwant 1 and the execution abandoned", code, stderr.String())
	}
	t.Logf("tail ended %s after the worker's kill: %s", time.Since(killed).Round(time.Millisecond), strings.TrimSpace(stderr.String()))
}

// TestTailFollowsEveryAttempt: an action that fails once and is retried
// prints, through one tail, its first attempt's output, a line naming the
// second attempt, then the second's output from its start.
func TestTailFollowsEveryAttempt(t *testing.T) {
	counter := filepath.Join(t.TempDir(), "count")
	pack := writePack(t, "flaky", map[string]string{
		"actions/once.yaml": "name: once\nruntime: shell\nentry_point: once.sh\nretry: {count: 1, on: [failed], delay: 0.5}\n",
		"actions/once.sh": "#!/bin/sh\necho x >> " + counter + "\nn=$(wc -l < " + counter + ")\n" +
			"echo \"attempt $n starts\"; sleep 1; echo \"attempt $n ends\"; [ $n -ge 2 ]\n",
	})
	n := StartNode(t, "n1", WithPacks(pack))
	ex, err := n.Client.Run(t.Context(), "flaky.once", nil)
	if err != nil {
		t.Fatal(err)
	}
	out, code := troupe(t, n, "execution", "tail", ex.ID.String())
	want := "attempt 1 starts\nattempt 1 ends\n--- attempt 2 ---\nattempt 2 starts\nattempt 2 ends\nexecution " + ex.ID.String() + " succeeded after "
	if code != 0 || !strings.HasPrefix(out, want) {
		t.Errorf("tail exited %d:\n%s\nwant it to begin\n%s", code, out, want)
	}
}
