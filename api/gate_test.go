package api_test

import (
	"strings"
	"testing"

	"github.com/troupehq/troupe/api"
)

// TestNotServedRefusesAllButProbesAndMembers: a node without the api role
// answers its probes, its metrics and the other members' GET ?local=true
// queries; every other request, a webhook or a run with ?local=true
// included, gets NotServed's error.
func TestNotServedRefusesAllButProbesAndMembers(t *testing.T) {
	cfg := api.DefaultConfig()
	cfg.NotServed = func() error {
		return api.NewError(api.CodeMisdirected, "node n3 does not serve the API; ask n1 at http://127.0.0.1:8080")
	}
	n := start(t, cfg)
	ex, _, _ := n.seed()
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/metrics", "", 200},
		{"GET", "/api/v1/executions?local=true", "", 200},
		{"GET", "/api/v1/executions/" + ex.ID.String() + "?local=true", "", 200},
		{"GET", "/api/v1/events?local=true", "", 200},
		{"GET", "/api/v1/executions", "", 421},
		{"GET", "/api/v1/executions/" + ex.ID.String(), "", 421},
		{"GET", "/api/v1/members", "", 421},
		{"GET", "/api/v1/actions", "", 421},
		{"POST", "/api/v1/webhooks/hook", `{}`, 421},
		{"POST", "/api/v1/webhooks/hook?local=true", `{}`, 421},
		{"POST", "/api/v1/executions?local=true", `{"action": "demo.echo", "parameters": {"message": "hi"}}`, 421},
		{"GET", "/api/v1/nowhere", "", 404},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			code, _, body := n.call(t, tc.method, tc.path, tc.body)
			if code != tc.code {
				t.Fatalf("answered %d %s, want %d", code, body, tc.code)
			}
			if code == 421 && (!strings.Contains(string(body), `"code":"misdirected"`) || !strings.Contains(string(body), "ask n1 at http://127.0.0.1:8080")) {
				t.Errorf("refusal %s does not carry NotServed's error", body)
			}
		})
	}
	exs, _ := n.b.Executions(t.Context(), api.ListQuery{Limit: 10})
	evs, _ := n.b.Events(t.Context(), api.ListQuery{Limit: 10})
	if len(exs.Items) != 1 || len(evs.Items) != 1 {
		t.Errorf("%d executions and %d events after refused runs and webhooks, want the seeded one of each", len(exs.Items), len(evs.Items))
	}
}
