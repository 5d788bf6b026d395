package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// TestTimerRuleFires: an interval timer drives a shell action, each tick is
// one event with one enforcement and one execution.
func TestTimerRuleFires(t *testing.T) {
	pack := writePack(t, "tick", map[string]string{
		"rules/every_second.yaml": `
name: every_second
trigger:
  type: core.intervaltimer
  parameters: {unit: seconds, delta: 1}
action:
  ref: core.echo
  parameters:
    message: "tick at {{ trigger.executed_at }}"
`,
	})
	n := StartNode(t, "n1", WithPacks(pack))
	ctx := t.Context()
	var page api.Page[*api.ExecutionView]
	waitFor(t, 15*time.Second, func() error {
		var err error
		page, err = n.Client.Executions(ctx, api.ListQuery{Rule: "tick.every_second", Status: "succeeded"})
		if err != nil {
			return err
		}
		if len(page.Items) < 3 {
			return fmt.Errorf("%d succeeded tick executions, want 3", len(page.Items))
		}
		return nil
	})
	events := map[domain.ID]bool{}
	for _, ex := range page.Items {
		if events[ex.Event] {
			t.Errorf("event %s has two executions", ex.Event)
		}
		events[ex.Event] = true
		full := n.WaitExecution(ex.ID.String(), domain.StatusSucceeded, time.Second)
		if !strings.HasPrefix(full.Result.Stdout, "tick at ") {
			t.Errorf("stdout %q, want the rendered message", full.Result.Stdout)
		}
		ev, err := n.Client.Event(ctx, ex.Event.String())
		if err != nil {
			t.Fatal(err)
		}
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(ev.Payload["executed_at"]))
		if err != nil || at.UnixMilli()%1000 != 0 {
			t.Errorf("tick executed_at %v is not aligned to the second (%v)", ev.Payload["executed_at"], err)
		}
		var statuses []domain.Status
		for _, h := range full.History {
			statuses = append(statuses, h.Status)
		}
		if fmt.Sprint(statuses) != "[requested scheduled running succeeded]" {
			t.Errorf("history %v", statuses)
		}
	}
}

const deployPack = `
name: deploy
trigger:
  type: core.webhook
  parameters: {url: deploy}
criteria:
  trigger.body.env: {type: equals, pattern: prod}
  trigger.body.replicas: {type: greaterthan, pattern: 0}
action:
  ref: hooks.report
  parameters:
    service: "{{ trigger.body.service }}"
    replicas: "{{ trigger.body.replicas }}"
    note: "deploying {{ trigger.body.service }} x{{ trigger.body.replicas }}"
`

const reportPy = `import json, sys
p = json.load(sys.stdin)
print(json.dumps({"service": p["service"], "replicas": p["replicas"],
                  "replicas_type": type(p["replicas"]).__name__, "note": p["note"]}))
`

const reportAction = `
name: report
runtime: python
entry_point: report.py
parameters:
  service: {type: string, required: true}
  replicas: {type: integer, required: true}
  note: {type: string}
`

// TestWebhookCriteriaAndTypedTemplates: a webhook event matching the
// criteria runs a python action whose parameters kept their JSON types; a
// non-matching one is stored but runs nothing; one whose rendered
// parameters are invalid yields a failed enforcement naming the parameter.
func TestWebhookCriteriaAndTypedTemplates(t *testing.T) {
	pack := writePack(t, "hooks", map[string]string{
		"rules/deploy.yaml":   deployPack,
		"actions/report.yaml": reportAction,
		"actions/report.py":   reportPy,
	})
	n := StartNode(t, "n1", WithPacks(pack))
	ctx := t.Context()

	evID, err := n.Client.Webhook(ctx, "deploy", map[string]any{"env": "prod", "service": "api", "replicas": 3})
	if err != nil {
		t.Fatal(err)
	}
	ex := executionOf(t, n, evID)
	ex = n.WaitExecution(ex.ID.String(), domain.StatusSucceeded, 20*time.Second)
	var out map[string]any
	if err := json.Unmarshal(ex.Result.Output, &out); err != nil {
		t.Fatalf("output %q is not JSON: %v", ex.Result.Output, err)
	}
	if out["replicas_type"] != "int" || out["replicas"] != 3.0 || out["service"] != "api" || out["note"] != "deploying api x3" {
		t.Errorf("action saw %v, want replicas as an int 3 and the rendered note", out)
	}
	if ex.Rule != "hooks.deploy" || ex.Runtime != "python" || ex.Event.String() != evID {
		t.Errorf("execution provenance: rule %q runtime %q event %s", ex.Rule, ex.Runtime, ex.Event)
	}

	// Stored, evaluated, not matched.
	devID, err := n.Client.Webhook(ctx, "deploy", map[string]any{"env": "dev", "service": "api", "replicas": 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Client.Event(ctx, devID); err != nil {
		t.Errorf("non-matching event not stored: %v", err)
	}
	if enfs, err := n.Client.Enforcements(ctx, api.ListQuery{Event: devID}); err != nil || len(enfs.Items) != 0 {
		t.Errorf("non-matching event has enforcements %v (%v)", enfs.Items, err)
	}

	// Matched, but 2.5 is not an integer: a failed enforcement naming the
	// parameter, and no execution.
	badID, err := n.Client.Webhook(ctx, "deploy", map[string]any{"env": "prod", "service": "api", "replicas": 2.5})
	if err != nil {
		t.Fatal(err)
	}
	enfs, err := n.Client.Enforcements(ctx, api.ListQuery{Event: badID})
	if err != nil || len(enfs.Items) != 1 {
		t.Fatalf("enforcements of the bad event: %v (%v), want 1", enfs.Items, err)
	}
	if enf := enfs.Items[0]; enf.Status != domain.EnforcementFailed || !strings.Contains(enf.Error, "replicas") || !enf.Execution.IsZero() {
		t.Errorf("enforcement %+v, want failed naming replicas and no execution", enf)
	}

	var apiErr *api.Error
	if _, err := n.Client.Webhook(ctx, "nope", map[string]any{}); !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Errorf("unknown webhook: %v, want a 404", err)
	}
}
