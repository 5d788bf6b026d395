package runtimes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
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
}

var _ Runtime = (*process)(nil)

// NewShell builds the shell runtime: an entry point runs as `<shell> script`,
// a command line as `<shell> -c cmd`.
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
	return newProcess("shell", path, "-c", cfg), nil
}

// NewPython builds the python runtime: an entry point runs as
// `<python> script`, with the interpreter resolved once to its real binary.
func NewPython(cfg Config) (Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new python runtime: %w", err)
	}
	path, err := resolvePython(cfg)
	if err != nil {
		return nil, fmt.Errorf("new python runtime: resolve interpreter %q: %w", cfg.Python, err)
	}
	return newProcess("python", path, "", cfg), nil
}

func newProcess(name, path, cmdFlag string, cfg Config) *process {
	return &process{name: name, path: path, cmdFlag: cmdFlag, env: slices.Clone(cfg.Env),
		maxOutput: cfg.MaxOutput, tmpDir: os.TempDir()}
}

// resolvePython asks the interpreter where its real binary is: through a
// shim, sys.executable is the binary the shim ends up running.
func resolvePython(cfg Config) (string, error) {
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

func (p *process) Run(ctx context.Context, req Request) Outcome {
	noExit := domain.Result{ExitCode: -1}
	var args []string
	dir := p.tmpDir
	switch {
	case req.EntryPoint != "":
		if !filepath.IsAbs(req.EntryPoint) {
			return failed(noExit, "start %s action: entry point %q is not an absolute path", p.name, req.EntryPoint)
		}
		// A missing script would otherwise surface as the interpreter's own
		// exit code and message; the OS error says it plainly.
		if _, err := os.Stat(req.EntryPoint); err != nil {
			return failed(noExit, "start %s action: %v", p.name, err)
		}
		args, dir = []string{p.path, req.EntryPoint}, filepath.Dir(req.EntryPoint)
	case req.Cmd != "" && p.cmdFlag != "":
		args = []string{p.path, p.cmdFlag, req.Cmd}
	case req.Cmd != "":
		return failed(noExit, "start %s action: the %s runtime needs an entry point; cmd is for the shell runtime", p.name, p.name)
	default:
		return failed(noExit, "start %s action: neither entry point nor cmd is set", p.name)
	}
	stdin, err := paramsJSON(req.Parameters)
	if err != nil {
		return failed(noExit, "start %s action: encode parameters: %v", p.name, err)
	}

	runCtx, cancel := withTimeout(ctx, req.Timeout)
	defer cancel()
	stdout, stderr := &capture{max: p.maxOutput}, &capture{max: p.maxOutput}
	// With a context that never ends, exec starts no watcher goroutine.
	cmd := exec.CommandContext(runCtx, p.path)
	cmd.Args, cmd.Dir, cmd.Env = args, dir, p.environ(req)
	cmd.Stdin = bytes.NewReader(stdin) // a pipe: bash reads ~/.bashrc when stdin is a socket
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = sysProcAttr()
	// Killing the group rather than the process takes grandchildren down too.
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = pipeGrace

	if err := cmd.Start(); err != nil {
		if o, ok := interrupted(ctx, runCtx, req.Timeout, noExit); ok {
			return o
		}
		return failed(noExit, "start %s action: %v", p.name, err)
	}
	err = cmd.Wait()
	if cmd.ProcessState == nil { // the wait itself failed; nothing was reaped
		return failed(noExit, "wait for %s action: %v", p.name, err)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	res := domain.Result{ExitCode: ws.ExitStatus(), Stdout: stdout.String(), Stderr: stderr.String(), Output: stdout.JSON()}
	if ws.Signaled() {
		res.ExitCode = -int(ws.Signal())
	}
	if err != nil {
		if o, ok := interrupted(ctx, runCtx, req.Timeout, res); ok {
			return o
		}
	}
	switch {
	case ws.Signaled():
		return failed(res, "killed by signal %d (%s)", ws.Signal(), ws.Signal())
	case res.ExitCode != 0:
		return failed(res, "exit code %d", res.ExitCode)
	}
	// A clean exit counts even if the pipes had to be closed after
	// pipeGrace (exec.ErrWaitDelay): the action itself succeeded.
	return Outcome{Status: domain.StatusSucceeded, Result: res}
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
	env := make([]string, 0, len(p.env)+2+len(req.Parameters))
	env = append(env, p.env...)
	env = append(env, "TROUPE_EXECUTION_ID="+req.ExecutionID, "TROUPE_ACTION="+req.Action)
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
