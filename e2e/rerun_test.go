package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// TestRerunOnTheOwner: `troupe execution rerun`, asked of a member that
// does not own the execution, runs its action again on the owner, with
// the original's parameters (the secret one too, which no API answer
// shows) and the given ones replacing theirs. The owner's refusal of bad
// parameters reaches the caller.
func TestRerunOnTheOwner(t *testing.T) {
	ledger := filepath.Join(t.TempDir(), "ledger")
	pack := writePack(t, "rr", map[string]string{
		"actions/login.yaml": fmt.Sprintf(`name: login
runtime: shell
cmd: 'printf "%%s:%%s:%%s\n" "$TROUPE_PARAM_USER" "$TROUPE_PARAM_PASSWORD" "$TROUPE_PARAM_RETRIES" >> %s'
parameters:
  user: {type: string, required: true}
  password: {type: string, secret: true, required: true}
  retries: {type: integer, default: 2}
`, ledger),
	})
	c := StartCluster(t, 2, WithClusterArgs("--packs", pack))
	n1, n2 := c.Node("n1"), c.Node("n2")

	first, err := n1.Client.Run(t.Context(), "rr.login", map[string]any{"user": "ann", "password": "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	n1.WaitExecution(first.ID.String(), domain.StatusSucceeded, 10*time.Second)

	out, code := troupe(t, n2, "execution", "rerun", first.ID.String(), "user=bob", "-o", "json")
	var again api.ExecutionView
	if code != 0 || json.Unmarshal([]byte(out), &again) != nil {
		t.Fatalf("rerun through n2 exited %d:\n%s", code, out)
	}
	if again.Status != domain.StatusSucceeded || again.Node != "n1" || again.RerunOf != first.ID || again.ID == first.ID ||
		again.Parameters["password"] != api.Masked || again.Parameters["user"] != "bob" {
		t.Errorf("rerun through n2 answered %s; want bob's run on n1, succeeded, password masked, rerun_of %s", out, first.ID)
	}
	if lines := readLines(t, ledger); strings.Join(lines, " ") != "ann:s3cret:2 bob:s3cret:2" {
		t.Errorf("the action ran with %q; want ann's run, then bob's with the same secret", lines)
	}
	if out, _ := troupe(t, n2, "execution", "get", again.ID.String()); !strings.Contains(out, "rerun of:") || !strings.Contains(out, first.ID.String()) {
		t.Errorf("`execution get` of the re-run does not name the first:\n%s", out)
	}

	missing := domain.NewID(time.Now()).String()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{missing}, []string{"not found", missing}},
		{[]string{first.ID.String(), "retries=many"}, []string{"retries", "integer"}},
	} {
		out, code := troupe(t, n2, append([]string{"execution", "rerun"}, tc.args...)...)
		for _, want := range tc.want {
			if code != 2 || !strings.Contains(out, want) {
				t.Errorf("rerun %v exited %d:\n%s\nwant 2, naming %q", tc.args, code, out, want)
			}
		}
	}
	if lines := readLines(t, ledger); len(lines) != 2 {
		t.Errorf("refused re-runs ran: %q", lines)
	}
}

// TestRerunOnAMemberWithoutTheAPI: an execution owned by a member without
// the api role (its rule member stored the webhook's event) is re-run
// there when another member is asked: the owner refuses the API's
// clients, not its members.
func TestRerunOnAMemberWithoutTheAPI(t *testing.T) {
	c := StartCluster(t, 2, WithClusterArgs("--packs", hookPack(t)),
		WithNodeArgs("n1", "--roles", "worker,rule,sensor"),
		WithNodeArgs("n2", "--roles", "worker,api"))
	n1, n2 := c.Node("n1"), c.Node("n2")
	evID, err := n2.Client.Webhook(t.Context(), "hook", map[string]any{"message": "first"})
	if err != nil {
		t.Fatal(err)
	}
	first := executionOf(t, n2, evID)
	if first.Node != "n1" {
		t.Fatalf("the webhook's execution is owned by %s, want n1, the rule member", first.Node)
	}
	if _, err := n1.Client.Rerun(t.Context(), first.ID.String(), nil); err == nil || !strings.Contains(err.Error(), "does not serve the API") {
		t.Errorf("rerun asked of n1 itself: %v; want its clients refused", err)
	}
	again, err := n2.Client.Rerun(t.Context(), first.ID.String(), map[string]any{"message": "again"})
	if err != nil {
		t.Fatalf("rerun through n2: %v", err)
	}
	done := n2.WaitExecution(again.ID.String(), domain.StatusSucceeded, 10*time.Second)
	if done.Node != "n1" || done.RerunOf != first.ID || done.Rule != "" || done.Result.Stdout != "again\n" {
		t.Errorf("re-run through n2: node %s, rerun_of %s, rule %q, stdout %q; want n1's, of %s, no rule, again",
			done.Node, done.RerunOf, done.Rule, done.Result.Stdout, first.ID)
	}
}
