package runtimes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/troupehq/troupe/domain"
)

// Request is one attempt of one action, as the worker hands it to a runtime.
type Request struct {
	ExecutionID string
	// Action is the action ref, e.g. "core.echo"; the builtin runtime
	// dispatches on it.
	Action string
	// EntryPoint is the absolute path of the script to run, or "" when Cmd is used.
	EntryPoint string
	// Cmd is a shell command line (shell runtime only), used when EntryPoint is "".
	Cmd string
	// Parameters are the validated parameters. Some values are secrets, so
	// runtimes hand them to the action and never log them.
	Parameters map[string]any
	// Timeout bounds the attempt; 0 means no timeout.
	Timeout time.Duration
	// Output, when set, receives what a process runtime's action prints,
	// for readers to follow while it runs; the caller ends it.
	Output *Output
}

// Outcome is how one attempt ended.
type Outcome struct {
	// Status is StatusSucceeded, StatusFailed, StatusTimeout, or
	// StatusCanceled when the caller's context was canceled.
	Status domain.Status
	// Result holds what the action produced, also when it did not succeed.
	// ExitCode is the process's exit status, minus the signal number when a
	// signal killed it, -1 when no process ran, and 0 for builtin actions.
	Result domain.Result
	// Error is the reason when Status is not succeeded, e.g. "exit code 3",
	// "timed out after 5s", "canceled".
	Error string
}

// Runtime runs action attempts. Run is safe for concurrent use. It returns
// once the attempt has ended: for process runtimes, once the process has
// exited, after a timeout or cancel has killed its whole process group.
// Background children of a process that exits on its own are left running.
type Runtime interface {
	Name() string
	Run(ctx context.Context, req Request) Outcome
}

// Factory builds a runtime from the shared configuration; it fails when the
// runtime cannot work on this machine (e.g. no python interpreter).
type Factory func(cfg Config) (Runtime, error)

// Builtin holds every runtime Troupe ships, by name.
var Builtin = map[string]Factory{
	"shell":       NewShell,
	"python":      NewPython,
	"python-warm": NewPythonWarm,
	"builtin":     NewBuiltin,
}

// ErrNotFound is wrapped by the error for a runtime name that is not known.
// It wraps domain.ErrNotFound, so either sentinel matches.
var ErrNotFound = fmt.Errorf("runtime %w", domain.ErrNotFound)

type notFoundError struct {
	name  string
	known []string
}

func (e *notFoundError) Error() string { return notFound("runtime", e.name, e.known) }
func (e *notFoundError) Unwrap() error { return ErrNotFound }

// notFound is the one wording of every "no such X" in this package.
func notFound(what, name string, known []string) string {
	list := "none"
	if len(known) > 0 {
		list = strings.Join(known, ", ")
	}
	return fmt.Sprintf("%s %q not found (available: %s)", what, name, list)
}

// Registry holds the runtimes a node can run, by name. It is immutable once
// built, so it needs no locking.
type Registry struct {
	byName      map[string]Runtime
	names       []string
	unavailable map[string]error
}

// NewRegistry builds the named runtimes. With no names it builds every
// runtime in Builtin whose factory succeeds on this machine, and remembers
// why the others failed (see Unavailable); a named runtime that fails to
// build is an error. An unknown name is an error naming it and listing the
// known ones.
func NewRegistry(cfg Config, names []string) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("build runtime registry: %w", err)
	}
	explicit := len(names) > 0
	if !explicit {
		names = slices.Sorted(maps.Keys(Builtin))
	}
	var rts []Runtime
	unavailable := map[string]error{}
	for _, name := range names {
		factory, ok := Builtin[name]
		if !ok {
			return nil, fmt.Errorf("build runtime registry: %w", &notFoundError{name, slices.Sorted(maps.Keys(Builtin))})
		}
		rt, err := factory(cfg)
		switch {
		case err != nil && explicit:
			return nil, fmt.Errorf("build runtime registry: %w", err)
		case err != nil:
			unavailable[name] = err
		default:
			rts = append(rts, rt)
		}
	}
	r := RegistryOf(rts...)
	r.unavailable = unavailable
	return r, nil
}

// RegistryOf is a registry of exactly the given runtimes, keyed by their
// Name (the last wins on a clash); tests use it to serve scripted runtimes.
func RegistryOf(rts ...Runtime) *Registry {
	r := &Registry{byName: make(map[string]Runtime, len(rts))}
	for _, rt := range rts {
		r.byName[rt.Name()] = rt
	}
	r.names = slices.Sorted(maps.Keys(r.byName))
	return r
}

// Get returns the runtime called name, or an error wrapping ErrNotFound that
// lists the available ones.
func (r *Registry) Get(name string) (Runtime, error) {
	if rt, ok := r.byName[name]; ok {
		return rt, nil
	}
	return nil, &notFoundError{name, r.names}
}

// Names lists the available runtimes, sorted; nodes advertise it.
func (r *Registry) Names() []string { return slices.Clone(r.names) }

// Close stops what runtimes keep running between runs (the python-warm
// fork server); the agent calls it as it stops, once its actor system has.
func (r *Registry) Close() error {
	var errs []error
	for _, name := range r.names {
		if c, ok := r.byName[name].(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// Unavailable says, for each Builtin runtime that NewRegistry skipped
// because it cannot work here, why; the agent logs it at start.
func (r *Registry) Unavailable() map[string]error { return maps.Clone(r.unavailable) }

// withTimeout bounds ctx by d when d is set.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// interrupted reports whether an attempt that did not succeed ended because
// the caller canceled ctx or because runCtx (ctx bounded by timeout) expired;
// the caller's cancel wins, since the worker asked for it.
func interrupted(ctx, runCtx context.Context, timeout time.Duration, res domain.Result) (Outcome, bool) {
	switch {
	case ctx.Err() != nil:
		return Outcome{Status: domain.StatusCanceled, Result: res, Error: "canceled"}, true
	case runCtx.Err() != nil:
		return Outcome{Status: domain.StatusTimeout, Result: res, Error: "timed out after " + timeout.String()}, true
	}
	return Outcome{}, false
}

func failed(res domain.Result, format string, args ...any) Outcome {
	return Outcome{Status: domain.StatusFailed, Result: res, Error: fmt.Sprintf(format, args...)}
}

// Interpreter returns the program that runs a script of runtime name, for
// long-running scripts such as sensors that are not one-shot actions: the
// same resolved binary the runtime uses, so sensors never start through a
// version-manager shim either.
func (r *Registry) Interpreter(name string) ([]string, error) {
	rt, err := r.Get(name)
	if err != nil {
		return nil, err
	}
	switch rt := rt.(type) {
	case *process:
		return []string{rt.path}, nil
	case *warmPython: // a long-running script gains nothing from a warm start
		return []string{rt.proc.path}, nil
	}
	return nil, fmt.Errorf("runtime %q cannot run scripts", name)
}
