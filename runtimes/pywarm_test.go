package runtimes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/troupehq/troupe/domain"
)

func newPythonWarm(t *testing.T, cfg Config) *warmPython {
	t.Helper()
	needPython(t)
	rt, err := NewPythonWarm(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := rt.(*warmPython)
	t.Cleanup(func() { w.Close() })
	return w
}

// serverPid is the pid of the running fork server, 0 when none runs.
func (w *warmPython) serverPid() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.srv == nil || w.srv.gone() {
		return 0
	}
	return w.srv.cmd.Process.Pid
}

// readPid waits for a script to write a pid into path.
func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitFor(t, 10*time.Second, func() error {
		b, err := os.ReadFile(path)
		if err == nil {
			pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if err != nil {
			return fmt.Errorf("no pid in %s yet: %v", path, err)
		}
		return nil
	})
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

// TestPythonWarmParity runs each script under python and python-warm: a
// script must not be able to tell them apart by anything a run records.
func TestPythonWarmParity(t *testing.T) {
	needPython(t)
	probe := `import json, os, signal, sys
print(json.dumps({
    "stdin": json.load(sys.stdin),
    "env": sorted(os.environ.items()),
    "argv": sys.argv, "file": __file__, "name": __name__, "cwd": os.getcwd(), "path0": sys.path[0],
    "main": [type(__loader__).__name__, __package__, __spec__, __cached__, sys.modules["__main__"].__file__],
    "group leader": os.getpgrp() == os.getpid(),
    "signals": {s.name: str(signal.getsignal(s)) for s in signal.valid_signals() if isinstance(s, signal.Signals) and s.name not in ("SIGKILL", "SIGSTOP")},
    "blocked": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    "fds": sorted(os.listdir("/proc/self/fd")),
    "stdio": [[s.name, s.encoding, s.errors, s.line_buffering, s.write_through, s.isatty(), s.fileno()] for s in (sys.stdin, sys.stdout, sys.stderr)],
    "flags": [sys.flags.optimize, sys.flags.dont_write_bytecode, sys.flags.isolated],
}, indent=1))
`
	scripts := []struct {
		name, body string
		files      map[string]string // more files next to the script
		env        []string          // Config.Env, when not the default
		leaves     string            // a file the script writes, compared too
	}{
		{name: "what a script can see", body: probe},
		{name: "what a script can see, C locale coerced", body: probe, env: []string{"PATH=" + os.Getenv("PATH")}},
		{name: "exit code", body: "import sys\nprint('partial')\nsys.exit(4)\n"},
		{name: "exit with a message", body: "import sys\nsys.exit('bad input')\n"},
		{name: "exit 256 is 0", body: "raise SystemExit(256)\n"},
		{name: "exit beyond a C long", body: "raise SystemExit(2 ** 70)\n"},
		{name: "exit with an object", body: "raise SystemExit(['a', 1])\n"},
		{name: "uncaught exception", body: "def f():\n    raise ValueError('boom')\nprint('before')\nf()\n"},
		{name: "exception with a cause", body: "try:\n    1/0\nexcept Exception as e:\n    raise KeyError('k') from e\n"},
		{name: "syntax error", body: "print('never')\ndef (:\n"},
		{name: "killed by a signal", body: "import os, signal\nprint('x', flush=True)\nos.kill(os.getpid(), signal.SIGTERM)\n"},
		{name: "keyboard interrupt", body: "import atexit\natexit.register(print, 'atexit ran')\nraise KeyboardInterrupt\n"},
		{name: "buffered output, atexit and a thread are finished at exit", body: `import atexit, threading, time
atexit.register(print, "atexit")
def late():
    time.sleep(0.2)
    print("thread")
threading.Thread(target=late).start()
print("no newline", end="")
`},
		{name: "objects left in globals are finalized at exit", body: `import helper
class Noisy:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("finalized", self.name, _private is None)
_private = 1
kept = Noisy("main")
cycle = Noisy("cycle")
cycle.me = cycle
helper.keep(Noisy("in helper"))
`, files: map[string]string{"helper.py": "kept = []\ndef keep(x):\n    kept.append(x)\n"}},
		{name: "unclosed file is flushed at exit", body: "f = open('left.txt', 'w')\nf.write('buffered')\n", leaves: "left.txt"},
		{name: "daemon thread is not waited for", body: "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\nprint('done')\n"},
		{name: "subprocess shares stdio", body: "import subprocess, sys\nsys.stdout.flush()\nr = subprocess.run(['sh', '-c', 'echo child; echo child-err >&2; exit 3'])\nprint(r.returncode)\n"},
		{name: "imports a module next to it", body: "import helper\nprint(helper.VALUE, helper.__file__)\n",
			files: map[string]string{"helper.py": "VALUE = 42\n"}},
		{name: "classes of __main__ pickle", body: "import pickle\nclass C:\n    x = 1\nprint(type(pickle.loads(pickle.dumps(C()))).__module__)\n"},
		{name: "stdin read to its end twice", body: "import sys\nprint(repr(sys.stdin.read()), repr(sys.stdin.read()))\n"},
		{name: "output over the cap", body: "import sys\nsys.stdout.write('a' * 5000)\nsys.stderr.write('b' * 70000)\n"},
	}
	for _, sc := range scripts {
		t.Run(sc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.MaxOutput = 4096
			if sc.env != nil {
				cfg.Env = sc.env
			}
			cold, err := NewPython(cfg)
			if err != nil {
				t.Fatal(err)
			}
			warm := newPythonWarm(t, cfg)
			script := writeScript(t, "action.py", sc.body)
			for name, body := range sc.files {
				if err := os.WriteFile(filepath.Join(filepath.Dir(script), name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			req := Request{ExecutionID: "01PARITY", Action: "test.parity", EntryPoint: script, Timeout: time.Minute,
				Parameters: map[string]any{"name": "world", "count": 3.0, "nested": map[string]any{"a": []any{1.0}}}}
			left := func() string {
				if sc.leaves == "" {
					return ""
				}
				path := filepath.Join(filepath.Dir(script), sc.leaves)
				b, err := os.ReadFile(path)
				os.Remove(path)
				return fmt.Sprintf("%q %v", b, err)
			}
			want := cold.Run(t.Context(), req)
			wantLeft := left()
			got := warm.Run(t.Context(), req)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("python-warm:\n%s\npython:\n%s", describeOutcome(got), describeOutcome(want))
			}
			if gotLeft := left(); gotLeft != wantLeft {
				t.Errorf("python-warm left %s, python %s", gotLeft, wantLeft)
			}
		})
	}
}

func describeOutcome(o Outcome) string {
	return fmt.Sprintf("status %s, error %q, exit %d\n--- stdout\n%s\n--- stderr\n%s\n--- output %s",
		o.Status, o.Error, o.Result.ExitCode, o.Result.Stdout, o.Result.Stderr, o.Result.Output)
}

func TestPythonWarmStartFailures(t *testing.T) {
	w := newPythonWarm(t, testConfig(t))
	missing := filepath.Join(t.TempDir(), "missing.py")
	for _, tc := range []struct {
		name    string
		req     Request
		errText string
	}{
		{"missing entry point", Request{EntryPoint: missing}, "start python-warm action: stat " + missing + ": no such file or directory"},
		{"cmd is shell-only", Request{Cmd: "print(1)"}, "start python-warm action: the python-warm runtime needs an entry point; cmd is for the shell runtime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := w.Run(t.Context(), tc.req)
			checkOutcome(t, got, domain.StatusFailed, tc.errText)
			if got.Result.ExitCode != -1 {
				t.Errorf("exit code %d, want -1 (no process)", got.Result.ExitCode)
			}
		})
	}
}

// TestPythonWarmTimeoutKillsTree: a timeout kills the forked child and the
// processes it started, as it does a process run's group.
func TestPythonWarmTimeoutKillsTree(t *testing.T) {
	w := newPythonWarm(t, testConfig(t))
	script := writeScript(t, "tree.py", `import subprocess, time
p = subprocess.Popen(["sleep", "300"])
open("pid", "w").write(str(p.pid))
time.sleep(300)
`)
	start := time.Now()
	got := w.Run(t.Context(), Request{EntryPoint: script, Timeout: 2 * time.Second})
	checkOutcome(t, got, domain.StatusTimeout, "timed out after 2s")
	if got.Result.ExitCode != -int(syscall.SIGKILL) {
		t.Errorf("exit code %d, want %d", got.Result.ExitCode, -int(syscall.SIGKILL))
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Run took %s to return after a 2s timeout", took)
	}
	grandchild := readPid(t, filepath.Join(filepath.Dir(script), "pid"))
	waitFor(t, 10*time.Second, func() error { return processGone(grandchild) })
}

func TestPythonWarmCancel(t *testing.T) {
	w := newPythonWarm(t, testConfig(t))
	script := writeScript(t, "sleep.py", "import time\ntime.sleep(300)\n")
	for _, tc := range []struct {
		name  string
		setup func(cancel context.CancelFunc)
	}{
		{"while running", func(cancel context.CancelFunc) { time.AfterFunc(500*time.Millisecond, cancel) }},
		{"before start", func(cancel context.CancelFunc) { cancel() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			tc.setup(cancel)
			got := w.Run(ctx, Request{EntryPoint: script, Timeout: time.Hour})
			checkOutcome(t, got, domain.StatusCanceled, "canceled")
		})
	}
}

// TestPythonWarmServerDies: the runs of a server that dies end failed,
// saying so, with their process groups killed; the next run gets a new
// server, also when the death has not been noticed yet.
func TestPythonWarmServerDies(t *testing.T) {
	w := newPythonWarm(t, testConfig(t))
	script := writeScript(t, "tree.py", `import subprocess, sys, time
p = subprocess.Popen(["sleep", "300"])
open("pid", "w").write(str(p.pid))
print("started", flush=True)
time.sleep(300)
`)
	done := make(chan Outcome, 1)
	go func() { done <- w.Run(context.Background(), Request{EntryPoint: script, Timeout: time.Hour}) }()
	grandchild := readPid(t, filepath.Join(filepath.Dir(script), "pid"))
	first := w.serverPid()
	syscall.Kill(first, syscall.SIGKILL)
	var got Outcome
	select {
	case got = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the run of a dead server is still going")
	}
	want := fmt.Sprintf("the python-warm server (pid %d) exited (signal: killed); the action's process group was killed", first)
	checkOutcome(t, got, domain.StatusFailed, want)
	if got.Result.Stdout != "started\n" || got.Result.ExitCode != -1 {
		t.Errorf("stdout %q exit %d, want what the action printed and -1", got.Result.Stdout, got.Result.ExitCode)
	}
	waitFor(t, 10*time.Second, func() error { return processGone(grandchild) })

	ok := writeScript(t, "ok.py", "print('ok')\n")
	for i := range 3 {
		got := w.Run(t.Context(), Request{EntryPoint: ok})
		checkOutcome(t, got, domain.StatusSucceeded, "")
		pid := w.serverPid()
		if pid == first || pid == 0 {
			t.Fatalf("run %d: server pid %d after the server %d died", i, pid, first)
		}
		// Killed and reaped, but the agent may not have read its end yet.
		syscall.Kill(pid, syscall.SIGKILL)
		waitFor(t, 10*time.Second, func() error { return processGone(pid) })
		first = pid
	}
}

// TestPythonWarmServerLostBeforeFork: a request the server never read
// whole goes to a fresh server; one it read but did not fork from fails the
// run, since a child may have begun it.
func TestPythonWarmServerLostBeforeFork(t *testing.T) {
	ok := writeScript(t, "ok.py", "print('ok')\n")
	stopped := func(t *testing.T, w *warmPython) *forkServer {
		t.Helper()
		checkOutcome(t, w.Run(t.Context(), Request{EntryPoint: ok}), domain.StatusSucceeded, "")
		w.mu.Lock()
		srv := w.srv
		w.mu.Unlock()
		// Stopped, it neither reads nor dies, so the agent cannot know.
		syscall.Kill(srv.cmd.Process.Pid, syscall.SIGSTOP)
		t.Cleanup(func() { syscall.Kill(srv.cmd.Process.Pid, syscall.SIGKILL) })
		return srv
	}

	t.Run("request not sent", func(t *testing.T) {
		w := newPythonWarm(t, testConfig(t))
		srv := stopped(t, w)
		srv.conn.CloseWrite() // the stream is gone: sending fails
		got := w.Run(t.Context(), Request{EntryPoint: ok})
		checkOutcome(t, got, domain.StatusSucceeded, "")
		if !srv.gone() || w.serverPid() == srv.cmd.Process.Pid {
			t.Errorf("the run went to the lost server %d", srv.cmd.Process.Pid)
		}
	})

	t.Run("request sent", func(t *testing.T) {
		w := newPythonWarm(t, testConfig(t))
		srv := stopped(t, w)
		done := make(chan Outcome, 1)
		go func() { done <- w.Run(context.Background(), Request{EntryPoint: ok}) }()
		waitFor(t, 10*time.Second, func() error {
			if unread(t, srv.conn) == 0 {
				return errors.New("the request is not on the stream yet")
			}
			return nil
		})
		syscall.Kill(srv.cmd.Process.Pid, syscall.SIGKILL)
		got := <-done
		checkOutcome(t, got, domain.StatusFailed, fmt.Sprintf("start python-warm action: the python-warm server (pid %d) exited (signal: killed)", srv.cmd.Process.Pid))
		checkOutcome(t, w.Run(t.Context(), Request{EntryPoint: ok}), domain.StatusSucceeded, "")
	})
}

// unread is how many bytes conn has sent that its peer has not read.
func unread(t *testing.T, conn *net.UnixConn) int {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int32 // the kernel writes a C int
	var errno syscall.Errno
	raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n)))
	})
	if errno != 0 {
		t.Fatalf("ioctl TIOCOUTQ: %v", errno)
	}
	return int(n)
}

func TestPythonWarmConcurrentRuns(t *testing.T) {
	w := newPythonWarm(t, testConfig(t))
	script := writeScript(t, "echo.py", `import json, os, sys, time
p = json.load(sys.stdin)
time.sleep(0.1)
print(json.dumps({"i": p["i"], "env": os.environ["TROUPE_PARAM_I"], "id": os.environ["TROUPE_EXECUTION_ID"]}))
sys.exit(p["i"] % 3)
`)
	const n = 20
	outs := make([]Outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			outs[i] = w.Run(t.Context(), Request{ExecutionID: fmt.Sprint("ex", i), EntryPoint: script, Timeout: time.Minute,
				Parameters: map[string]any{"i": float64(i)}})
		})
	}
	wg.Wait()
	for i, o := range outs {
		wantOut := fmt.Sprintf(`{"i": %d, "env": "%d", "id": "ex%d"}`, i, i, i)
		status, errText := domain.StatusSucceeded, ""
		if i%3 != 0 {
			status, errText = domain.StatusFailed, fmt.Sprintf("exit code %d", i%3)
		}
		if o.Status != status || o.Error != errText || string(o.Result.Output) != wantOut || o.Result.ExitCode != i%3 {
			t.Errorf("run %d: %s", i, describeOutcome(o))
		}
	}
}

// TestPythonWarmRunsShareNothing: what one run changes in modules, the
// environment or the random generator is not what the next one starts with.
func TestPythonWarmRunsShareNothing(t *testing.T) {
	w := newPythonWarm(t, testConfig(t))
	script := writeScript(t, "leak.py", `import json, os, random, sys
print(json.dumps([hasattr(json, "leaked"), os.environ.get("LEAKED"), sys.path.count("/leaked"), random.random()]))
json.leaked = True
os.environ["LEAKED"] = "1"
sys.path.append("/leaked")
`)
	var seen []float64
	for range 3 {
		got := w.Run(t.Context(), Request{EntryPoint: script})
		checkOutcome(t, got, domain.StatusSucceeded, "")
		var v []any
		if err := json.Unmarshal(got.Result.Output, &v); err != nil || len(v) != 4 {
			t.Fatalf("stdout %q: %v", got.Result.Stdout, err)
		}
		if v[0] != false || v[1] != nil || v[2] != 0.0 {
			t.Errorf("a run saw what an earlier one left: %s", got.Result.Stdout)
		}
		r, _ := v[3].(float64)
		for _, s := range seen {
			if s == r {
				t.Errorf("two runs drew the same random number %v", r)
			}
		}
		seen = append(seen, r)
	}
}

// TestPythonWarmReap: after a crash, Reap finds the forked children (and
// their children) and the fork server by the run marker, like process runs.
func TestPythonWarmReap(t *testing.T) {
	cfg := testConfig(t)
	cfg.RunDir = filepath.Join(t.TempDir(), "run")
	w := newPythonWarm(t, cfg)
	script := writeScript(t, "tree.py", `import subprocess, time
p = subprocess.Popen(["sleep", "300"])
open("pid", "w").write(str(p.pid))
time.sleep(300)
`)
	done := make(chan Outcome, 1)
	go func() { done <- w.Run(context.Background(), Request{EntryPoint: script, Timeout: time.Hour}) }()
	grandchild := readPid(t, filepath.Join(filepath.Dir(script), "pid"))
	server := w.serverPid()
	killed, err := Reap(cfg.RunDir)
	if err != nil || killed != 2 {
		t.Errorf("Reap killed %d groups (%v), want 2: the server's and the child's", killed, err)
	}
	select {
	case out := <-done:
		if out.Status != domain.StatusFailed {
			t.Errorf("the reaped run ended %s (%s), want failed", out.Status, out.Error)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reaped run is still going")
	}
	for _, pid := range []int{grandchild, server} {
		waitFor(t, 10*time.Second, func() error { return processGone(pid) })
	}
}

// TestRegistryCloseStopsTheServer: closing the registry, as a stopping
// agent does, ends the fork server and what it forked.
func TestRegistryCloseStopsTheServer(t *testing.T) {
	needPython(t)
	reg, err := NewRegistry(testConfig(t), []string{"python-warm", "shell"})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := reg.Get("python-warm")
	if err != nil {
		t.Fatal(err)
	}
	w := rt.(*warmPython)
	t.Cleanup(func() { w.Close() })
	script := writeScript(t, "sleep.py", "import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(300)\n")
	done := make(chan Outcome, 1)
	go func() { done <- w.Run(context.Background(), Request{EntryPoint: script, Timeout: time.Hour}) }()
	action := readPid(t, filepath.Join(filepath.Dir(script), "pid"))
	server := w.serverPid()
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	checkOutcome(t, <-done, domain.StatusFailed, "the python-warm server was stopped; the action's process group was killed")
	for _, pid := range []int{action, server} {
		waitFor(t, 10*time.Second, func() error { return processGone(pid) })
	}
}
