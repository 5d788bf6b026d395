package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/troupehq/troupe/api"
)

// finishes tells the closed loop's clients when their executions finished,
// from each node's stream of finished executions (GET /api/v1/stream):
// one connection per node instead of one long poll per execution, whose
// cost would otherwise fall on the cores the node under test runs on. If a
// stream cannot be had or breaks, every wait from then on long-polls its
// execution instead, so a wait never hangs on an event that was missed.
type finishes struct {
	mu      sync.Mutex
	early   map[string]struct{}      // finished before anyone waited for them
	waiting map[string]chan struct{} // closed when that execution finishes
	broken  chan struct{}            // closed once the streams cannot be trusted
	once    sync.Once
	err     error // why broken was closed
}

// streamConnect bounds how long the streams may take to open before the
// load starts; past it the closed loop long-polls.
const streamConnect = 10 * time.Second

// followStreams subscribes to every client's node and returns once all
// have answered, or broken when one could not. The streams run until ctx
// ends.
func followStreams(ctx context.Context, clients []*api.Client) *finishes {
	f := &finishes{early: map[string]struct{}{}, waiting: map[string]chan struct{}{}, broken: make(chan struct{})}
	var ready sync.WaitGroup
	for _, c := range clients {
		ready.Add(1)
		var once sync.Once
		answered := func() { once.Do(ready.Done) }
		go func() {
			err := c.Stream(ctx, "", "", answered, func(e api.StreamEvent) error {
				f.finished(e.ID)
				return nil
			})
			if err == nil && ctx.Err() == nil {
				err = errors.New("stream ended")
			}
			if err != nil {
				f.fail(fmt.Errorf("stream of %s: %w", c.Addr, err))
			}
			answered() // after fail: a stream that never opened is seen broken
		}()
	}
	done := make(chan struct{})
	go func() { ready.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(streamConnect):
		f.fail(fmt.Errorf("streams did not open within %s", streamConnect))
	case <-ctx.Done():
	}
	return f
}

func (f *finishes) fail(err error) {
	f.once.Do(func() {
		f.mu.Lock()
		f.err = err
		f.mu.Unlock()
		close(f.broken)
	})
}

// fallback is why the waits long-poll, or nil while the streams serve them.
func (f *finishes) fallback() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *finishes) finished(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ch, ok := f.waiting[id]; ok {
		close(ch)
		delete(f.waiting, id)
		return
	}
	f.early[id] = struct{}{}
}

// wait returns once execution id, accepted by c's node, has finished.
func (f *finishes) wait(ctx context.Context, c *api.Client, id string) error {
	f.mu.Lock()
	if _, ok := f.early[id]; ok {
		delete(f.early, id)
		f.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	f.waiting[id] = ch
	f.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-f.broken:
	case <-ctx.Done():
	}
	f.mu.Lock()
	delete(f.waiting, id)
	f.mu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	_, err := c.WaitStatus(ctx, id)
	return err
}
