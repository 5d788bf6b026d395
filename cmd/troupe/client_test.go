package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/troupehq/troupe/internal/troupetest"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/api/apitest"
	"github.com/troupehq/troupe/domain"
)

// fakeNode serves the API over an apitest.Backend holding the test catalog.
func fakeNode(t *testing.T) (*apitest.Backend, string) {
	t.Helper()
	b := apitest.New(apitest.Catalog()...)
	return b, apitest.Serve(t, b, nil).URL
}

// troupe runs the CLI against addr and returns its exit code and output.
func troupe(t *testing.T, addr string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = execute(t.Context(), append([]string{"--addr", addr}, args...), &out, &errOut)
	t.Logf("troupe %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return code, out.String(), errOut.String()
}

// spaced collapses runs of blanks, so expectations need not know how wide
// aligned columns came out.
func spaced(s string) string { return blanks.ReplaceAllString(s, " ") }

var blanks = regexp.MustCompile(`[ \t]+`)

func TestParseParams(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	obj, text := write("obj.json", `{"b": [1, 2]}`+"\n"), write("script.sh", "echo hi\n")
	for _, tc := range []struct {
		name string
		args []string
		want string // the parameters as JSON
		err  string
	}{
		{"none", nil, `{}`, ""},
		{"integer exactly", []string{"n=12345678901234567890"}, `{"n":12345678901234567890}`, ""},
		{"float", []string{"x=1.5"}, `{"x":1.5}`, ""},
		{"bools and null", []string{"a=true", "b=false", "c=null"}, `{"a":true,"b":false,"c":null}`, ""},
		{"object and array", []string{`o={"k": "v"}`, "l=[1,2]"}, `{"l":[1,2],"o":{"k":"v"}}`, ""},
		{"plain string", []string{"s=hello world"}, `{"s":"hello world"}`, ""},
		{"quoted string", []string{`s="42"`}, `{"s":"42"}`, ""},
		{"not quite JSON", []string{"a=007", "b=[1,", "c=1 2", "d=yes"}, `{"a":"007","b":"[1,","c":"1 2","d":"yes"}`, ""},
		{"empty", []string{"s="}, `{"s":""}`, ""},
		{"equals in value", []string{"q=a=b"}, `{"q":"a=b"}`, ""},
		{"JSON file", []string{"cfg=@" + obj}, `{"cfg":{"b":[1,2]}}`, ""},
		{"text file", []string{"script=@" + text}, `{"script":"echo hi\n"}`, ""},
		{"literal at", []string{"handle=@@troupe"}, `{"handle":"@troupe"}`, ""},
		{"missing file", []string{"cfg=@" + filepath.Join(dir, "nope")}, "", `parameter "cfg": open`},
		{"no equals", []string{"oops"}, "", `argument "oops": want key=value`},
		{"no key", []string{"=1"}, "", `argument "=1"`},
		{"twice", []string{"a=1", "a=2"}, "", `parameter "a" is given twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseParams(tc.args, os.ReadFile)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			b, _ := json.Marshal(got)
			if err != nil || string(b) != tc.want {
				t.Errorf("got %s, %v; want %s", b, err, tc.want)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	for _, st := range domain.Statuses {
		if !st.Terminal() {
			continue
		}
		t.Run(st.String(), func(t *testing.T) {
			want := exitUnsuccessful
			if st == domain.StatusSucceeded {
				want = exitOK
			}
			if got := exitCode(outcome(st)); got != want {
				t.Errorf("exit code %d, want %d", got, want)
			}
		})
	}
	if got := exitCode(fmt.Errorf("wrapped: %w", &api.Error{Message: "x"})); got != exitError {
		t.Errorf("API error: exit code %d, want %d", got, exitError)
	}
}

func TestRun(t *testing.T) {
	type step struct {
		status domain.Status
		result *domain.Result
	}
	finish := func(st domain.Status, r *domain.Result) []step {
		return []step{{domain.StatusScheduled, nil}, {domain.StatusRunning, nil}, {st, r}}
	}
	for _, tc := range []struct {
		name    string
		args    []string
		steps   []step // what the "pipeline" does once the execution exists
		code    int
		stdout  []string
		stderr  string
		exactly string // the whole stdout, when set
	}{
		{name: "output", args: []string{"run", "demo.echo", "message=hi"},
			steps: finish(domain.StatusSucceeded, &domain.Result{Stdout: `{"ok":true}`, Output: json.RawMessage(`{"ok":true}`), Stderr: "a warning\n"}),
			code:  0, stdout: []string{"action: demo.echo", "status: succeeded", "duration: ", "output:\n{\n \"ok\": true\n}", "stderr:\na warning"}},
		{name: "stdout", args: []string{"run", "demo.echo", "message=hi"},
			steps: finish(domain.StatusSucceeded, &domain.Result{Stdout: "plain text\n"}),
			code:  0, stdout: []string{"stdout:\nplain text"}},
		{name: "failed", args: []string{"run", "demo.echo", "message=hi"},
			steps: finish(domain.StatusFailed, &domain.Result{ExitCode: 3, Stderr: "boom\n"}),
			code:  1, stdout: []string{"status: failed", "exit code: 3", "stderr:\nboom"}},
		{name: "timeout status", args: []string{"run", "demo.echo", "message=hi"},
			steps: finish(domain.StatusTimeout, nil), code: 1, stdout: []string{"status: timeout"}},
		{name: "json", args: []string{"run", "-o", "json", "demo.echo", "message=hi", "password=hunter2"},
			steps: finish(domain.StatusSucceeded, &domain.Result{}), code: 0,
			stdout: []string{`"status": "succeeded"`, `"password": "********"`, `"history": [`}},
		{name: "async", args: []string{"run", "--async", "demo.echo", "message=hi"}, code: 0},
		{name: "gives up", args: []string{"run", "--timeout", "20ms", "demo.echo", "message=hi"}, code: 2,
			steps: []step{{domain.StatusScheduled, nil}}, stderr: "is still scheduled (troupe execution get"},
		{name: "unknown action", args: []string{"run", "demo.nope"}, code: 2, stderr: `troupe: action "demo.nope": not found`},
		{name: "invalid parameter", args: []string{"run", "demo.echo"}, code: 2, stderr: `parameter "message": required`},
		{name: "bad argument", args: []string{"run", "demo.echo", "hi"}, code: 2, stderr: `troupe: argument "hi": want key=value`},
		{name: "no ref", args: []string{"run"}, code: 2, stderr: "troupe: requires at least 1 arg"},
		{name: "bad output", args: []string{"run", "-o", "yaml", "demo.echo"}, code: 2, stderr: `troupe: invalid output "yaml"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, addr := fakeNode(t)
			var created domain.ID
			b.OnRun = func(id domain.ID) {
				created = id
				for _, s := range tc.steps {
					if err := b.Transition(id, s.status, s.result); err != nil {
						t.Error(err)
					}
				}
			}
			code, stdout, stderr := troupe(t, addr, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(spaced(stdout), w) {
					t.Errorf("stdout lacks %q", w)
				}
			}
			if !strings.Contains(stderr, tc.stderr) || (tc.stderr == "") != (stderr == "") {
				t.Errorf("stderr %q, want %q", stderr, tc.stderr)
			}
			if tc.name == "async" && stdout != created.String()+"\n" {
				t.Errorf("async printed %q, want the ID %s", stdout, created)
			}
		})
	}
}

func TestListGet(t *testing.T) {
	b, addr := fakeNode(t)
	ctx := t.Context()
	c := api.NewClient(addr)
	e, err := c.Run(ctx, "demo.echo", map[string]any{"message": "one", "password": "hunter2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []domain.Status{domain.StatusScheduled, domain.StatusRunning, domain.StatusSucceeded} {
		if err := b.Transition(e.ID, st, &domain.Result{Stdout: "one\n"}); err != nil {
			t.Fatal(err)
		}
	}
	pending, err := c.Run(ctx, "demo.echo", map[string]any{"message": "two"})
	if err != nil {
		t.Fatal(err)
	}
	// Lists run newest first by ID; two IDs of one millisecond order randomly.
	newer, older := pending.ID.String(), e.ID.String()
	if newer < older {
		newer, older = older, newer
	}
	evID, err := c.Webhook(ctx, "hook", map[string]any{"msg": "hi"})
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := domain.ParseID(evID)
	en := &domain.Enforcement{ID: domain.EnforcementID(ev, "demo.on_hook"), Event: ev, Rule: "demo.on_hook", Action: "demo.echo", Status: domain.EnforcementSucceeded, CreatedAt: time.Now()}
	b.AddEnforcement(en)

	for _, tc := range []struct {
		args   []string
		code   int
		stdout []string
		not    string // must not be in stdout
		stderr string
	}{
		{args: []string{"execution", "list"}, stdout: []string{"ID ACTION STATUS RULE CREATED DURATION", "ACTION", "STATUS", "RULE", "CREATED", "DURATION", e.ID.String(), pending.ID.String()}},
		{args: []string{"execution", "list", "--status", "succeeded", "--action", "demo.echo"}, stdout: []string{e.ID.String()}, not: pending.ID.String()},
		{args: []string{"execution", "list", "--limit", "1"}, stdout: []string{newer, "more: --cursor " + newer}, not: older},
		{args: []string{"execution", "list", "--cursor", newer}, stdout: []string{older}, not: newer},
		{args: []string{"execution", "list", "--status", "bogus"}, code: 2, stderr: `troupe: unknown status "bogus"`},
		{args: []string{"execution", "get", e.ID.String()}, stdout: []string{"status: succeeded", `"password":"********"`, "stdout:\none", "history:", "AT", "running"}, not: "hunter2"},
		{args: []string{"execution", "get", "nope"}, code: 2, stderr: `troupe: invalid id "nope"`},
		{args: []string{"event", "list", "--trigger", "core.webhook"}, stdout: []string{"TRIGGER", evID, "webhook hook"}},
		{args: []string{"event", "get", evID}, stdout: []string{"trigger:", `"msg": "hi"`}},
		{args: []string{"enforcement", "list", "--rule", "demo.on_hook", "--event", evID}, stdout: []string{"EXECUTION", en.ID.String()}},
		{args: []string{"enforcement", "get", en.ID.String()}, stdout: []string{"rule: demo.on_hook"}},
		{args: []string{"rule", "list"}, stdout: []string{"REF", "ENABLED", "demo.off_hook false", "core.webhook"}},
		{args: []string{"rule", "get", "demo.on_hook"}, stdout: []string{"action parameters:", `"password":"********"`}, not: "rule-secret"},
		{args: []string{"rule", "get", "demo.on_hok"}, code: 2, stderr: "did you mean demo.on_hook?"},
		{args: []string{"action", "list", "--pack", "demo"}, stdout: []string{"RUNTIME", "demo.echo", "30s", "Print a message."}, not: "core.noop"},
		{args: []string{"action", "get", "demo.echo"}, stdout: []string{"runtime:", "parameters:\n{"}, not: "default-secret"},
		{args: []string{"trigger", "list"}, stdout: []string{"core.intervaltimer -", "core.webhook"}},
		{args: []string{"trigger", "get", "core.webhook"}, stdout: []string{"description: An HTTP POST"}},
		{args: []string{"sensor", "list"}, stdout: []string{"TRIGGERS", "demo.watch", "demo.change"}},
		{args: []string{"sensor", "get", "demo.watch"}, stdout: []string{"entry point: /packs/demo/sensors/watch.py"}},
		{args: []string{"pack", "list"}, stdout: []string{"VERSION", "demo 0.1.0"}},
		{args: []string{"pack", "get", "demo"}, stdout: []string{"rules:", "demo.on_hook, demo.off_hook"}},
		{args: []string{"rule", "list", "--status", "x"}, code: 2, stderr: "troupe: unknown flag: --status"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := troupe(t, addr, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(spaced(stdout), w) {
					t.Errorf("stdout lacks %q", w)
				}
			}
			if tc.not != "" && strings.Contains(spaced(stdout), tc.not) {
				t.Errorf("stdout has %q", tc.not)
			}
			if !strings.Contains(stderr, tc.stderr) || (tc.stderr == "") != (stderr == "") {
				t.Errorf("stderr %q, want %q", stderr, tc.stderr)
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		b.Unreachable = []string{"node-b"}
		defer func() { b.Unreachable = nil }()
		code, stdout, stderr := troupe(t, addr, "-o", "json", "execution", "list")
		var p api.Page[*api.ExecutionView]
		if err := json.Unmarshal([]byte(stdout), &p); err != nil || code != 0 || len(p.Items) != 2 || !p.Partial {
			t.Errorf("exit %d, page %+v, %v", code, p, err)
		}
		if !strings.Contains(stderr, "partial list; unreachable nodes: node-b") {
			t.Errorf("stderr %q lacks the partial warning", stderr)
		}
		code, stdout, _ = troupe(t, addr, "-o", "json", "rule", "get", "demo.on_hook")
		var r domain.Rule
		if err := json.Unmarshal([]byte(stdout), &r); err != nil || code != 0 || r.Ref != "demo.on_hook" {
			t.Errorf("exit %d, rule %+v, %v", code, r, err)
		}
	})
	t.Run("TROUPE_ADDR", func(t *testing.T) {
		t.Setenv("TROUPE_ADDR", addr)
		var out, errOut bytes.Buffer
		if code := execute(t.Context(), []string{"pack", "list"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "demo") {
			t.Errorf("exit %d: %s%s", code, out.String(), errOut.String())
		}
	})
	t.Run("unreachable node", func(t *testing.T) {
		hs := httptest.NewServer(nil)
		hs.Close()
		code, _, stderr := troupe(t, hs.URL, "rule", "list")
		if code != 2 || !strings.HasPrefix(stderr, "troupe: ") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
}

func TestExecutionWatch(t *testing.T) {
	b, addr := fakeNode(t)
	for _, output := range []string{"table", "json"} {
		t.Run(output, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			var out, errOut troupetest.Buffer
			code := make(chan int, 1)
			go func() {
				code <- execute(ctx, []string{"--addr", addr, "-o", output, "execution", "watch", "--action", "demo.echo"}, &out, &errOut)
			}()
			finish := func(action string, params map[string]any) domain.ID {
				e, err := b.Run(t.Context(), action, params)
				if err != nil {
					t.Fatal(err)
				}
				for _, st := range []domain.Status{domain.StatusScheduled, domain.StatusRunning, domain.StatusFailed} {
					if err := b.Transition(e.ID, st, nil); err != nil {
						t.Fatal(err)
					}
				}
				return e.ID
			}
			// Executions finished before watch subscribed are not shown, so
			// finish one until one is.
			var id domain.ID
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(out.String(), id.String()) || id.IsZero() {
				if time.Now().After(deadline) {
					t.Fatalf("watch printed nothing in 10 s; stderr %q", errOut.String())
				}
				finish("core.noop", nil) // filtered out by --action
				id = finish("demo.echo", map[string]any{"message": "hi"})
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			if c := <-code; c != exitOK {
				t.Fatalf("exit code %d after interrupt, want 0; stderr %q", c, errOut.String())
			}
			got := out.String()
			if strings.Contains(got, "core.noop") {
				t.Errorf("--action demo.echo printed core.noop:\n%s", got)
			}
			line := got[:strings.IndexByte(got, '\n')+1]
			switch output {
			case "json":
				var v api.ExecutionView
				if err := json.Unmarshal([]byte(line), &v); err != nil || v.Action != "demo.echo" || v.Status != domain.StatusFailed {
					t.Errorf("json line %q: %+v, %v", line, v, err)
				}
			default:
				if !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  failed +\S+ +demo.echo +[0-9A-Z]{26}\n$`).MatchString(line) {
					t.Errorf("line %q, want time, status, duration, action and ID", line)
				}
			}
		})
	}
}
