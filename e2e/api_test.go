package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// TestAdhocRunAndAPIErrors: ad-hoc runs through the API, and each kind of
// bad request gets its status code and an error naming what is wrong.
func TestAdhocRunAndAPIErrors(t *testing.T) {
	pack := writePack(t, "adhoc", map[string]string{
		"actions/slow.yaml": "name: slow\nruntime: shell\ncmd: sleep 30\ntimeout: 1\n",
		"actions/gem.yaml":  "name: gem\nruntime: ruby\nentry_point: gem.rb\n",
		"actions/gem.rb":    "puts 1\n",
		"actions/login.yaml": `name: login
runtime: shell
cmd: 'printf "%s" "$TROUPE_PARAM_USER"'
parameters:
  user: {type: string, required: true}
  password: {type: string, secret: true, required: true}
  retries: {type: integer, default: 2}
`,
	})
	n := StartNode(t, "n1", WithPacks(pack), WithArgs("--max-body", "4096"))
	ctx := t.Context()

	ex, err := n.Client.Run(ctx, "core.echo", map[string]any{"message": "hello there"})
	if err != nil {
		t.Fatal(err)
	}
	ex = n.WaitExecution(ex.ID.String(), domain.StatusSucceeded, 10*time.Second)
	if ex.Result.Stdout != "hello there\n" || ex.Result.ExitCode != 0 || ex.Rule != "" || ex.StartedAt == nil || ex.FinishedAt == nil {
		t.Errorf("ad-hoc echo: %+v result %+v", ex, ex.Result)
	}

	t.Run("secret parameters are masked and defaults applied", func(t *testing.T) {
		ex, err := n.Client.Run(ctx, "adhoc.login", map[string]any{"user": "ann", "password": "hunter2"})
		if err != nil {
			t.Fatal(err)
		}
		ex = n.WaitExecution(ex.ID.String(), domain.StatusSucceeded, 10*time.Second)
		if ex.Parameters["password"] != api.Masked || ex.Parameters["retries"] != 2.0 || ex.Result.Stdout != "ann" {
			t.Errorf("parameters %v stdout %q", ex.Parameters, ex.Result.Stdout)
		}
		if strings.Contains(n.Log(), "hunter2") {
			t.Error("the secret parameter appears in the node's log")
		}
	})

	t.Run("timeout kills the action", func(t *testing.T) {
		ex, err := n.Client.Run(ctx, "adhoc.slow", nil)
		if err != nil {
			t.Fatal(err)
		}
		ex = n.WaitExecution(ex.ID.String(), domain.StatusTimeout, 15*time.Second)
		if d := ex.Duration(); d < time.Second || d > 5*time.Second || !strings.Contains(ex.Error, "timed out") {
			t.Errorf("timeout after %s with error %q", d, ex.Error)
		}
	})

	t.Run("a runtime the node lacks fails the execution, naming it", func(t *testing.T) {
		if !strings.Contains(n.Log(), `runtime \"ruby\" is not available`) {
			t.Error("no load-time warning about the ruby runtime")
		}
		ex, err := n.Client.Run(ctx, "adhoc.gem", nil)
		if err != nil {
			t.Fatal(err)
		}
		ex = n.WaitExecution(ex.ID.String(), domain.StatusFailed, 10*time.Second)
		if want := `runtime "ruby" not found (available: builtin, python, python-warm, shell)`; ex.Error != want {
			t.Errorf("error %q, want %q", ex.Error, want)
		}
	})

	for _, tc := range []struct {
		name, path, body string
		status           int
		code, mention    string
	}{
		{"unknown action", "/api/v1/executions", `{"action": "core.nope"}`, 404, "not_found", "core.nope"},
		{"invalid parameters", "/api/v1/executions", `{"action": "core.echo", "parameters": {"mesage": "x"}}`, 422, "invalid_parameters", "mesage"},
		{"invalid JSON", "/api/v1/executions", `{"action": `, 400, "invalid_json", ""},
		{"body too large", "/api/v1/webhooks/x", `{"pad": "` + strings.Repeat("x", 5000) + `"}`, 413, "too_large", "4096"},
		{"unknown webhook", "/api/v1/webhooks/nobody", `{}`, 404, "not_found", "nobody"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(n.Addr+tc.path, "application/json", bytes.NewBufferString(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct{ Error api.Error }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || body.Error.Code != tc.code || !strings.Contains(body.Error.Message, tc.mention) {
				t.Errorf("got %d %+v, want %d %s mentioning %q", resp.StatusCode, body.Error, tc.status, tc.code, tc.mention)
			}
		})
	}

	var apiErr *api.Error
	if _, err := n.Client.Execution(ctx, domain.NewID(time.Now()).String(), 0); !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Errorf("unknown execution id: %v, want 404", err)
	}
}
