package e2e

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// slowPack has webhook "slow" run a 3-second sleep.
func slowPack(t *testing.T) string {
	return writePack(t, "slow", map[string]string{
		"rules/slow.yaml": "name: slow\ntrigger:\n  type: core.webhook\n  parameters: {url: slow}\naction:\n  ref: core.sleep\n  parameters: {seconds: 3}\n",
	})
}

// postSlow posts n webhooks "slow" to node, each of which must be accepted,
// and returns their event IDs.
func postSlow(t *testing.T, node *Node, n int) []string {
	t.Helper()
	var accepted []string
	for range n {
		id, err := node.Client.Webhook(t.Context(), "slow", map[string]any{})
		if err != nil {
			t.Fatalf("webhook %d of %d within the bound, posted to %s: %v", len(accepted)+1, n, node.Name, err)
		}
		accepted = append(accepted, id)
	}
	return accepted
}

// TestWebhookAdmissionBound: a node holding max_in_flight unfinished
// executions refuses further webhooks and runs with 503 overloaded and a
// Retry-After, counts the refusals, finishes everything it accepted, and
// accepts again once they are done.
func TestWebhookAdmissionBound(t *testing.T) {
	const bound = 4
	n := StartNode(t, "n1", WithPacks(slowPack(t)), WithArgs("--max-in-flight", "4"))
	accepted := postSlow(t, n, bound)

	overloaded := func(what string, err error) {
		t.Helper()
		var e *api.Error
		if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || e.Code != api.CodeOverloaded || e.RetryAfter != time.Second {
			t.Fatalf("%s with %d executions unfinished: %v (%#v), want 503 %s with Retry-After: 1", what, bound, err, e, api.CodeOverloaded)
		}
	}
	_, err := n.Client.Webhook(t.Context(), "slow", map[string]any{})
	overloaded("webhook", err)
	_, err = n.Client.Run(t.Context(), "core.noop", nil)
	overloaded("run", err)
	mfs := mustScrape(t, n)
	for _, kind := range []string{"webhook", "run"} {
		if got := total(mfs, "troupe_admission_refused_total", "kind", kind); got != 1 {
			t.Errorf("troupe_admission_refused_total{kind=%q} = %v, want 1", kind, got)
		}
	}

	for _, id := range accepted {
		ex := executionOf(t, n, id)
		n.WaitExecution(ex.ID.String(), domain.StatusSucceeded, 15*time.Second)
	}
	id, err := n.Client.Webhook(t.Context(), "slow", map[string]any{})
	if err != nil {
		t.Fatalf("webhook once the accepted executions finished: %v", err)
	}
	n.WaitExecution(executionOf(t, n, id).ID.String(), domain.StatusSucceeded, 15*time.Second)
}

// TestClusterForwardedWebhooksAreAdmitted: a member without the rule role
// forwards its webhooks to the rule member, which admits them against its
// own max_in_flight; the refusal reaches the webhook's sender as 503
// overloaded with Retry-After, as if it had posted to the rule member.
func TestClusterForwardedWebhooksAreAdmitted(t *testing.T) {
	const bound = 2
	c := StartCluster(t, 2, WithClusterArgs("--packs", slowPack(t)),
		WithNodeArgs("n1", "--max-in-flight", "2"),
		WithNodeArgs("n2", "--roles", "worker,api"))
	n1, n2 := c.Node("n1"), c.Node("n2")
	accepted := postSlow(t, n2, bound)
	_, err := n2.Client.Webhook(t.Context(), "slow", map[string]any{})
	var e *api.Error
	if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || e.Code != api.CodeOverloaded ||
		e.RetryAfter != time.Second || !strings.Contains(e.Message, "node n1 is overloaded") {
		t.Fatalf("webhook posted to n2 with n1 at its bound: %v (%#v), want 503 %s naming n1, with Retry-After: 1", err, e, api.CodeOverloaded)
	}
	if got := total(mustScrape(t, n1), "troupe_admission_refused_total", "kind", "webhook"); got != 1 {
		t.Errorf("n1's troupe_admission_refused_total{kind=webhook} = %v, want 1", got)
	}
	for _, id := range accepted {
		n2.WaitExecution(executionOf(t, n2, id).ID.String(), domain.StatusSucceeded, 20*time.Second)
	}
	if _, err := n2.Client.Webhook(t.Context(), "slow", map[string]any{}); err != nil {
		t.Fatalf("webhook posted to n2 once n1's executions finished: %v", err)
	}
}
