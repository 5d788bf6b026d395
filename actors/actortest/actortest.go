// Package actortest holds what the actor packages' tests share: a local
// actor system bound to a test, a store in a temporary directory, a probe
// actor that records what it is sent, a scripted runtime, and the one
// polling helper. It is imported by tests only.
package actortest

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupehq/troupe/internal/troupetest"
	"github.com/troupehq/troupe/storage"
)

// WaitFor polls cond until it returns nil. On timeout the test fails with
// cond's last account of what is not yet true.
var WaitFor = troupetest.WaitFor

// Logger returns a logger that writes to t.Log while the test runs and
// drops lines once it has ended (actor goroutines may outlive it by a hair).
// Run `go test -v` to see it.
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

// NewSystem returns a local actor system that logs to t. Actors spawned
// with Spawn are stopped when the test ends.
func NewSystem(t testing.TB) *actor.ActorSystem {
	t.Helper()
	log := Logger(t)
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return log.With("component", "protoactor")
	}))
	t.Cleanup(sys.Shutdown) // registered first, so it runs after every actor has stopped
	return sys
}

// Spawn spawns props under name and stops the actor, with its children,
// when the test ends. Open a store the actor uses before spawning it, so
// that the store is closed after the actor has stopped.
func Spawn(t testing.TB, sys *actor.ActorSystem, props *actor.Props, name string) *actor.PID {
	t.Helper()
	pid, err := sys.Root.SpawnNamed(props, name)
	if err != nil {
		t.Fatalf("spawn %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := sys.Root.StopFuture(pid).Wait(); err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
	})
	return pid
}

// Request sends msg to pid and returns the reply, failing the test if none
// comes within 5 seconds.
func Request(t testing.TB, sys *actor.ActorSystem, pid *actor.PID, msg any) any {
	t.Helper()
	res, err := sys.Root.RequestFuture(pid, msg, 5*time.Second).Result()
	if err != nil {
		t.Fatalf("request %T from %s: %v", msg, pid.Id, err)
	}
	return res
}

// Store opens a store in a temporary directory and closes it when the
// test ends.
func Store(t testing.TB) *storage.DB {
	t.Helper()
	db, err := storage.Open(storage.Config{Dir: t.TempDir(), Logger: Logger(t)})
	if err != nil {
		t.Fatalf("open storage: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close storage: %v", err)
		}
	})
	return db
}

// Probe is an actor standing in for one of a node's well-known actors: it
// records every message it is sent and hands each to its handler, which
// may answer.
type Probe struct {
	PID *actor.PID
	sys *actor.ActorSystem

	mu     sync.Mutex
	msgs   []any
	handle func(ctx actor.Context, msg any)
}

// NewProbe spawns a probe under name; handle, when not nil, is called in the
// probe's actor for each recorded message (after it was recorded).
func NewProbe(t testing.TB, sys *actor.ActorSystem, name string, handle func(ctx actor.Context, msg any)) *Probe {
	t.Helper()
	p := &Probe{sys: sys, handle: handle}
	p.PID = Spawn(t, sys, actor.PropsFromProducer(func() actor.Actor { return p }), name)
	return p
}

type syncRequest struct{}

// Receive implements actor.Actor.
func (p *Probe) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case actor.SystemMessage, actor.AutoReceiveMessage:
	case syncRequest:
		ctx.Respond(syncRequest{})
	default:
		p.mu.Lock()
		p.msgs = append(p.msgs, msg)
		p.mu.Unlock()
		if p.handle != nil {
			p.handle(ctx, msg)
		}
	}
}

// Sync returns once the probe has handled every message sent to it before
// the call: a barrier, so that what a test reads next is complete.
func (p *Probe) Sync(t testing.TB) {
	t.Helper()
	if _, err := p.sys.Root.RequestFuture(p.PID, syncRequest{}, 5*time.Second).Result(); err != nil {
		t.Fatalf("sync with probe %s: %v", p.PID.Id, err)
	}
}

// Messages returns what the probe has recorded so far, oldest first.
func (p *Probe) Messages() []any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]any(nil), p.msgs...)
}

// Received returns the messages of type T the probe has recorded, oldest
// first.
func Received[T any](p *Probe) []T {
	var out []T
	for _, m := range p.Messages() {
		if v, ok := m.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// Count is a counter safe for concurrent use.
type Count struct {
	mu sync.Mutex
	n  int
}

// Add adds one.
func (c *Count) Add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

// Get returns the count.
func (c *Count) Get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
