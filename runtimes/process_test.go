package runtimes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troupehq/troupe/domain"
)

func newShell(t *testing.T, cfg Config) Runtime {
	t.Helper()
	rt, err := NewShell(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// writeScript writes body as an executable script in a fresh directory.
func writeScript(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// processGone is nil once pid has exited; a zombie not yet reaped by its new
// parent counts as gone, since it can no longer run.
func processGone(pid int) error {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return nil
	}
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return nil
		}
	}
	return fmt.Errorf("process %d is still running", pid)
}

func checkOutcome(t *testing.T, got Outcome, status domain.Status, errText string) {
	t.Helper()
	if got.Status != status || got.Error != errText {
		t.Fatalf("outcome %s %q, want %s %q (stdout %q, stderr %q)", got.Status, got.Error, status, errText, got.Result.Stdout, got.Result.Stderr)
	}
}

func TestShell(t *testing.T) {
	rt := newShell(t, testConfig(t))
	for _, tc := range []struct {
		name           string
		cmd, script    string // script: body of an entry-point file
		status         domain.Status
		errText        string
		exit           int
		stdout, stderr string
		output         string // compact JSON, "" for none
	}{
		{name: "cmd", cmd: "echo hello; echo oops >&2", status: domain.StatusSucceeded, stdout: "hello\n", stderr: "oops\n"},
		{name: "entry point", script: "echo from script\n", status: domain.StatusSucceeded, stdout: "from script\n"},
		{name: "exit code", cmd: "echo partial; exit 3", status: domain.StatusFailed, errText: "exit code 3", exit: 3, stdout: "partial\n"},
		{name: "signal", cmd: "kill -TERM $$", status: domain.StatusFailed, errText: "killed by signal 15 (terminated)", exit: -15},
		{name: "json object", cmd: `echo '{"a": [1, 2]}'`, status: domain.StatusSucceeded, stdout: "{\"a\": [1, 2]}\n", output: `{"a":[1,2]}`},
		{name: "json array with blank lines", cmd: `printf '\n[1,2]\n\n'`, status: domain.StatusSucceeded, stdout: "\n[1,2]\n\n", output: `[1,2]`},
		{name: "json number", cmd: "echo 42", status: domain.StatusSucceeded, stdout: "42\n", output: `42`},
		{name: "json string", cmd: `echo '"s"'`, status: domain.StatusSucceeded, stdout: "\"s\"\n", output: `"s"`},
		{name: "json bool on failure", cmd: "echo true; exit 1", status: domain.StatusFailed, errText: "exit code 1", exit: 1, stdout: "true\n", output: `true`},
		{name: "null is no output", cmd: "echo null", status: domain.StatusSucceeded, stdout: "null\n"},
		{name: "two documents are no output", cmd: `echo '{}{}'`, status: domain.StatusSucceeded, stdout: "{}{}\n"},
		{name: "text is no output", cmd: "echo '{not json'", status: domain.StatusSucceeded, stdout: "{not json\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := Request{ExecutionID: "x1", Action: "test.shell", Cmd: tc.cmd}
			if tc.script != "" {
				req.EntryPoint = writeScript(t, "action.sh", tc.script)
			}
			got := rt.Run(t.Context(), req)
			checkOutcome(t, got, tc.status, tc.errText)
			r := got.Result
			if r.ExitCode != tc.exit || r.Stdout != tc.stdout || r.Stderr != tc.stderr {
				t.Errorf("exit %d stdout %q stderr %q, want %d %q %q", r.ExitCode, r.Stdout, r.Stderr, tc.exit, tc.stdout, tc.stderr)
			}
			var compact bytes.Buffer
			if len(r.Output) > 0 {
				if err := json.Compact(&compact, r.Output); err != nil {
					t.Fatalf("output %q: %v", r.Output, err)
				}
			}
			if compact.String() != tc.output {
				t.Errorf("output %q, want %q", compact.String(), tc.output)
			}
		})
	}
}

func TestProcessStartFailures(t *testing.T) {
	rt := newShell(t, testConfig(t))
	missing := filepath.Join(t.TempDir(), "missing.sh")
	for _, tc := range []struct {
		name    string
		req     Request
		errText string
	}{
		{"missing entry point", Request{EntryPoint: missing}, "start shell action: open " + missing + ": no such file or directory"},
		{"relative entry point", Request{EntryPoint: "actions/x.sh"}, `start shell action: entry point "actions/x.sh" is not an absolute path`},
		{"nothing to run", Request{}, "start shell action: neither entry point nor cmd is set"},
		{"parameters not JSON", Request{Cmd: "true", Parameters: map[string]any{"f": func() {}}}, "start shell action: encode parameters: json: unsupported type: func()"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rt.Run(t.Context(), tc.req)
			checkOutcome(t, got, domain.StatusFailed, tc.errText)
			if got.Result.ExitCode != -1 {
				t.Errorf("exit code %d, want -1 (no process)", got.Result.ExitCode)
			}
		})
	}

	cfg := testConfig(t)
	cfg.Shell = "/nonexistent/sh"
	if _, err := NewShell(cfg); err == nil || !strings.Contains(err.Error(), "/nonexistent/sh") {
		t.Errorf("NewShell with a missing shell: %v", err)
	}
}

// TestShellEntryPoints: a script with a #! line is executed itself, so its
// interpreter is the one it names (dash, the usual /bin/sh, fails on bash
// syntax); any other script runs under the configured shell.
func TestShellEntryPoints(t *testing.T) {
	rt := newShell(t, testConfig(t))
	for _, tc := range []struct {
		name    string
		needs   string // a program the case needs; skipped without it
		body    string
		mode    os.FileMode
		status  domain.Status
		errText string // $SCRIPT stands for the script's path
		stdout  string
	}{
		{name: "no #! line and not executable", body: "echo plain\n", mode: 0o644,
			status: domain.StatusSucceeded, stdout: "plain\n"},
		{name: "#! line names bash", needs: "/bin/bash", body: "#!/bin/bash\nread -r doc\nwords=($TROUPE_PARAM_WORDS)\necho \"${words[1]} $doc\"\n", mode: 0o755,
			status: domain.StatusSucceeded, stdout: "b {\"words\":\"a b\"}\n"},
		{name: "#! line names a program that is no shell", needs: "/bin/cat", body: "#!/bin/cat\nprinted as is\n", mode: 0o755,
			status: domain.StatusSucceeded, stdout: "#!/bin/cat\nprinted as is\n"},
		{name: "#! line but not executable", body: "#!/bin/sh\necho never\n", mode: 0o644,
			status: domain.StatusFailed, errText: "start shell action: $SCRIPT starts with #! but is not executable: chmod +x it"},
		{name: "#! interpreter missing", body: "#!/nonexistent/interp -x\necho never\n", mode: 0o755,
			status: domain.StatusFailed, errText: `start shell action: $SCRIPT: the interpreter of its #! line was not found: "#!/nonexistent/interp -x"`},
		{name: "#! line with a carriage return", body: "#!/bin/sh\r\necho never\r\n", mode: 0o755,
			status: domain.StatusFailed, errText: "start shell action: $SCRIPT: its #! line ends in a carriage return: save it with Unix line endings"},
		{name: "too short for a #! line", body: "#", mode: 0o644, status: domain.StatusSucceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needs != "" {
				if _, err := os.Stat(tc.needs); err != nil {
					t.Skipf("needs %s: %v", tc.needs, err)
				}
			}
			script := writeScript(t, "action.sh", tc.body)
			if err := os.Chmod(script, tc.mode); err != nil {
				t.Fatal(err)
			}
			got := rt.Run(t.Context(), Request{EntryPoint: script, Parameters: map[string]any{"words": "a b"}})
			checkOutcome(t, got, tc.status, strings.ReplaceAll(tc.errText, "$SCRIPT", script))
			if got.Result.Stdout != tc.stdout {
				t.Errorf("stdout %q, want %q", got.Result.Stdout, tc.stdout)
			}
		})
	}
}

func TestShellParameters(t *testing.T) {
	cfg := testConfig(t)
	cfg.Env = []string{"PATH=/usr/bin:/bin", "FOO=bar"}
	rt := newShell(t, cfg)
	params := map[string]any{
		"name": "world", "count": 3.0, "ratio": 0.5, "ok": true, "my-key": "x",
		"nested": map[string]any{"a": 1.0}, "list": []any{"a"},
	}
	script := writeScript(t, "params.sh", `input=$(cat)
printf '%s\n' "$input" "$(pwd)" "$TROUPE_EXECUTION_ID" "$TROUPE_ACTION" "$TROUPE_PARAM_NAME" "$TROUPE_PARAM_COUNT" \
	"$TROUPE_PARAM_RATIO" "$TROUPE_PARAM_OK" "$TROUPE_PARAM_MY_KEY" "${TROUPE_PARAM_NESTED-unset}" "$FOO" "${HOME-unset}"
`)
	got := rt.Run(t.Context(), Request{ExecutionID: "01EXEC", Action: "test.params", EntryPoint: script, Parameters: params})
	checkOutcome(t, got, domain.StatusSucceeded, "")
	lines := strings.Split(strings.TrimSuffix(got.Result.Stdout, "\n"), "\n")
	var stdin map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &stdin); err != nil || !reflect.DeepEqual(stdin, params) {
		t.Errorf("stdin %s (%v), want %v", lines[0], err, params)
	}
	dir, _ := filepath.EvalSymlinks(filepath.Dir(script))
	want := []string{dir, "01EXEC", "test.params", "world", "3", "0.5", "true", "x", "unset", "bar", "unset"}
	if !slices.Equal(lines[1:], want) {
		t.Errorf("script saw\n%q\nwant\n%q", lines[1:], want)
	}
}

func TestEnviron(t *testing.T) {
	p := &process{env: []string{"PATH=/bin"}}
	for _, tc := range []struct {
		name   string
		params map[string]any
		want   []string
	}{
		{"no parameters", nil, []string{"PATH=/bin", "TROUPE_EXECUTION_ID=e", "TROUPE_ACTION=a.b"}},
		{"scalars only, sorted, sanitised", map[string]any{
			"z": int64(-7), "big": 1e21, "small": 0.25, "n": json.Number("12"), "u": uint8(9),
			"é-x": "v", "nul": "a\x00b", "obj": map[string]any{}, "nil": nil,
		}, []string{"PATH=/bin", "TROUPE_EXECUTION_ID=e", "TROUPE_ACTION=a.b",
			"TROUPE_PARAM_BIG=1000000000000000000000", "TROUPE_PARAM_N=12", "TROUPE_PARAM_SMALL=0.25",
			"TROUPE_PARAM_U=9", "TROUPE_PARAM_Z=-7", "TROUPE_PARAM___X=v"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := p.environ(Request{ExecutionID: "e", Action: "a.b", Parameters: tc.params})
			if !slices.Equal(got, tc.want) {
				t.Errorf("env\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestShellTimeoutKillsTree(t *testing.T) {
	rt := newShell(t, testConfig(t))
	script := writeScript(t, "tree.sh", "sleep 300 & echo $! > pid\nsleep 300\n")
	start := time.Now()
	got := rt.Run(t.Context(), Request{EntryPoint: script, Timeout: time.Second})
	checkOutcome(t, got, domain.StatusTimeout, "timed out after 1s")
	if got.Result.ExitCode != -int(syscall.SIGKILL) {
		t.Errorf("exit code %d, want %d", got.Result.ExitCode, -int(syscall.SIGKILL))
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Run took %s to return after a 1s timeout", took)
	}
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(script), "pid"))
	pid, perr := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || perr != nil {
		t.Fatalf("the script did not record its grandchild's pid: %v %v", err, perr)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	waitFor(t, 10*time.Second, func() error { return processGone(pid) })
}

func TestShellBackgroundChildHoldingPipes(t *testing.T) {
	rt := newShell(t, testConfig(t))
	got := rt.Run(t.Context(), Request{Cmd: "sleep 300 & echo $!", Timeout: time.Minute})
	if pid, err := strconv.Atoi(strings.TrimSpace(got.Result.Stdout)); err == nil {
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	}
	// Without exec's WaitDelay this would wait out the sleep, or the timeout.
	checkOutcome(t, got, domain.StatusSucceeded, "")
}

func TestShellCancel(t *testing.T) {
	rt := newShell(t, testConfig(t))
	for _, tc := range []struct {
		name  string
		setup func(cancel context.CancelFunc)
	}{
		{"while running", func(cancel context.CancelFunc) { time.AfterFunc(100*time.Millisecond, cancel) }},
		{"before start", func(cancel context.CancelFunc) { cancel() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			tc.setup(cancel)
			// The timeout is longer than the cancel: cancel must win.
			got := rt.Run(ctx, Request{Cmd: "sleep 300", Timeout: time.Hour})
			checkOutcome(t, got, domain.StatusCanceled, "canceled")
		})
	}
}

func TestOutputCap(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxOutput = 16
	rt := newShell(t, cfg)
	const sixteen = "aaaaaaaaaaaaaaaa"
	marker := func(n int) string { return fmt.Sprintf("\n[troupe: output truncated, %d bytes dropped]", n) }
	for _, tc := range []struct {
		name, cmd      string
		stdout, stderr string
	}{
		{"at the cap", "printf %s " + sixteen, sixteen, ""},
		{"over the cap", "head -c 100 /dev/zero | tr '\\0' a", sixteen + marker(84), ""},
		{"streams capped apart", "printf %s " + sixteen + "b; printf 'xy' >&2", sixteen + marker(1), "xy"},
		// Far past the pipe buffers: the child must not block on either.
		{"megabytes on both", "head -c 3000000 /dev/zero | tr '\\0' a; head -c 2000000 /dev/zero | tr '\\0' a >&2",
			sixteen + marker(3000000-16), sixteen + marker(2000000-16)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rt.Run(t.Context(), Request{Cmd: tc.cmd, Timeout: time.Minute})
			checkOutcome(t, got, domain.StatusSucceeded, "")
			if got.Result.Stdout != tc.stdout || got.Result.Stderr != tc.stderr {
				t.Errorf("stdout %q stderr %q, want %q %q", got.Result.Stdout, got.Result.Stderr, tc.stdout, tc.stderr)
			}
		})
	}
}

func TestCaptureWrite(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   string
	}{
		{"under", []string{"ab", "c"}, "abc"},
		{"exactly", []string{"abcd"}, "abcd"},
		{"across the cap", []string{"abc", "def", "g"}, "abcd\n[troupe: output truncated, 3 bytes dropped]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &capture{max: 4}
			for _, w := range tc.writes {
				if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := c.String(); got != tc.want {
				t.Errorf("kept %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPython(t *testing.T) {
	needPython(t)
	rt, err := NewPython(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if path := rt.(*process).path; slices.Contains(strings.Split(path, string(filepath.Separator)), "shims") {
		t.Fatalf("python resolved to the shim %s, not the real binary", path)
	}
	ok := writeScript(t, "ok.py", `import json, os, sys
p = json.load(sys.stdin)
print(json.dumps({"x": p["x"], "env": os.environ["TROUPE_PARAM_X"], "action": os.environ["TROUPE_ACTION"]}))
`)
	for _, tc := range []struct {
		name    string
		req     Request
		status  domain.Status
		errText string
		output  string
	}{
		{"json result", Request{Action: "test.py", EntryPoint: ok, Parameters: map[string]any{"x": 2.0}},
			domain.StatusSucceeded, "", `{"x": 2, "env": "2", "action": "test.py"}`},
		{"exit code", Request{EntryPoint: writeScript(t, "exit.py", "import sys\nsys.exit(4)\n")},
			domain.StatusFailed, "exit code 4", ""},
		{"cmd is shell-only", Request{Cmd: "print(1)"},
			domain.StatusFailed, "start python action: the python runtime needs an entry point; cmd is for the shell runtime", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rt.Run(t.Context(), tc.req)
			checkOutcome(t, got, tc.status, tc.errText)
			if string(got.Result.Output) != tc.output {
				t.Errorf("output %s, want %s", got.Result.Output, tc.output)
			}
		})
	}
}
