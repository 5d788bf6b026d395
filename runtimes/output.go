package runtimes

import (
	"sync"
	"unicode/utf8"
)

// Output is what an action prints, readable while it runs: the worker
// hands one to Run, and `troupe execution tail` follows it. It keeps what
// the run's result keeps (the first max bytes of each stream) and never
// holds up the action: a reader only looks at what is already written.
type Output struct {
	attempt        int // of the execution, for a reader that follows one attempt
	mu             sync.Mutex
	stdout, stderr capture
	wake           chan struct{} // made by a waiting reader; closed by the next write or End
	ended          bool
}

// NewOutput returns an empty Output for one run.
func NewOutput() *Output {
	o := &Output{}
	o.stdout.live, o.stderr.live = o, o
	return o
}

// captures returns the captures a run writes into, keeping max bytes of
// each: o's own, or fresh ones when o is nil (nobody can follow the run).
func (o *Output) captures(max int) (stdout, stderr *capture) {
	if o == nil {
		return &capture{max: max}, &capture{max: max}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stdout.max, o.stderr.max = max, max
	return &o.stdout, &o.stderr
}

// grewLocked wakes the readers waiting for more; o.mu is held.
func (o *Output) grewLocked() {
	if o.wake != nil {
		close(o.wake)
		o.wake = nil
	}
}

// End marks the output complete: the run has ended and its streams are
// read to their end.
func (o *Output) End() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ended = true
	o.grewLocked()
}

// Since returns what was printed past the given offsets into each stream,
// whether the output is complete, and, when it is not, a channel closed
// when there is more. While the run goes on, a character a write split is
// held back until it is whole. The slices share the kept bytes, which
// never change once written, so they need no copy.
func (o *Output) Since(stdoutFrom, stderrFrom int) (stdout, stderr []byte, ended bool, more <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	stdout, stderr = tail(o.stdout.buf, stdoutFrom), tail(o.stderr.buf, stderrFrom)
	if o.ended {
		return stdout, stderr, true, nil
	}
	if o.wake == nil {
		o.wake = make(chan struct{})
	}
	return whole(stdout), whole(stderr), false, o.wake
}

func tail(b []byte, from int) []byte {
	if from >= len(b) {
		return nil
	}
	return b[from:]
}

// whole is p up to its last complete UTF-8 character.
func whole(p []byte) []byte {
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				return p[:i]
			}
			break
		}
	}
	return p
}

// Live is the outputs of the runs in progress on a node, by execution ID.
// The zero value is ready to use.
type Live struct{ m sync.Map }

// Start registers and returns the output of attempt of execution id.
func (l *Live) Start(id string, attempt int) *Output {
	o := NewOutput()
	o.attempt = attempt
	l.m.Store(id, o)
	return o
}

// End completes o, the output of a run of execution id, and forgets it
// (unless a later run of id replaced it).
func (l *Live) End(id string, o *Output) {
	o.End()
	l.m.CompareAndDelete(id, o)
}

// Get returns the output of that attempt of execution id, in progress here.
func (l *Live) Get(id string, attempt int) (*Output, bool) {
	o, ok := l.m.Load(id)
	if !ok || o.(*Output).attempt != attempt {
		return nil, false
	}
	return o.(*Output), true
}
