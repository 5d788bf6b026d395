package actortest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/runtimes"
)

// Runtime is a scripted runtimes.Runtime, the "mock" runtime of the actor
// tests. Each run counts, optionally waits (RunFor, or until Release when
// Block is set; a canceled context ends the wait as real runtimes do), and
// returns Outcome's answer, by default success. It ignores the request's
// timeout, like a process that cannot be stopped. Set the fields before the
// first run.
type Runtime struct {
	// RuntimeName is what Name returns; default "test".
	RuntimeName string
	// RunFor is how long each run takes.
	RunFor time.Duration
	// Block makes each run wait until Release of its execution ID.
	Block bool
	// Outcome chooses the outcome of a run that was not canceled.
	Outcome func(req runtimes.Request) runtimes.Outcome

	mu         sync.Mutex
	runs       map[string]int
	started    []string
	running    int
	maxRunning int
	gates      map[string]chan struct{}
}

var _ runtimes.Runtime = (*Runtime)(nil)

// Name implements runtimes.Runtime.
func (r *Runtime) Name() string {
	if r.RuntimeName == "" {
		return "test"
	}
	return r.RuntimeName
}

// Run implements runtimes.Runtime.
func (r *Runtime) Run(ctx context.Context, req runtimes.Request) runtimes.Outcome {
	gate := r.begin(req.ExecutionID)
	defer r.end()
	if r.RunFor > 0 {
		select {
		case <-time.After(r.RunFor):
		case <-ctx.Done():
		}
	}
	if r.Block {
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil {
		return runtimes.Outcome{Status: domain.StatusCanceled, Result: domain.Result{ExitCode: -1}, Error: "canceled"}
	}
	if r.Outcome != nil {
		return r.Outcome(req)
	}
	return runtimes.Outcome{Status: domain.StatusSucceeded, Result: domain.Result{Stdout: "ran " + req.Action}}
}

func (r *Runtime) begin(id string) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runs == nil {
		r.runs = map[string]int{}
	}
	r.runs[id]++
	r.started = append(r.started, id)
	r.running++
	r.maxRunning = max(r.maxRunning, r.running)
	return r.gate(id)
}

func (r *Runtime) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
}

// gate returns the channel a blocked run of id waits on; r.mu is held.
func (r *Runtime) gate(id string) chan struct{} {
	if r.gates == nil {
		r.gates = map[string]chan struct{}{}
	}
	g, ok := r.gates[id]
	if !ok {
		g = make(chan struct{})
		r.gates[id] = g
	}
	return g
}

// Release lets the blocked run of execution id (current or future) finish.
func (r *Runtime) Release(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.gate(id))
}

// Runs returns how many times execution id was run.
func (r *Runtime) Runs(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs[id]
}

// Started returns the execution IDs of every run so far, in start order.
func (r *Runtime) Started() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.started...)
}

// Running returns how many runs are in progress.
func (r *Runtime) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

// MaxRunning returns the most runs that were ever in progress at once.
func (r *Runtime) MaxRunning() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxRunning
}

// WaitRunning is a WaitFor condition: n runs are in progress.
func (r *Runtime) WaitRunning(n int) func() error {
	return func() error {
		if got := r.Running(); got != n {
			return fmt.Errorf("%d runs in progress, want %d (started so far: %v)", got, n, r.Started())
		}
		return nil
	}
}
