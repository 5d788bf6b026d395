// Package dispatch runs the pipeline's actor mailboxes, and the work they
// start beside themselves, on warm goroutines. protoactor starts a goroutine
// each time an idle mailbox receives a message; a new goroutine's stack
// starts small and is copied as it grows into Pebble's deep call chains,
// which cost about a tenth of a node's CPU under load. A Pool keeps the
// goroutines that finished their work parked for the next, stacks grown.
// It does not bound concurrency: work that finds no parked goroutine gets a
// new one, as it would without the pool.
package dispatch

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// Pool is an actor.Dispatcher, and runs plain functions too.
type Pool struct {
	throughput int
	maxParked  int32
	parked     atomic.Int32
	handoff    chan func() // unbuffered: a send succeeds only to a parked goroutine
}

var _ actor.Dispatcher = (*Pool)(nil)

// New returns a pool whose mailboxes process up to throughput messages per
// turn (protoactor's default is 300) and that keeps at most maxParked idle
// goroutines.
func New(throughput, maxParked int) *Pool {
	return &Pool{throughput: throughput, maxParked: int32(maxParked), handoff: make(chan func())}
}

// Shared is the pool of the node's pipeline actors. Its parked goroutines
// cost their (shrinking) stacks only, so one per process is enough.
var Shared = New(300, 1024)

// Go runs fn on a parked goroutine, or on a new one if none is parked.
func (p *Pool) Go(fn func()) {
	select {
	case p.handoff <- fn:
	default:
		go p.run(fn)
	}
}

func (p *Pool) run(fn func()) {
	for {
		fn()
		if p.parked.Add(1) > p.maxParked {
			p.parked.Add(-1)
			return
		}
		fn = <-p.handoff
		p.parked.Add(-1)
	}
}

// Schedule implements actor.Dispatcher.
func (p *Pool) Schedule(fn func()) { p.Go(fn) }

// Throughput implements actor.Dispatcher.
func (p *Pool) Throughput() int { return p.throughput }
