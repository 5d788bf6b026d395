package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// outputPoll is how often a tail looks again for a run that has not
// started yet, or whose end is not recorded yet.
const outputPoll = 100 * time.Millisecond

// Output follows what execution id prints: live from the worker that runs
// it, here or on another member, then what its record kept. Until the
// execution has a worker, and between a run's end and its record's, it
// polls the record. It follows the attempt from names, or the current one,
// and each later attempt a retry starts, from its start.
func (b *backend) Output(ctx context.Context, id domain.ID, from api.OutputFrom, fn func(string, []byte) error) (*domain.Execution, error) {
	// What fn was given moves from on, so that following the run live, then
	// its record, never repeats a byte.
	sent := func(stream string, chunk []byte) error {
		if err := fn(stream, chunk); err != nil {
			return err
		}
		if stream == "stdout" {
			from.Stdout += len(chunk)
		} else {
			from.Stderr += len(chunk)
		}
		return nil
	}
	if api.IsLocal(ctx) {
		return nil, b.followLive(ctx, id, &from, sent)
	}
	for {
		ex, _, err := b.execution(ctx, id, 0)
		if err != nil {
			return nil, err
		}
		switch {
		case from.Attempt == 0:
			from.Attempt = ex.Attempt
		case ex.Attempt > from.Attempt:
			// Only the last attempt's output is kept: a reader that missed
			// the end of an earlier one gets the next from its start.
			from = api.OutputFrom{Attempt: ex.Attempt}
			if err := fn("attempt", []byte(strconv.Itoa(ex.Attempt))); err != nil {
				return nil, err
			}
		}
		if ex.Status.Terminal() {
			return ex, api.SendKept(ex.Result, from, fn)
		}
		if ex.Worker != "" {
			err := b.followWorker(ctx, ex.Worker, id, &from, sent)
			if err != nil && !errors.Is(err, domain.ErrNotFound) {
				return nil, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(outputPoll):
		}
	}
}

// followWorker follows the run of execution id on member worker until its
// output ends; domain.ErrNotFound when it cannot be followed there (not
// started, ended, the member gone or failing): the record tells the rest.
func (b *backend) followWorker(ctx context.Context, worker string, id domain.ID, from *api.OutputFrom, fn func(string, []byte) error) error {
	if worker == b.n.cfg.NodeName {
		return b.followLive(ctx, id, from, fn)
	}
	for _, p := range b.peers() {
		if p.name != worker {
			continue
		}
		_, err := p.client.Output(ctx, id.String(), *from, fn)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("follow execution %s on %s: %v: %w", id, worker, err, domain.ErrNotFound)
		}
		return err
	}
	return fmt.Errorf("worker %s of execution %s is not a live member serving the API: %w", worker, id, domain.ErrNotFound)
}

// followLive gives fn what the run of execution id on this node prints
// until it ends.
func (b *backend) followLive(ctx context.Context, id domain.ID, from *api.OutputFrom, fn func(string, []byte) error) error {
	o, ok := b.n.live.Get(id.String(), from.Attempt)
	if !ok {
		return fmt.Errorf("no run of attempt %d of execution %s in progress on node %s: %w", from.Attempt, id, b.n.cfg.NodeName, domain.ErrNotFound)
	}
	for {
		stdout, stderr, ended, more := o.Since(from.Stdout, from.Stderr)
		if len(stdout) > 0 {
			if err := fn("stdout", stdout); err != nil {
				return err
			}
		}
		if len(stderr) > 0 {
			if err := fn("stderr", stderr); err != nil {
				return err
			}
		}
		if ended {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-more:
		}
	}
}
