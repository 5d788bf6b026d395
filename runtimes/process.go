package runtimes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/troupehq/troupe/domain"
)

// pipeGrace is how long Wait keeps reading output after the action's process
// has exited, for a background child that still holds the pipes; then the
// pipes are closed so the run can end.
const pipeGrace = time.Second

// resolveTimeout bounds the one-time interpreter lookup (a shim can be slow).
const resolveTimeout = 30 * time.Second

// process runs an action as a child process. The shell and python runtimes
// are this one implementation with a different interpreter and, for the
// shell, the `-c` form for command lines.
type process struct {
	name      string
	path      string // absolute interpreter path, resolved once
	cmdFlag   string // how the interpreter takes a command line; "" if it may not
	env       []string
	maxOutput int
	tmpDir    string
	runDir    string
	// shebang: an entry point whose first two bytes are "#!" is executed
	// itself, so the kernel runs the interpreter its first line names. Only
	// the shell runtime does this (StackStorm's local-shell-script runner
	// executes the script too); python scripts always run under the
	// resolved interpreter, whatever their first line says.
	shebang bool
}

var _ Runtime = (*process)(nil)

// NewShell builds the shell runtime. An entry point that starts with "#!" is
// executed directly, so a `#!/bin/bash` script runs under bash whatever
// Config.Shell is; it must then be executable, and a run of one that is not
// fails, saying to chmod +x it (running it under the #! interpreter instead
// would hide the mistake until the script is run any other way). Any other
// entry point runs as `<shell> script`, a command line as `<shell> -c cmd`.
func NewShell(cfg Config) (Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new shell runtime: %w", err)
	}
	path, err := exec.LookPath(cfg.Shell)
	if errors.Is(err, exec.ErrDot) {
		path, err = filepath.Abs(path)
	}
	if err != nil {
		return nil, fmt.Errorf("new shell runtime: %w", err)
	}
	p := newProcess("shell", path, "-c", cfg)
	p.shebang = true
	return p, nil
}

// NewPython builds the python runtime: an entry point runs as
// `<python> script`, with the interpreter resolved once to its real binary.
func NewPython(cfg Config) (Runtime, error) {
	p, err := newPython("python", cfg)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// newPython is runtime name running scripts under the resolved interpreter.
func newPython(name string, cfg Config) (*process, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new %s runtime: %w", name, err)
	}
	path, err := resolvePython(cfg)
	if err != nil {
		return nil, fmt.Errorf("new %s runtime: resolve interpreter %q: %w", name, cfg.Python, err)
	}
	return newProcess(name, path, "", cfg), nil
}

func newProcess(name, path, cmdFlag string, cfg Config) *process {
	return &process{name: name, path: path, cmdFlag: cmdFlag, env: slices.Clone(cfg.Env),
		maxOutput: cfg.MaxOutput, tmpDir: os.TempDir(), runDir: cfg.RunDir}
}

// resolutions remembers resolvePython's answers by interpreter and
// environment: the python and python-warm runtimes of a registry then ask
// once (through a shim, a fifth of a second at every agent start), and are
// available or not together.
var resolutions = struct {
	sync.Mutex
	m map[string]resolution
}{m: map[string]resolution{}}

type resolution struct {
	path string
	err  error
}

// resolvePython asks the interpreter where its real binary is: through a
// shim, sys.executable is the binary the shim ends up running.
func resolvePython(cfg Config) (string, error) {
	key := strings.Join(append([]string{cfg.Python}, cfg.Env...), "\x00")
	resolutions.Lock()
	defer resolutions.Unlock()
	r, ok := resolutions.m[key]
	if !ok {
		r.path, r.err = askPython(cfg)
		resolutions.m[key] = r
	}
	return r.path, r.err
}

func askPython(cfg Config) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cfg.Python, "-c", "import sys; print(sys.executable)")
	cmd.Env = cfg.Env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return "", fmt.Errorf("%w: %s", err, msg)
		}
		return "", err
	}
	path := strings.TrimSpace(string(out))
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("sys.executable is %q, not an absolute path", path)
	}
	return path, nil
}

func (p *process) Name() string { return p.name }

// invocation is how one request starts: the program and its arguments, the
// working directory, and the parameters document for stdin.
type invocation struct {
	args   []string
	dir    string
	direct bool // the entry point is executed itself, for its #! line
	stdin  []byte
}

// invocation checks req and says how to start it. Its errors are the
// reason a run failed before any process started.
func (p *process) invocation(req Request) (invocation, error) {
	inv := invocation{dir: p.tmpDir}
	switch {
	case req.EntryPoint != "":
		if !filepath.IsAbs(req.EntryPoint) {
			return inv, fmt.Errorf("start %s action: entry point %q is not an absolute path", p.name, req.EntryPoint)
		}
		var err error
		if inv.direct, err = p.direct(req.EntryPoint); err != nil {
			return inv, fmt.Errorf("start %s action: %w", p.name, err)
		}
		inv.args, inv.dir = []string{p.path, req.EntryPoint}, filepath.Dir(req.EntryPoint)
		if inv.direct {
			inv.args = []string{req.EntryPoint}
		}
	case req.Cmd != "" && p.cmdFlag != "":
		inv.args = []string{p.path, p.cmdFlag, req.Cmd}
	case req.Cmd != "":
		return inv, fmt.Errorf("start %s action: the %s runtime needs an entry point; cmd is for the shell runtime", p.name, p.name)
	default:
		return inv, fmt.Errorf("start %s action: neither entry point nor cmd is set", p.name)
	}
	var err error
	if inv.stdin, err = paramsJSON(req.Parameters); err != nil {
		return inv, fmt.Errorf("start %s action: encode parameters: %w", p.name, err)
	}
	return inv, nil
}

func (p *process) Run(ctx context.Context, req Request) Outcome {
	noExit := domain.Result{ExitCode: -1}
	inv, err := p.invocation(req)
	if err != nil {
		return failed(noExit, "%v", err)
	}

	runCtx, cancel := withTimeout(ctx, req.Timeout)
	defer cancel()
	stdout, stderr := req.Output.captures(p.maxOutput)
	// With a context that never ends, exec starts no watcher goroutine.
	cmd := exec.CommandContext(runCtx, inv.args[0])
	cmd.Args, cmd.Dir, cmd.Env = inv.args, inv.dir, p.environ(req)
	cmd.Stdin = bytes.NewReader(inv.stdin) // a pipe: bash reads ~/.bashrc when stdin is a socket
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = sysProcAttr()
	// Killing the group rather than the process takes grandchildren down too.
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = pipeGrace

	if err := cmd.Start(); err != nil {
		if o, ok := interrupted(ctx, runCtx, req.Timeout, noExit); ok {
			return o
		}
		if inv.direct {
			err = shebangError(req.EntryPoint, err)
		}
		return failed(noExit, "start %s action: %v", p.name, err)
	}
	err = cmd.Wait()
	if cmd.ProcessState == nil { // the wait itself failed; nothing was reaped
		return failed(noExit, "wait for %s action: %v", p.name, err)
	}
	// A clean exit counts even if the pipes had to be closed after
	// pipeGrace (exec.ErrWaitDelay): the action itself succeeded.
	return exited(ctx, runCtx, req.Timeout, cmd.ProcessState.Sys().(syscall.WaitStatus), stdout, stderr)
}

// exited is the outcome of an action process that ended with ws, having
// printed stdout and stderr. An exit other than a clean one is put down to
// the cancel or timeout when either happened, since killing the group on
// them is what ended it.
func exited(ctx, runCtx context.Context, timeout time.Duration, ws syscall.WaitStatus, stdout, stderr *capture) Outcome {
	code := ws.ExitStatus()
	if ws.Signaled() {
		code = -int(ws.Signal())
	}
	res := result(code, stdout, stderr)
	if res.ExitCode != 0 {
		if o, ok := interrupted(ctx, runCtx, timeout, res); ok {
			return o
		}
	}
	switch {
	case ws.Signaled():
		return failed(res, "killed by signal %d (%s)", ws.Signal(), ws.Signal())
	case res.ExitCode != 0:
		return failed(res, "exit code %d", res.ExitCode)
	}
	return Outcome{Status: domain.StatusSucceeded, Result: res}
}

// result is what an action process printed, and its exit code.
func result(exitCode int, stdout, stderr *capture) domain.Result {
	return domain.Result{ExitCode: exitCode, Stdout: stdout.String(), Stderr: stderr.String(), Output: stdout.JSON()}
}

// direct checks that the entry point exists (a missing script would
// otherwise surface as the interpreter's own exit code and message) and
// reports whether it is to be executed itself: for the shell runtime, when
// it starts with "#!". It is on every spawn, so only those two bytes are
// read. A cache by path and mtime would still stat the file each time, to
// save an open, a read and a close that BenchmarkShellVsRaw cannot tell from
// the noise of fork and exec; it is not worth its invalidation rules.
func (p *process) direct(path string) (bool, error) {
	if !p.shebang {
		_, err := os.Stat(path)
		return false, err
	}
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var head [2]byte
	if n, _ := io.ReadFull(f, head[:]); n < len(head) || head != [2]byte{'#', '!'} {
		return false, nil // too short, or a directory: the shell says what is wrong
	}
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	if st.Mode()&0o111 == 0 {
		return false, fmt.Errorf("%s starts with #! but is not executable: chmod +x it", path)
	}
	return true, nil
}

// shebangError explains why a script with a #! line could not be executed
// where the kernel's words mislead: "no such file or directory" is about the
// interpreter, not the script. It reads the #! line on this failure path only.
func shebangError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f, oerr := os.Open(path)
		if oerr != nil {
			return err // the script itself went away
		}
		head := make([]byte, 256)
		n, _ := io.ReadFull(f, head)
		f.Close()
		line, _, _ := strings.Cut(string(head[:n]), "\n")
		if strings.HasSuffix(line, "\r") {
			return fmt.Errorf("%s: its #! line ends in a carriage return: save it with Unix line endings", path)
		}
		return fmt.Errorf("%s: the interpreter of its #! line was not found: %q", path, line)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: permission denied executing it: a script with a #! line runs as itself, so it must be executable by this user and on a file system not mounted noexec", path)
	}
	return err
}

// killGroup kills the action's whole process group; the group ID is the
// action's PID because it was started with Setpgid.
func killGroup(pid int) error {
	if err := syscall.Kill(-pid, syscall.SIGKILL); errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	} else if err != nil {
		return fmt.Errorf("kill process group %d: %w", pid, err)
	}
	return nil
}

// environ is Config.Env plus what identifies the run and its scalar
// parameters, sorted so that names colliding after sanitising resolve the
// same way every time.
func (p *process) environ(req Request) []string {
	env := make([]string, 0, len(p.env)+3+len(req.Parameters))
	env = append(env, p.env...)
	env = append(env, "TROUPE_EXECUTION_ID="+req.ExecutionID, "TROUPE_ACTION="+req.Action)
	if p.runDir != "" {
		env = append(env, runMarker+p.runDir)
	}
	for _, k := range slices.Sorted(maps.Keys(req.Parameters)) {
		// A NUL cannot cross execve; such a value still arrives on stdin.
		if v, ok := scalar(req.Parameters[k]); ok && strings.IndexByte(v, 0) < 0 {
			env = append(env, "TROUPE_PARAM_"+envName(k)+"="+v)
		}
	}
	return env
}

// paramsJSON is the stdin document: always an object, newline-terminated so
// a shell `read` returns success.
func paramsJSON(params map[string]any) ([]byte, error) {
	if len(params) == 0 {
		return []byte("{}\n"), nil
	}
	b, err := json.Marshal(params)
	return append(b, '\n'), err
}

// envName upper-cases name and turns everything but ASCII letters and
// digits into '_'.
func envName(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, name)
}

// scalar renders strings, booleans and numbers as a script expects to read
// them: 3.0 as "3", never in exponent form.
func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case json.Number:
		return v.String(), true
	}
	switch rv := reflect.ValueOf(v); {
	case rv.CanInt():
		return strconv.FormatInt(rv.Int(), 10), true
	case rv.CanUint():
		return strconv.FormatUint(rv.Uint(), 10), true
	case rv.CanFloat():
		return strconv.FormatFloat(rv.Float(), 'f', -1, rv.Type().Bits()), true
	}
	return "", false
}
