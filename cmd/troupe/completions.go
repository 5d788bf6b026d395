package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/metrics"
	"github.com/troupehq/troupe/storage"
)

// completions delivers the outbox: each terminal transition leaves an entry
// in the same batch, and this dispatcher announces it to whoever waits on
// that execution, then deletes it. An entry survives a crash, so every
// completion is announced at least once; waiters re-read the record, so a
// repeat is harmless.
type completions struct {
	store   *storage.DB
	metrics *metrics.Metrics
	log     *slog.Logger
	kick    chan struct{}
	mu      sync.Mutex
	waiters map[domain.ID][]chan struct{}
}

func newCompletions(store *storage.DB, m *metrics.Metrics, log *slog.Logger) *completions {
	return &completions{store: store, metrics: m, log: log, kick: make(chan struct{}, 1), waiters: map[domain.ID][]chan struct{}{}}
}

// Kick wakes the dispatcher; it never blocks.
func (c *completions) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *completions) run(ctx context.Context) {
	poll := time.NewTicker(time.Second) // in case a kick was lost to a crash or a full channel
	defer poll.Stop()
	for {
		c.drain()
		select {
		case <-ctx.Done():
			c.drain()
			return
		case <-c.kick:
		case <-poll.C:
		}
	}
}

func (c *completions) drain() {
	for {
		batch, err := c.store.Completions(1024)
		if err != nil {
			c.log.Error("read completions outbox", "err", err)
			return
		}
		for _, done := range batch {
			c.observe(done.Execution)
			c.announce(done.Execution)
			if err := c.store.AckCompletion(done); err != nil {
				c.log.Error("ack completion", "execution", done.Execution, "err", err)
			}
		}
		if len(batch) < 1024 {
			return
		}
	}
}

// observe records a finished execution's metrics; the outbox makes this
// once per execution rather than once per report.
func (c *completions) observe(id domain.ID) {
	ex, err := c.store.Execution(id)
	if err != nil {
		c.log.Error("read finished execution", "execution", id, "err", err)
		return
	}
	m := c.metrics
	m.ExecutionsFinished.WithLabelValues(ex.Action, ex.Runtime, string(ex.Status)).Inc()
	if ex.FinishedAt != nil {
		m.EventToCompletion.WithLabelValues(ex.Runtime).Observe(ex.FinishedAt.Sub(ex.CreatedAt).Seconds())
	}
	if ex.StartedAt != nil {
		m.ScheduleToStart.WithLabelValues(ex.Runtime).Observe(ex.StartedAt.Sub(ex.CreatedAt).Seconds())
		if ex.FinishedAt != nil {
			m.RunSeconds.WithLabelValues(ex.Runtime).Observe(ex.FinishedAt.Sub(*ex.StartedAt).Seconds())
		}
	}
}

func (c *completions) announce(id domain.ID) {
	c.mu.Lock()
	ws := c.waiters[id]
	delete(c.waiters, id)
	c.mu.Unlock()
	for _, w := range ws {
		close(w)
	}
}

// wait blocks until the execution load returns is terminal or ctx ends.
// It subscribes before it reads, so a completion between the two is not missed.
func (c *completions) wait(ctx context.Context, id domain.ID, load func() (*domain.Execution, error)) (*domain.Execution, error) {
	for {
		ch := make(chan struct{})
		c.mu.Lock()
		c.waiters[id] = append(c.waiters[id], ch)
		c.mu.Unlock()
		ex, err := load()
		if err != nil || ex.Status.Terminal() {
			c.unsubscribe(id, ch)
			return ex, err
		}
		select {
		case <-ctx.Done():
			c.unsubscribe(id, ch)
			return load()
		case <-ch:
		}
	}
}

func (c *completions) unsubscribe(id domain.ID, ch chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := c.waiters[id]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(c.waiters, id)
	} else {
		c.waiters[id] = ws
	}
}
