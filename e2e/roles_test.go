package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// hookPack is a pack whose webhook "hook" runs hook.echo with the body's
// message.
func hookPack(t *testing.T) string {
	return writePack(t, "hook", map[string]string{
		"actions/echo.yaml": "name: echo\nruntime: shell\nentry_point: echo.sh\nparameters:\n  message: {type: string, required: true}\n",
		"actions/echo.sh":   "#!/bin/sh\necho \"$TROUPE_PARAM_MESSAGE\"\n",
		"rules/on_hook.yaml": `name: on_hook
trigger: {type: core.webhook, parameters: {url: hook}}
action: {ref: hook.echo, parameters: {message: "{{ trigger.body.message }}"}}
`,
	})
}

// TestClusterRolesAreEnforced: n2 (worker, api) has no rule role, so the
// webhooks it accepts are evaluated and stored by a rule member, n1 or n3,
// before it answers 202, and their executions run and are found from n2;
// a direct run on n2 is its own (every member owns executions). n3
// (worker, rule, sensor) has no api role: it refuses its API's clients
// with 421, naming itself and the members that serve the API, while it
// still answers its probes, and its records appear in the cluster-wide
// lists of the api members.
func TestClusterRolesAreEnforced(t *testing.T) {
	c := StartCluster(t, 3, WithClusterArgs("--packs", hookPack(t)),
		WithNodeArgs("n2", "--roles", "worker,api"),
		WithNodeArgs("n3", "--roles", "worker,rule,sensor"))
	n1, n2, n3 := c.Node("n1"), c.Node("n2"), c.Node("n3")
	ctx := t.Context()

	// Events are spread over the rule members by ID: post until both have some.
	stored := map[string][]string{} // rule member → event IDs
	for i := 0; i < 40 && (len(stored["n1"]) == 0 || len(stored["n3"]) == 0); i++ {
		id, err := n2.Client.Webhook(ctx, "hook", map[string]any{"message": fmt.Sprintf("hello %d", i)})
		if err != nil {
			t.Fatalf("webhook %d posted to n2: %v", i, err)
		}
		// Acknowledged means stored: the event is there at once.
		ev, err := n2.Client.Event(ctx, id)
		if err != nil {
			t.Fatalf("event %s acknowledged by n2 is not found right after: %v", id, err)
		}
		stored[ev.Node] = append(stored[ev.Node], id)
	}
	t.Logf("events accepted by n2, stored by: %v", counts(stored))
	if len(stored["n2"]) > 0 || len(stored["n1"]) == 0 || len(stored["n3"]) == 0 {
		t.Fatalf("events accepted by n2 were stored on %v; want n1 and n3 only", counts(stored))
	}
	for _, node := range []string{"n1", "n3"} {
		id := stored[node][0]
		ex := executionOf(t, n2, id)
		ex = n2.WaitExecution(ex.ID.String(), domain.StatusSucceeded, 20*time.Second)
		if ex.Node != node || ex.Result == nil || !strings.HasPrefix(ex.Result.Stdout, "hello ") {
			t.Errorf("execution %s of event %s (stored on %s) is owned by %s with result %+v; want owner %s and the echo",
				ex.ID, id, node, ex.Node, ex.Result, node)
		}
	}
	run, err := n2.Client.Run(ctx, "hook.echo", map[string]any{"message": "direct"})
	if err != nil {
		t.Fatalf("direct run on n2: %v", err)
	}
	if ex := n2.WaitExecution(run.ID.String(), domain.StatusSucceeded, 20*time.Second); ex.Node != "n2" {
		t.Errorf("direct run on n2 is owned by %s, want n2", ex.Node)
	}

	// n3 serves no API…
	_, err = n3.Client.Executions(ctx, api.ListQuery{})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusMisdirectedRequest || ae.Code != api.CodeMisdirected {
		t.Fatalf("GET /api/v1/executions on n3: %v, want 421 misdirected", err)
	}
	for _, want := range []string{"node n3 does not serve the API", "n1 at " + n1.Addr, "n2 at " + n2.Addr} {
		if !strings.Contains(ae.Message, want) {
			t.Errorf("n3's refusal %q does not say %q", ae.Message, want)
		}
	}
	t.Logf("n3 refuses: %d %s", ae.Status, ae.Message)
	if _, err := n3.Client.Webhook(ctx, "hook", map[string]any{"message": "to n3"}); !errors.As(err, &ae) || ae.Status != http.StatusMisdirectedRequest {
		t.Errorf("webhook posted to n3: %v, want 421", err)
	}
	if out, code := troupe(t, n3, "members"); code == 0 || !strings.Contains(out, "does not serve the API") {
		t.Errorf("`troupe members` on n3 exited %d:\n%s\nwant a failure saying why", code, out)
	}
	// …but answers its probes and metrics, and the members' own queries.
	if err := n3.Client.Ready(ctx); err != nil {
		t.Errorf("n3 /readyz: %v", err)
	}
	if err := n3.Client.Healthz(ctx); err != nil {
		t.Errorf("n3 /healthz: %v", err)
	}
	if resp, err := http.Get(n3.Addr + "/metrics"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("n3 /metrics: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, n := range []*Node{n1, n2} {
		page, err := n.Client.Events(ctx, api.ListQuery{Trigger: "core.webhook", Limit: 100})
		if err != nil || page.Partial {
			t.Fatalf("events listed on %s: %v (partial %v, unreachable %v)", n.Name, err, page.Partial, page.Unreachable)
		}
		var ids []string
		for _, ev := range page.Items {
			ids = append(ids, ev.ID.String())
		}
		for _, id := range append(stored["n1"], stored["n3"]...) {
			if !slices.Contains(ids, id) {
				t.Errorf("%s's cluster-wide list of events lacks event %s", n.Name, id)
			}
		}
	}
}

// TestClusterSensorWithoutRuleRole: n2, the only sensor member, has no rule
// role; its timer's ticks are evaluated and stored by n1, each once. With
// n1 gone, no member has the rule role: n2's ticks are dropped with a
// reason, and a webhook posted to n2 is refused with 503 naming the role.
func TestClusterSensorWithoutRuleRole(t *testing.T) {
	ledger := filepath.Join(t.TempDir(), "ledger")
	c := StartCluster(t, 2, WithClusterArgs("--packs", timerPack(t, ledger)+","+hookPack(t)),
		WithNodeArgs("n1", "--roles", "rule,worker,api"),
		WithNodeArgs("n2", "--roles", "sensor,worker,api"))
	n1, n2 := c.Node("n1"), c.Node("n2")
	if owner := timerOwner(t, n2, ledger); owner != "n1" {
		t.Errorf("the ticks of n2's timer are owned by %s, want n1, the rule member", owner)
	}
	if !strings.Contains(n2.Log(), "sensor activated here") || strings.Contains(n1.Log(), "sensor activated here") {
		t.Errorf("the timer should run on n2, the only sensor member")
	}
	owners, err := tickOwners(t, n2, "tick.every")
	if err != nil {
		t.Fatal(err)
	}
	for at, execs := range owners {
		if nodes := nodesOf(execs); !slices.Equal(nodes, []string{"n1"}) {
			t.Errorf("tick %s has executions owned by %v, want one owned by n1", at.Format(time.StampMilli), nodes)
		}
	}
	checkTicksOnce(t, ledger, owners)

	c.Kill(n1)
	waitFor(t, 20*time.Second, func() error {
		if !strings.Contains(n2.Log(), "no live member has the rule role") {
			return errors.New("n2 has not dropped a tick for want of a rule member")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = n2.Client.Webhook(ctx, "hook", map[string]any{"message": "nobody evaluates me"})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Code != api.CodeNoMember || !strings.Contains(ae.Message, "rule role") {
		t.Fatalf("webhook to n2 without rule members: %v, want 503 no_member naming the rule role", err)
	}
	t.Logf("n2 without rule members: %d %s", ae.Status, ae.Message)
}

func counts(m map[string][]string) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}
