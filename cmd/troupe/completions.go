package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/metrics"
	"github.com/troupehq/troupe/storage"
)

// completions delivers the outbox: each terminal transition leaves an entry
// in the same batch, and the execution actor that committed it hands the
// terminal record here (Completed), so delivery needs no read of the store.
// This dispatcher records the metrics, wakes whoever waits on that
// execution and every stream subscriber, and deletes the entries. Entries
// a crash left behind are delivered from the store when the dispatcher is
// created, before anything of this process can finish: every completion is
// observed at least once, and only a crash can make it twice.
type completions struct {
	store   *storage.DB
	metrics *metrics.Metrics
	log     *slog.Logger
	kick    chan struct{}
	mu      sync.Mutex
	queue   []*domain.Execution // committed terminal records, not yet delivered
	waiters map[domain.ID][]chan *domain.Execution
	streams api.Fanout // the subscribers of GET /api/v1/stream
}

func newCompletions(store *storage.DB, m *metrics.Metrics, log *slog.Logger) *completions {
	c := &completions{store: store, metrics: m, log: log, kick: make(chan struct{}, 1), waiters: map[domain.ID][]chan *domain.Execution{}}
	c.redeliver()
	return c
}

// Completed queues the delivery of a terminal record whose transition (and
// so its outbox entry) is committed; it never blocks.
func (c *completions) Completed(ex *domain.Execution) {
	c.mu.Lock()
	c.queue = append(c.queue, ex)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *completions) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			c.deliver()
			return
		case <-c.kick:
			c.deliver()
		}
	}
}

func (c *completions) deliver() {
	c.mu.Lock()
	batch := c.queue
	c.queue = nil
	c.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	acks := make([]storage.Completion, len(batch))
	for i, ex := range batch {
		c.observe(ex)
		acks[i] = storage.Completion{Execution: ex.ID, Seq: ex.Seq}
	}
	c.announce(batch...)
	if err := c.store.AckCompletions(acks...); err != nil {
		c.log.Error("ack completions", "n", len(acks), "err", err)
	}
}

// redeliver delivers the entries a previous process committed but did not
// get to delete; only they need the records read back.
func (c *completions) redeliver() {
	for {
		batch, err := c.store.Completions(1024)
		if err != nil {
			c.log.Error("read completions outbox", "err", err)
			return
		}
		for _, done := range batch {
			ex, err := c.store.Execution(done.Execution)
			if err != nil {
				c.log.Error("read finished execution", "execution", done.Execution, "err", err)
			} else {
				c.observe(ex)
			}
			if err := c.store.AckCompletions(done); err != nil {
				c.log.Error("ack completion", "execution", done.Execution, "err", err)
				return
			}
		}
		if len(batch) < 1024 {
			return
		}
	}
}

// observe records a finished execution's metrics; the outbox makes this
// once per execution rather than once per report.
func (c *completions) observe(ex *domain.Execution) {
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

// announce hands terminal records to everyone waiting on them and to every
// stream, blocking on neither: a waiter's channel has room for its one
// record, and Fanout drops a stream that has no room.
func (c *completions) announce(exs ...*domain.Execution) {
	c.mu.Lock()
	for _, ex := range exs {
		for _, w := range c.waiters[ex.ID] {
			w <- ex
		}
		delete(c.waiters, ex.ID)
	}
	c.mu.Unlock()
	c.streams.Publish(exs...)
}

// wait returns the execution once it is terminal, or as it is when ctx
// ends; a load error (such as domain.ErrNotFound) is returned at once. It
// subscribes before it loads, so a completion between the two is not missed.
func (c *completions) wait(ctx context.Context, id domain.ID, load func() (*domain.Execution, error)) (*domain.Execution, error) {
	ch := make(chan *domain.Execution, 1) // announce never blocks on a waiter
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
	case ex := <-ch:
		return ex, nil
	}
}

func (c *completions) unsubscribe(id domain.ID, ch chan *domain.Execution) {
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
