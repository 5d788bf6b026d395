package runtimes

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/domain"
)

// httpTarget serves the paths the core.http cases call.
func httpTarget(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		io.WriteString(w, `{"hello": "world"}`)
	})
	mux.HandleFunc("/text", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, `{"looks": "like json"}`)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"method": r.Method, "content_type": r.Header.Get("Content-Type"),
			"token": r.Header.Get("X-Token"), "body": string(body),
		})
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestBuiltin(t *testing.T) {
	rt, err := NewBuiltin(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httpTarget(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		name    string
		action  string
		params  map[string]any
		timeout time.Duration
		status  domain.Status
		errText string
		output  any // decoded Output; nil: not checked
	}{
		{name: "noop", action: "core.noop", status: domain.StatusSucceeded, output: map[string]any{}},
		{name: "sleep", action: "core.sleep", params: map[string]any{"seconds": 0.01}, status: domain.StatusSucceeded, output: map[string]any{}},
		{name: "sleep past timeout", action: "core.sleep", params: map[string]any{"seconds": 60}, timeout: 50 * time.Millisecond,
			status: domain.StatusTimeout, errText: "timed out after 50ms"},
		{name: "sleep without seconds", action: "core.sleep", status: domain.StatusFailed,
			errText: `action core.sleep: parameter "seconds": required`},
		{name: "sleep bad seconds", action: "core.sleep", params: map[string]any{"seconds": "soon"}, status: domain.StatusFailed,
			errText: `action core.sleep: parameter "seconds": must be a non-negative number of seconds`},
		{name: "unknown action", action: "core.x", status: domain.StatusFailed,
			errText: `builtin action "core.x" not found (available: core.http, core.noop, core.sleep)`},
		{name: "http json", action: "core.http", params: map[string]any{"url": srv.URL + "/json"}, status: domain.StatusSucceeded,
			output: map[string]any{"status": 200.0, "body": map[string]any{"hello": "world"}}},
		{name: "http text that looks like json", action: "core.http", params: map[string]any{"url": srv.URL + "/text"}, status: domain.StatusSucceeded,
			output: map[string]any{"status": 200.0, "body": `{"looks": "like json"}`}},
		{name: "http 404", action: "core.http", params: map[string]any{"url": srv.URL + "/missing"}, status: domain.StatusFailed,
			errText: "HTTP 404 Not Found", output: map[string]any{"status": 404.0, "body": "404 page not found\n"}},
		{name: "http json body and headers", action: "core.http", params: map[string]any{
			"method": "post", "url": srv.URL + "/echo", "headers": map[string]any{"X-Token": "t0k"}, "body": map[string]any{"n": 1},
		}, status: domain.StatusSucceeded, output: map[string]any{"status": 200.0, "body": map[string]any{
			"method": "POST", "content_type": "application/json", "token": "t0k", "body": `{"n":1}`,
		}}},
		{name: "http string body keeps its content type", action: "core.http", params: map[string]any{
			"method": "PUT", "url": srv.URL + "/echo", "headers": map[string]string{"Content-Type": "text/csv"}, "body": "a,b",
		}, status: domain.StatusSucceeded, output: map[string]any{"status": 200.0, "body": map[string]any{
			"method": "PUT", "content_type": "text/csv", "token": "", "body": "a,b",
		}}},
		{name: "http request timeout", action: "core.http", params: map[string]any{"url": srv.URL + "/hang?token=secret", "timeout": 0.05},
			status: domain.StatusFailed, errText: "GET " + srv.URL + "/hang: request timed out after 50ms"},
		{name: "http past action timeout", action: "core.http", params: map[string]any{"url": srv.URL + "/hang"}, timeout: 50 * time.Millisecond,
			status: domain.StatusTimeout, errText: "timed out after 50ms"},
		{name: "http bad url", action: "core.http", params: map[string]any{"url": "ftp://x"}, status: domain.StatusFailed,
			errText: `action core.http: parameter "url": must be an absolute http or https URL`},
		{name: "http bad header", action: "core.http", params: map[string]any{"url": srv.URL, "headers": map[string]any{"X": 1}},
			status: domain.StatusFailed, errText: `action core.http: parameter "headers": value of "X" must be a string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rt.Run(t.Context(), Request{Action: tc.action, Parameters: tc.params, Timeout: tc.timeout})
			checkOutcome(t, got, tc.status, tc.errText)
			if tc.output == nil {
				return
			}
			var out any
			if err := json.Unmarshal(got.Result.Output, &out); err != nil {
				t.Fatalf("output %q: %v", got.Result.Output, err)
			}
			if m, ok := out.(map[string]any); ok {
				delete(m, "headers") // checked below, where it matters
			}
			if !reflect.DeepEqual(out, tc.output) {
				t.Errorf("output %s, want %v", got.Result.Output, tc.output)
			}
		})
	}

	t.Run("http transport error", func(t *testing.T) {
		got := rt.Run(t.Context(), Request{Action: "core.http", Parameters: map[string]any{"url": closed.URL + "/x"}})
		if got.Status != domain.StatusFailed || !strings.HasPrefix(got.Error, "GET "+closed.URL+"/x: dial tcp") {
			t.Fatalf("outcome %s %q, want failed with the dial error", got.Status, got.Error)
		}
	})
	t.Run("http response headers", func(t *testing.T) {
		got := rt.Run(t.Context(), Request{Action: "core.http", Parameters: map[string]any{"url": srv.URL + "/json"}})
		var out struct{ Headers map[string]string }
		if err := json.Unmarshal(got.Result.Output, &out); err != nil || out.Headers["Content-Type"] != "application/json; charset=utf-8" {
			t.Fatalf("headers %v (%v), want the Content-Type the server set", out.Headers, err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		got := rt.Run(ctx, Request{Action: "core.sleep", Parameters: map[string]any{"seconds": 60}, Timeout: time.Hour})
		checkOutcome(t, got, domain.StatusCanceled, "canceled")
	})
}

// TestHTTPDefaultTimeout: a core.http request without a timeout parameter is
// bounded by the 30 seconds the action's description promises (shortened
// here), not only by the action's timeout.
func TestHTTPDefaultTimeout(t *testing.T) {
	srv := httpTarget(t)
	rt, err := NewBuiltin(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	b := rt.(*builtin)
	if b.httpTimeout != 30*time.Second {
		t.Fatalf("default request timeout %s, want 30s", b.httpTimeout)
	}
	b.httpTimeout = 50 * time.Millisecond
	hang := srv.URL + "/hang"
	for _, tc := range []struct {
		name    string
		params  map[string]any
		timeout time.Duration // the action's
		status  domain.Status
		errText string
	}{
		{"absent", map[string]any{"url": hang}, 0, domain.StatusFailed, "GET " + hang + ": request timed out after 50ms"},
		{"null", map[string]any{"url": hang, "timeout": nil}, 0, domain.StatusFailed, "GET " + hang + ": request timed out after 50ms"},
		{"given", map[string]any{"url": hang, "timeout": 0.02}, 0, domain.StatusFailed, "GET " + hang + ": request timed out after 20ms"},
		{"zero leaves the action's timeout", map[string]any{"url": hang, "timeout": 0}, 100 * time.Millisecond, domain.StatusTimeout, "timed out after 100ms"},
		{"the action's timeout applies on top", map[string]any{"url": hang}, 10 * time.Millisecond, domain.StatusTimeout, "timed out after 10ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Without any bound the run would end here, canceled.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			got := rt.Run(ctx, Request{Action: "core.http", Parameters: tc.params, Timeout: tc.timeout})
			checkOutcome(t, got, tc.status, tc.errText)
		})
	}
}
