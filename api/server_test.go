package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/troupehq/troupe/internal/troupetest"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/api/apitest"
	"github.com/troupehq/troupe/domain"
)

// node is one API server over an apitest.Backend, with the handles tests need.
type node struct {
	b   *apitest.Backend
	c   *api.Client
	reg *prometheus.Registry
	log *troupetest.Buffer
}

func start(t *testing.T, cfg api.Config) *node {
	t.Helper()
	n := &node{b: apitest.New(apitest.Catalog()...), reg: prometheus.NewRegistry(), log: &troupetest.Buffer{}}
	cfg.Logger = slog.New(slog.NewTextHandler(n.log, nil))
	cfg.Metrics = promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{})
	s, err := api.NewServer(cfg, n.b, n.reg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	n.c = api.NewClient(hs.URL)
	return n
}

// call sends a raw request, for what the typed client cannot express.
func (n *node) call(t *testing.T, method, path, body string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, n.c.Addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// seed stores one execution (with secret "password"), event and enforcement
// linked to each other.
func (n *node) seed() (ex *domain.Execution, ev *domain.Event, en *domain.Enforcement) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	ev = &domain.Event{ID: domain.NewID(now), Trigger: "core.webhook", Payload: map[string]any{"body": "x"}, Node: "test", CreatedAt: now}
	en = &domain.Enforcement{ID: domain.EnforcementID(ev.ID, "demo.on_hook"), Event: ev.ID, Rule: "demo.on_hook", Action: "demo.echo", Status: domain.EnforcementSucceeded, CreatedAt: now}
	en.Execution = domain.ExecutionIDFor(en.ID)
	ex = &domain.Execution{
		ID: en.Execution, Action: "demo.echo", Runtime: "shell", Status: domain.StatusRequested,
		Parameters: map[string]any{"message": "hi", "password": "hunter2"}, Secret: []string{"password"},
		Attempt: 1, Seq: 1, Rule: "demo.on_hook", Event: ev.ID, Enforcement: en.ID, Node: "test", CreatedAt: now,
	}
	n.b.AddEvent(ev)
	n.b.AddEnforcement(en)
	n.b.AddExecution(ex, domain.HistoryEntry{Status: domain.StatusRequested, At: now, Attempt: 1, Seq: 1, Node: "test"})
	return ex, ev, en
}

func TestRoutes(t *testing.T) {
	n := start(t, api.DefaultConfig())
	ex, ev, en := n.seed()
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               []string // substrings of the answer
	}{
		{"POST", "/api/v1/webhooks/hook", `{"msg": "hi"}`, 202, []string{`"event":"`}},
		{"POST", "/api/v1/executions", `{"action": "demo.echo", "parameters": {"message": "hi"}}`, 201, []string{`"status":"requested"`, `"greeting":"hello"`, `"result":null`}},
		{"GET", "/api/v1/executions/" + ex.ID.String(), "", 200, []string{`"id":"` + ex.ID.String(), `"history":[{"status":"requested"`, `"finished_at":null`}},
		{"GET", "/api/v1/executions?action=demo.echo&status=requested&rule=demo.on_hook", "", 200, []string{`"items":[{"id":"` + ex.ID.String(), `"next":""`}},
		{"GET", "/api/v1/events?trigger=core.webhook", "", 200, []string{`"id":"` + ev.ID.String()}},
		{"GET", "/api/v1/events/" + ev.ID.String(), "", 200, []string{`"trigger":"core.webhook"`}},
		{"GET", "/api/v1/enforcements?rule=demo.on_hook&event=" + ev.ID.String(), "", 200, []string{`"id":"` + en.ID.String()}},
		{"GET", "/api/v1/enforcements/" + en.ID.String(), "", 200, []string{`"execution":"` + ex.ID.String()}},
		{"GET", "/api/v1/rules?pack=demo", "", 200, []string{`"ref":"demo.off_hook"`, `"ref":"demo.on_hook"`}},
		{"GET", "/api/v1/rules/demo.on_hook", "", 200, []string{`"enabled":true`}},
		{"GET", "/api/v1/actions", "", 200, []string{`"ref":"core.noop"`, `"ref":"demo.echo"`}},
		{"GET", "/api/v1/actions/demo.echo", "", 200, []string{`"runtime":"shell"`}},
		{"GET", "/api/v1/triggers?pack=core", "", 200, []string{`"ref":"core.webhook"`}},
		{"GET", "/api/v1/triggers/core.webhook", "", 200, []string{`"name":"webhook"`}},
		{"GET", "/api/v1/sensors", "", 200, []string{`"ref":"demo.watch"`}},
		{"GET", "/api/v1/sensors/demo.watch", "", 200, []string{`"runtime":"python"`}},
		{"GET", "/api/v1/packs", "", 200, []string{`"ref":"core"`, `"ref":"demo"`}},
		{"GET", "/api/v1/packs/demo", "", 200, []string{`"version":"0.1.0"`}},
		{"GET", "/healthz", "", 200, []string{`{"status":"ok"}`}},
		{"GET", "/readyz", "", 200, []string{`{"status":"ready"}`}},
		{"GET", "/metrics", "", 200, []string{"troupe_http_requests_total"}},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			code, _, body := n.call(t, tc.method, tc.path, tc.body)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			for _, w := range tc.want {
				if !bytes.Contains(body, []byte(w)) {
					t.Errorf("answer lacks %s: %s", w, body)
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	type errBody struct{ Error api.Error }
	for _, tc := range []struct {
		name               string
		setup              func(*apitest.Backend)
		method, path, body string
		code               string
		status             int
		want               string // substring of the message
		field              string
	}{
		{name: "limit not a number", path: "/api/v1/executions?limit=ten", code: "bad_request", status: 400, want: `"ten"`},
		{name: "limit zero", path: "/api/v1/rules?limit=0", code: "bad_request", status: 400, want: "1 to 1000"},
		{name: "limit too high", path: "/api/v1/events?limit=1001", code: "bad_request", status: 400, want: "1001"},
		{name: "cursor", path: "/api/v1/executions?cursor=nope", code: "bad_request", status: 400, want: `cursor "nope"`},
		{name: "status", path: "/api/v1/executions?status=bogus", code: "bad_request", status: 400, want: `"bogus"`},
		{name: "event filter", path: "/api/v1/enforcements?event=xyz", code: "bad_request", status: 400, want: `"xyz"`},
		{name: "unknown filter", path: "/api/v1/events?rule=x", code: "bad_request", status: 400, want: `"rule" (known: trigger, limit, cursor, local)`},
		{name: "id", path: "/api/v1/executions/123", code: "bad_request", status: 400, want: `"123"`},
		{name: "wait", path: "/api/v1/executions/01J00000000000000000000000?wait=6m", code: "bad_request", status: 400, want: "5m0s"},
		{name: "unknown field", method: "POST", path: "/api/v1/executions", body: `{"action": "demo.echo", "params": {}}`, code: "bad_request", status: 400, want: `"params"`},
		{name: "wrong type", method: "POST", path: "/api/v1/executions", body: `{"action": 7}`, code: "bad_request", status: 400, want: `field "action" must be string`},
		{name: "missing action", method: "POST", path: "/api/v1/executions", body: `{}`, code: "bad_request", status: 400, want: `missing "action"`},
		{name: "syntax", method: "POST", path: "/api/v1/executions", body: "{\n  \"action\": \"demo.echo\",\n  \"parameters\": {,}\n}", code: "invalid_json", status: 400, want: "line 3, column 18"},
		{name: "truncated", method: "POST", path: "/api/v1/webhooks/hook", body: `{"msg": `, code: "invalid_json", status: 400, want: "line 1"},
		{name: "trailing data", method: "POST", path: "/api/v1/webhooks/hook", body: `{} x`, code: "invalid_json", status: 400, want: "line 1, column 4"},
		{name: "empty body", method: "POST", path: "/api/v1/webhooks/hook", code: "invalid_json", status: 400, want: "empty"},
		{name: "unknown action", method: "POST", path: "/api/v1/executions", body: `{"action": "demo.nope"}`, code: "not_found", status: 404, want: "demo.nope"},
		{name: "unknown execution", path: "/api/v1/executions/01J00000000000000000000000", code: "not_found", status: 404, want: "01J00000000000000000000000"},
		{name: "unknown event", path: "/api/v1/events/01J00000000000000000000000", code: "not_found", status: 404, want: "event 01J00000000000000000000000"},
		{name: "unknown ref", path: "/api/v1/rules/demo.on_hok", code: "not_found", status: 404, want: "did you mean demo.on_hook?"},
		{name: "unknown webhook", method: "POST", path: "/api/v1/webhooks/nobody", body: `{}`, code: "not_found", status: 404, want: `"nobody"`},
		{name: "disabled webhook", method: "POST", path: "/api/v1/webhooks/off", body: `{}`, code: "not_found", status: 404, want: `"off"`},
		{name: "unknown route", path: "/api/v2/rules", code: "not_found", status: 404, want: "GET /api/v2/rules"},
		{name: "method", method: "DELETE", path: "/api/v1/rules", code: "method_not_allowed", status: 405, want: "allowed: GET, HEAD"},
		{name: "too large", method: "POST", path: "/api/v1/webhooks/hook", body: `"` + strings.Repeat("x", 200) + `"`, code: "too_large", status: 413, want: "128 bytes"},
		{name: "unknown parameter", method: "POST", path: "/api/v1/executions", body: `{"action": "demo.echo", "parameters": {"message": "m", "colour": "red"}}`, code: "invalid_parameters", status: 422, want: `"colour"`, field: "colour"},
		{name: "required parameter", method: "POST", path: "/api/v1/executions", body: `{"action": "demo.echo"}`, code: "invalid_parameters", status: 422, want: `"message"`, field: "message"},
		{name: "not ready", setup: func(b *apitest.Backend) { b.SetReady(errors.New("recovering 3 executions")) }, path: "/readyz", code: "not_ready", status: 503, want: "recovering 3 executions"},
		{name: "internal", setup: func(b *apitest.Backend) { b.Err = errors.New("disk on fire") }, path: "/api/v1/executions", code: "internal", status: 500, want: "internal error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := start(t, api.Config{MaxBody: 128})
			if tc.setup != nil {
				tc.setup(n.b)
			}
			code, header, body := n.call(t, cmpOr(tc.method, "GET"), tc.path, tc.body)
			var got errBody
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("answer is not a JSON error: %v: %s", err, body)
			}
			if code != tc.status || got.Error.Code != tc.code {
				t.Fatalf("got %d %s, want %d %s: %s", code, got.Error.Code, tc.status, tc.code, body)
			}
			if !strings.Contains(got.Error.Message, tc.want) {
				t.Errorf("message %q lacks %q", got.Error.Message, tc.want)
			}
			if got.Error.Field != tc.field {
				t.Errorf("field %q, want %q", got.Error.Field, tc.field)
			}
			if ct := header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if tc.code == "internal" && (strings.Contains(got.Error.Message, "disk") || !strings.Contains(n.log.String(), "disk on fire")) {
				t.Errorf("cause must be logged, not sent: message %q, log %q", got.Error.Message, n.log.String())
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestWebhookHeaders(t *testing.T) {
	n := start(t, api.DefaultConfig())
	code, _, body := n.call(t, "POST", "/api/v1/webhooks/hook", `{"msg": "hi"}`,
		"X-Github-Event", "push", "X-Github-Event", "second", "Authorization", "Bearer t0ken")
	if code != 202 {
		t.Fatalf("status %d: %s", code, body)
	}
	var out struct{ Event string }
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	ev, err := n.c.Event(t.Context(), out.Event)
	if err != nil {
		t.Fatal(err)
	}
	headers := ev.Payload["headers"].(map[string]any)
	if headers["x-github-event"] != "push" {
		t.Errorf("headers %v: want x-github-event=push (first value, lower-case name)", headers)
	}
	if _, ok := headers["authorization"]; ok {
		t.Errorf("authorization reached the event: %v", headers)
	}
	if body := ev.Payload["body"].(map[string]any); body["msg"] != "hi" {
		t.Errorf("body %v", body)
	}
}

func TestPagination(t *testing.T) {
	n := start(t, api.DefaultConfig())
	base := time.Now()
	var want []string // newest first
	for i := range 5 {
		id := domain.NewID(base.Add(time.Duration(i) * time.Second))
		n.b.AddExecution(&domain.Execution{ID: id, Action: "demo.echo", Status: domain.StatusSucceeded, CreatedAt: base})
		want = append([]string{id.String()}, want...)
	}
	n.b.AddExecution(&domain.Execution{ID: domain.NewID(base), Action: "core.noop", Status: domain.StatusSucceeded})

	t.Run("records", func(t *testing.T) {
		var got []string
		var sizes []int
		q := api.ListQuery{Action: "demo.echo", Limit: 2}
		for {
			p, err := n.c.Executions(t.Context(), q)
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, len(p.Items))
			for _, e := range p.Items {
				got = append(got, e.ID.String())
			}
			if q.Cursor = p.Next; q.Cursor == "" {
				break
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(sizes) != "[2 2 1]" {
			t.Errorf("pages %v of %v, want [2 2 1] of %v", sizes, got, want)
		}
	})
	t.Run("catalog", func(t *testing.T) {
		for _, tc := range []struct {
			pack string
			want string
		}{
			{"", "[core.noop demo.echo]"},
			{"demo", "[demo.echo]"},
			{"nope", "[]"},
		} {
			var got []string
			q := api.ListQuery{Pack: tc.pack, Limit: 1}
			for {
				p, err := n.c.Actions(t.Context(), q)
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range p.Items {
					got = append(got, a.Ref)
				}
				if q.Cursor = p.Next; q.Cursor == "" {
					break
				}
			}
			if fmt.Sprint(got) != tc.want {
				t.Errorf("pack %q: got %v, want %s", tc.pack, got, tc.want)
			}
		}
	})
	t.Run("partial", func(t *testing.T) {
		n.b.Unreachable = []string{"node-b"}
		code, _, body := n.call(t, "GET", "/api/v1/events", "")
		if code != 200 || !bytes.Contains(body, []byte(`"items":[],"next":"","partial":true,"unreachable":["node-b"]`)) {
			t.Errorf("status %d: %s", code, body)
		}
	})
}

func TestSecretsMasked(t *testing.T) {
	n := start(t, api.DefaultConfig())
	ctx := t.Context()
	e, err := n.c.Run(ctx, "demo.echo", map[string]any{"message": "hi", "password": "hunter2"})
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]func() (any, error){
		"run":     func() (any, error) { return e, nil },
		"get":     func() (any, error) { return n.c.Execution(ctx, e.ID.String(), 0) },
		"list":    func() (any, error) { return n.c.Executions(ctx, api.ListQuery{}) },
		"action":  func() (any, error) { return n.c.Action(ctx, "demo.echo") },
		"actions": func() (any, error) { return n.c.Actions(ctx, api.ListQuery{}) },
		"rule":    func() (any, error) { return n.c.Rule(ctx, "demo.on_hook") },
		"pack":    func() (any, error) { return n.c.Pack(ctx, "demo") },
		"stream": func() (any, error) {
			events, _ := follow(t, ctx, n.c, "")
			for _, st := range []domain.Status{domain.StatusScheduled, domain.StatusRunning, domain.StatusSucceeded} {
				if err := n.b.Transition(e.ID, st, nil); err != nil {
					return nil, err
				}
			}
			return <-events, nil
		},
	}
	for name, get := range outputs {
		t.Run(name, func(t *testing.T) {
			v, err := get()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(v)
			for _, secret := range []string{"hunter2", "default-secret", "rule-secret"} {
				if bytes.Contains(b, []byte(secret)) {
					t.Errorf("%s shows %s: %s", name, secret, b)
				}
			}
			if !bytes.Contains(b, []byte(api.Masked)) {
				t.Errorf("%s has no masked value: %s", name, b)
			}
		})
	}
	stored, _, err := n.b.Execution(ctx, e.ID)
	if err != nil || stored.Parameters["password"] != "hunter2" {
		t.Errorf("masking must not touch the record: %v, %v", stored.Parameters, err)
	}
	if p := apitest.Catalog(); n.b.Packs()[1].Actions[0].Parameters["password"].Default != p[1].Actions[0].Parameters["password"].Default {
		t.Error("masking must not touch the catalog")
	}
}

func TestWaitLongPoll(t *testing.T) {
	n := start(t, api.DefaultConfig())
	n.b.Waiting = make(chan domain.ID, 1)
	e, err := n.c.Run(t.Context(), "demo.echo", map[string]any{"message": "hi"})
	if err != nil {
		t.Fatal(err)
	}
	id := e.ID.String()

	t.Run("expires", func(t *testing.T) {
		got, err := n.c.Execution(t.Context(), id, time.Millisecond)
		if err != nil || got.Status != domain.StatusRequested {
			t.Fatalf("got %v, %v; want the requested record once the wait ends", got, err)
		}
		<-n.b.Waiting
	})
	t.Run("completes", func(t *testing.T) {
		done := make(chan *api.ExecutionView, 1)
		go func() {
			got, err := n.c.Execution(t.Context(), id, time.Minute)
			if err != nil {
				t.Error(err)
			}
			done <- got
		}()
		<-n.b.Waiting // the poll is held by the backend now
		out := json.RawMessage(`{"ok":true}`)
		for _, st := range []domain.Status{domain.StatusScheduled, domain.StatusRunning, domain.StatusSucceeded} {
			if err := n.b.Transition(e.ID, st, &domain.Result{Stdout: `{"ok":true}`, Output: out}); err != nil {
				t.Fatal(err)
			}
		}
		got := <-done
		if got == nil || got.Status != domain.StatusSucceeded || len(got.History) != 4 || got.Result == nil || string(got.Result.Output) != `{"ok":true}` {
			t.Fatalf("got %+v, want succeeded with 4 history entries and the output", got)
		}
		if got.Duration() < 0 || got.StartedAt == nil || got.FinishedAt == nil {
			t.Errorf("times: started %v finished %v", got.StartedAt, got.FinishedAt)
		}
	})
}

func TestMetrics(t *testing.T) {
	n := start(t, api.DefaultConfig())
	ex, _, _ := n.seed()
	for range 3 {
		if _, err := n.c.Execution(t.Context(), ex.ID.String(), 0); err != nil {
			t.Fatal(err)
		}
	}
	n.call(t, "GET", "/nowhere/"+ex.ID.String(), "")
	counts := map[string]float64{}
	var observed uint64
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
				if strings.Contains(l.GetValue(), ex.ID.String()) {
					t.Errorf("%s has a raw path label %q", mf.GetName(), l.GetValue())
				}
			}
			switch mf.GetName() {
			case "troupe_http_requests_total":
				counts[labels["route"]+" "+labels["code"]] = m.GetCounter().GetValue()
			case "troupe_http_request_duration_seconds":
				if labels["route"] == "GET /api/v1/executions/{id}" {
					observed = m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	if counts["GET /api/v1/executions/{id} 200"] != 3 || counts["unmatched 404"] != 1 || observed != 3 {
		t.Errorf("counts %v, observed %d; want 3 gets, 1 unmatched, 3 observations", counts, observed)
	}
	if _, err := api.NewServer(api.DefaultConfig(), n.b, n.reg); err == nil {
		t.Error("registering twice on one registry must fail")
	}
}

func TestClientErrors(t *testing.T) {
	n := start(t, api.DefaultConfig())
	ctx := t.Context()
	_, err := n.c.Run(ctx, "demo.echo", map[string]any{"nope": 1})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 422 || ae.Code != api.CodeInvalidParameters || ae.Field != "nope" || ae.Error() != ae.Message {
		t.Errorf("got %#v", err)
	}
	n.b.SetReady(errors.New("loading packs"))
	if err := n.c.Ready(ctx); !errors.As(err, &ae) || ae.Code != api.CodeNotReady {
		t.Errorf("ready: %v", err)
	}
	if err := n.c.Healthz(ctx); err != nil {
		t.Errorf("healthz: %v", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := n.c.Wait(ctx, "01J00000000000000000000000"); !errors.Is(err, context.Canceled) {
		t.Errorf("wait on a canceled context: %v", err)
	}
}

func TestClientDecodes(t *testing.T) {
	n := start(t, api.DefaultConfig())
	ex, ev, en := n.seed()
	ctx := t.Context()
	id, err := n.c.Webhook(ctx, "hook", []int{1, 2})
	if err != nil || id == "" {
		t.Fatalf("webhook: %q, %v", id, err)
	}
	for _, tc := range []struct {
		name string
		call func() (string, error)
		want string
	}{
		{"executions", func() (string, error) {
			p, err := n.c.Executions(ctx, api.ListQuery{Rule: "demo.on_hook"})
			return fmt.Sprint(len(p.Items), p.Items[0].Enforcement), err
		}, fmt.Sprint(1, en.ID)},
		{"events", func() (string, error) {
			p, err := n.c.Events(ctx, api.ListQuery{Limit: 1})
			return fmt.Sprint(len(p.Items), p.Next != ""), err
		}, "1 true"},
		{"enforcement", func() (string, error) {
			e, err := n.c.Enforcement(ctx, en.ID.String())
			return e.Execution.String(), err
		}, ex.ID.String()},
		{"enforcements", func() (string, error) {
			p, err := n.c.Enforcements(ctx, api.ListQuery{Event: ev.ID.String()})
			return p.Items[0].Rule, err
		}, "demo.on_hook"},
		{"rules", func() (string, error) { p, err := n.c.Rules(ctx, api.ListQuery{}); return p.Items[0].Ref, err }, "demo.off_hook"},
		{"action", func() (string, error) { a, err := n.c.Action(ctx, "demo.echo"); return a.Timeout.String(), err }, "30s"},
		{"triggers", func() (string, error) { p, err := n.c.Triggers(ctx, api.ListQuery{}); return p.Items[1].Ref, err }, "core.webhook"},
		{"trigger", func() (string, error) { tr, err := n.c.Trigger(ctx, "core.intervaltimer"); return tr.Name, err }, "intervaltimer"},
		{"sensors", func() (string, error) {
			p, err := n.c.Sensors(ctx, api.ListQuery{Pack: "demo"})
			return p.Items[0].Ref, err
		}, "demo.watch"},
		{"sensor", func() (string, error) { s, err := n.c.Sensor(ctx, "demo.watch"); return s.TriggerTypes[0], err }, "demo.change"},
		{"packs", func() (string, error) {
			p, err := n.c.Packs(ctx, api.ListQuery{})
			return fmt.Sprint(len(p.Items)), err
		}, "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.call()
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestNewClientAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8080":          "http://127.0.0.1:8080",
		"https://troupe.example/": "https://troupe.example",
	} {
		if got := api.NewClient(in).Addr; got != want {
			t.Errorf("NewClient(%q).Addr = %q, want %q", in, got, want)
		}
	}
}

// TestRerun: a re-run answers the new execution, named as a re-run of the
// first, its secrets masked; the record keeps the first's parameters, the
// overrides replacing single ones, and the body may be left out.
func TestRerun(t *testing.T) {
	n := start(t, api.DefaultConfig())
	orig, _, _ := n.seed()
	path := "/api/v1/executions/" + orig.ID.String() + "/rerun"

	code, _, body := n.call(t, "POST", path, "")
	if code != http.StatusCreated {
		t.Fatalf("rerun without a body: %d %s", code, body)
	}
	var v api.ExecutionView
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	if v.RerunOf != orig.ID || v.ID == orig.ID || v.Rule != "" || v.Parameters["password"] != api.Masked {
		t.Errorf("rerun answered %s", body)
	}
	again, err := n.c.Rerun(t.Context(), orig.ID.String(), map[string]any{"message": "again"})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[domain.ID]map[string]any{
		v.ID:     {"message": "hi", "password": "hunter2", "greeting": "hello"},
		again.ID: {"message": "again", "password": "hunter2", "greeting": "hello"},
	} {
		stored, _, err := n.b.Execution(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(stored.Parameters) != fmt.Sprint(want) || stored.RerunOf != orig.ID {
			t.Errorf("re-run %s stored parameters %v, rerun_of %s; want %v, %s", id, stored.Parameters, stored.RerunOf, want, orig.ID)
		}
	}

	missing := domain.NewID(time.Now())
	for _, tc := range []struct{ path, body, code, want string }{
		{"/api/v1/executions/" + missing.String() + "/rerun", "", "not_found", missing.String()},
		{"/api/v1/executions/nope/rerun", "", "bad_request", "nope"},
		{path, `{"params": {}}`, "bad_request", `"params"`},
		{path, `{"parameters": {"colour": "red"}}`, "invalid_parameters", "colour"},
	} {
		code, _, body := n.call(t, "POST", tc.path, tc.body, "Content-Type", "application/json")
		var env struct{ Error *api.Error }
		if json.Unmarshal(body, &env) != nil || env.Error == nil || env.Error.Code != tc.code || !strings.Contains(env.Error.Message, tc.want) {
			t.Errorf("POST %s %s: %d %s; want %s naming %q", tc.path, tc.body, code, body, tc.code, tc.want)
		}
	}
}

// TestOutput: an execution's output is a stream of stdout and stderr
// events, the text as JSON strings, from the reader's offsets, ending with
// the execution; an unknown execution is a 404 before any stream starts.
func TestOutput(t *testing.T) {
	n := start(t, api.DefaultConfig())
	ex, _, _ := n.seed()
	if err := n.b.Transition(ex.ID, domain.StatusScheduled, nil); err != nil {
		t.Fatal(err)
	}
	if err := n.b.Transition(ex.ID, domain.StatusRunning, nil); err != nil {
		t.Fatal(err)
	}
	n.b.Waiting = make(chan domain.ID)
	go func() {
		<-n.b.Waiting // the reader waits for the end before the output comes
		n.b.Transition(ex.ID, domain.StatusFailed, &domain.Result{ExitCode: 3, Stdout: "héllo\nworld\n", Stderr: "oops\n"})
	}()
	type piece struct{ stream, text string }
	var got []piece
	final, err := n.c.Output(t.Context(), ex.ID.String(), api.OutputFrom{Stdout: 7}, func(stream string, chunk []byte) error {
		got = append(got, piece{stream, string(chunk)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []piece{{"stdout", "world\n"}, {"stderr", "oops\n"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("read %q, want %q", got, want)
	}
	if final == nil || final.ID != ex.ID || final.Status != domain.StatusFailed || final.Parameters["password"] != api.Masked {
		t.Errorf("ended with %+v; want the failed execution, its secret masked", final)
	}

	code, header, body := n.call(t, "GET", "/api/v1/executions/"+ex.ID.String()+"/output", "")
	if code != 200 || header.Get("Content-Type") != "text/event-stream" ||
		!strings.HasPrefix(string(body), "event: stdout\ndata: \"héllo\\nworld\\n\"\n\nevent: stderr\ndata: \"oops\\n\"\n\nevent: end\ndata: {") {
		t.Errorf("GET output: %d %s\n%s", code, header, body)
	}
	missing := domain.NewID(time.Now()).String()
	for path, want := range map[string]string{
		"/api/v1/executions/" + missing + "/output":                  "not_found",
		"/api/v1/executions/" + ex.ID.String() + "/output?stdout=-1": "bad_request",
	} {
		if code, _, body := n.call(t, "GET", path, ""); code/100 != 4 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d %s, want %s", path, code, body, want)
		}
	}
}

// TestKeepalive: an idle event stream, the stream of finished executions
// or an execution's output while the action is quiet, carries a comment
// every Config.Keepalive; the output still ends with its execution.
func TestKeepalive(t *testing.T) {
	cfg := api.DefaultConfig()
	cfg.Keepalive = 20 * time.Millisecond
	n := start(t, cfg)
	ex, _, _ := n.seed()
	for _, path := range []string{"/api/v1/stream", "/api/v1/executions/" + ex.ID.String() + "/output"} {
		t.Run(path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", n.c.Addr+path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			for i := 0; i < 2; i++ { // two in a row: none of them is an event
				if line, err := br.ReadString('\n'); err != nil || line != ": keepalive\n" {
					t.Fatalf("read %q, %v; want a keepalive comment", line, err)
				}
				if line, _ := br.ReadString('\n'); line != "\n" {
					t.Fatalf("read %q after the comment, want the blank line", line)
				}
			}
		})
	}
	for _, st := range []domain.Status{domain.StatusScheduled, domain.StatusRunning, domain.StatusSucceeded} {
		if err := n.b.Transition(ex.ID, st, &domain.Result{Stdout: "done\n"}); err != nil {
			t.Fatal(err)
		}
	}
	var got string
	if _, err := n.c.Output(t.Context(), ex.ID.String(), api.OutputFrom{}, func(_ string, chunk []byte) error {
		got += string(chunk)
		return nil
	}); err != nil || got != "done\n" {
		t.Errorf("output after keepalives: %q, %v", got, err)
	}
}
