package api_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/api/apitest"
)

// TestNotServedRefusesAllButProbesAndMembers: a node without the api role
// answers its probes, its metrics and the other members' ?local=true
// queries and re-runs (it owns the executions it runs again); every other
// request, a webhook or a run with ?local=true included, gets NotServed's
// error.
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
		{"POST", "/api/v1/executions/" + ex.ID.String() + "/rerun", "", 421},
		{"POST", "/api/v1/executions/" + ex.ID.String() + "/rerun?local=true", "", 201},
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
	if len(exs.Items) != 2 || len(evs.Items) != 1 {
		t.Errorf("%d executions and %d events after refused runs and webhooks, want the seeded one of each and the member's re-run", len(exs.Items), len(evs.Items))
	}
}

// TestLocalClientMarksReadsAndReruns: ?local=true scopes what a node
// lists, and the executions it re-runs, to its own records; any other write
// is never cluster-wide, so it goes without, and the node is not made to
// parse a query per webhook.
func TestLocalClientMarksReadsAndReruns(t *testing.T) {
	b := apitest.New(apitest.Catalog()...)
	var mu sync.Mutex
	queries := map[string]string{}
	hs := apitest.Serve(t, b, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			queries[r.Method+" "+r.URL.Path] = r.URL.RawQuery
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	})
	c := api.NewClient(hs.URL)
	c.Local = true
	if _, err := c.Webhook(t.Context(), "hook", map[string]any{"msg": "hi"}); err != nil {
		t.Fatal(err)
	}
	e, err := c.Run(t.Context(), "demo.echo", map[string]any{"message": "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Execution(t.Context(), e.ID.String(), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Executions(t.Context(), api.ListQuery{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rerun(t.Context(), e.ID.String(), nil); err != nil {
		t.Fatal(err)
	}
	for req, want := range map[string]string{
		"POST /api/v1/webhooks/hook":                          "",
		"POST /api/v1/executions":                             "",
		"GET /api/v1/executions/" + e.ID.String():             "local=true",
		"GET /api/v1/executions":                              "local=true",
		"POST /api/v1/executions/" + e.ID.String() + "/rerun": "local=true",
	} {
		if got, ok := queries[req]; !ok || got != want {
			t.Errorf("%s sent query %q (seen %v), want %q", req, got, ok, want)
		}
	}
}
