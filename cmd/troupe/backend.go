package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/actors/rule"
	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/cluster"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/storage"
)

// backend serves the HTTP API from this node's actors and store.
type backend struct{ n *node }

var _ api.Backend = (*backend)(nil)

// acceptTimeout bounds how long a webhook waits for its event to be stored.
const acceptTimeout = 30 * time.Second

// accepting refuses new work until recovery has finished, so nothing new
// overtakes the executions a restart must resolve first.
func (b *backend) accepting() error {
	if err := b.takesWork(); err != nil {
		return api.NewError(api.CodeNotReady, "node %s is not accepting work: %v", b.n.cfg.NodeName, err)
	}
	return nil
}

// retryAfter is what an overloaded node asks clients to wait: at the rates
// measured, a full bound of builtin executions drains in well under it.
const retryAfter = time.Second

// admit refuses new work while this node holds max_in_flight unfinished
// executions, before anything is stored: what was accepted is never given
// up, and a refused request left no trace to retry against. The check is
// not atomic with the store, so concurrent requests may overshoot the
// bound by the number of them in flight, which the HTTP server bounds.
// Timer ticks and sensor events are not admitted here: they are few, and a
// tick refused would be a tick lost.
func (n *node) admit(kind string) error {
	if u := n.store.Unfinished(); u >= int64(n.cfg.MaxFlight) {
		n.metrics.AdmissionRefused.WithLabelValues(kind).Inc()
		return overloaded(fmt.Sprintf("node %s is overloaded: %d executions unfinished, max_in_flight is %d; retry later",
			n.cfg.NodeName, u, n.cfg.MaxFlight))
	}
	return nil
}

// admitForwarded admits the webhook events that members without the rule
// role forward here, as if they had been posted here.
func (n *node) admitForwarded(ev *domain.Event) error {
	if ev.Trigger != webhookTrigger {
		return nil
	}
	return n.admit("webhook")
}

func overloaded(msg string) error {
	e := api.NewError(api.CodeOverloaded, "%s", msg)
	e.RetryAfter = retryAfter
	return e
}

func (b *backend) Webhook(ctx context.Context, name string, headers map[string]string, body any) (domain.ID, error) {
	if err := b.accepting(); err != nil {
		return domain.ID{}, err
	}
	instance, ok := (*b.n.webhooks.Load())[name]
	if !ok {
		return domain.ID{}, fmt.Errorf("webhook %q: %w (no enabled rule has trigger core.webhook with url %q)", name, domain.ErrNotFound, name)
	}
	// Only a node with the rule role stores the executions its webhooks
	// create; one without forwards the event to a rule member, which
	// admits it there (node.admitForwarded).
	if b.n.cfg.hasRole(cluster.RoleRule) {
		if err := b.n.admit("webhook"); err != nil {
			return domain.ID{}, err
		}
	}
	// The payload holds what a JSON round trip would give, as rule.LocalEvent
	// requires: the body was decoded from JSON; the headers become any.
	hs := make(map[string]any, len(headers))
	for k, v := range headers {
		hs[k] = v
	}
	now := time.Now().UTC()
	ev := &domain.Event{ID: domain.NewID(now), Trigger: webhookTrigger, Instance: instance,
		Payload: map[string]any{"headers": hs, "body": body}, Source: "webhook " + name, CreatedAt: now}
	id := ev.ID
	rules, err := b.n.rulesFor(id)
	if err != nil {
		return domain.ID{}, err
	}
	acc, err := b.accept(rules, ev)
	if err != nil {
		return domain.ID{}, fmt.Errorf("accept event at %s: %w", rules.Address, err)
	}
	if acc.Overloaded {
		return domain.ID{}, overloaded(acc.Error)
	} else if acc.Error != "" {
		return domain.ID{}, errors.New(acc.Error)
	}
	return id, nil
}

// accept hands ev to the rule actors at pid and waits for their answer, at
// most acceptTimeout: on this node as it is, to another member encoded.
func (b *backend) accept(pid *actor.PID, ev *domain.Event) (*protocol.EventAccepted, error) {
	if pid.Address != b.n.system.Address() {
		msg, err := protocol.NewEvent(ev)
		if err != nil {
			return nil, fmt.Errorf("encode event: %w", err)
		}
		res, err := b.n.system.Root.RequestFuture(pid, msg, acceptTimeout).Result()
		if err != nil {
			return nil, err
		}
		return res.(*protocol.EventAccepted), nil
	}
	accepted := make(chan *protocol.EventAccepted, 1)
	b.n.system.Root.Send(pid, &rule.LocalEvent{Event: ev, Accepted: accepted})
	timeout := time.NewTimer(acceptTimeout)
	defer timeout.Stop()
	select {
	case acc := <-accepted:
		return acc, nil
	case <-timeout.C:
		return nil, fmt.Errorf("no answer within %s", acceptTimeout)
	}
}

func (b *backend) Run(ctx context.Context, ref string, params map[string]any) (*domain.Execution, error) {
	return b.run(ref, params, domain.ID{})
}

// Rerun runs the action of execution id again, here when the execution is
// this node's and on its owner otherwise: only the owner holds the values
// of its secret parameters, and the new execution is kept beside the one
// it re-runs. params override the original's parameters, one by one.
func (b *backend) Rerun(ctx context.Context, id domain.ID, params map[string]any) (*domain.Execution, error) {
	// The owner's refusal (invalid parameters, overloaded) is the answer:
	// clusterGet passes a member's API error on, and the API answers it.
	return clusterGet(ctx, b, func() (*domain.Execution, error) {
		orig, err := b.n.store.Execution(id)
		if err != nil {
			return nil, err
		}
		merged := maps.Clone(orig.Parameters)
		if merged == nil {
			merged = map[string]any{}
		}
		maps.Copy(merged, params)
		ex, err := b.run(orig.Action, merged, id)
		if errors.Is(err, domain.ErrNotFound) { // the action is gone, not the execution
			err = api.NewError(api.CodeConflict, "execution %s ran action %s, which is no longer installed; install its pack to run it again", id, orig.Action)
		}
		return ex, err
	}, func(ctx context.Context, c *api.Client) (*domain.Execution, error) {
		v, err := c.Rerun(ctx, id.String(), params)
		if err != nil {
			return nil, err
		}
		return v.Execution(), nil
	})
}

// run creates an execution of action ref and starts it; rerunOf, when not
// zero, is the execution it runs again.
func (b *backend) run(ref string, params map[string]any, rerunOf domain.ID) (*domain.Execution, error) {
	if err := b.accepting(); err != nil {
		return nil, err
	}
	if err := b.n.admit("run"); err != nil {
		return nil, err
	}
	action, ok := b.n.packs.live.Action(ref)
	if !ok {
		return nil, fmt.Errorf("action %q: %w", ref, domain.ErrNotFound)
	}
	valid, err := b.n.packs.live.ValidateParams(ref, params)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	ex := &domain.Execution{ID: domain.NewID(now), Action: ref, Runtime: action.Runtime, Status: domain.StatusRequested,
		Parameters: valid, Attempt: 1, Node: b.n.cfg.NodeName, CreatedAt: now, Secret: action.SecretParams(), RerunOf: rerunOf}
	if err := b.n.store.CreateExecution(ex); err != nil {
		return nil, fmt.Errorf("store execution: %w", err)
	}
	b.n.system.Root.Send(b.n.pid(protocol.ExecutionsActor), &protocol.StartExecution{ExecutionId: ex.ID[:]})
	return ex, nil
}

func (b *backend) Execution(ctx context.Context, id domain.ID) (*domain.Execution, []domain.HistoryEntry, error) {
	return b.execution(ctx, id, 0)
}

// WaitExecution waits here when the execution is this node's, and lets its
// owner wait otherwise.
func (b *backend) WaitExecution(ctx context.Context, id domain.ID) (*domain.Execution, []domain.HistoryEntry, error) {
	ex, err := b.n.done.wait(ctx, id, func() (*domain.Execution, error) { return b.n.store.Execution(id) })
	if errors.Is(err, domain.ErrNotFound) {
		return b.execution(ctx, id, time.Until(deadlineOr(ctx, time.Now().Add(api.MaxWait))))
	}
	if err != nil {
		return nil, nil, err
	}
	h, err := b.n.store.History(id)
	if err != nil {
		return nil, nil, err
	}
	return ex, h, nil
}

// Finished streams the executions this node owns as they finish.
func (b *backend) Finished(ctx context.Context, after domain.ID) ([]domain.ID, <-chan *domain.Execution, error) {
	return b.n.done.streams.Subscribe(ctx, after)
}

func deadlineOr(ctx context.Context, def time.Time) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return def
}

type withHistory struct {
	ex *domain.Execution
	h  []domain.HistoryEntry
}

func (b *backend) execution(ctx context.Context, id domain.ID, wait time.Duration) (*domain.Execution, []domain.HistoryEntry, error) {
	r, err := clusterGet(ctx, b, func() (withHistory, error) {
		ex, err := b.n.store.Execution(id)
		if err != nil {
			return withHistory{}, err
		}
		h, err := b.n.store.History(id)
		return withHistory{ex, h}, err
	}, func(ctx context.Context, c *api.Client) (withHistory, error) {
		v, err := c.Execution(ctx, id.String(), wait)
		if err != nil {
			return withHistory{}, err
		}
		return withHistory{v.Execution(), v.History}, nil
	})
	return r.ex, r.h, err
}

func (b *backend) Executions(ctx context.Context, q api.ListQuery) (api.Page[*domain.Execution], error) {
	f := storage.ExecutionFilter{Action: q.Action, Rule: q.Rule, Status: domain.Status(q.Status)}
	if q.Event != "" {
		var err error
		if f.Event, err = domain.ParseID(q.Event); err != nil {
			return api.Page[*domain.Execution]{}, err
		}
	}
	return clusterList(ctx, b, q, func(ex *domain.Execution) domain.ID { return ex.ID },
		func(q api.ListQuery) (api.Page[*domain.Execution], error) {
			return page(q, func(limit int, cursor domain.ID) ([]*domain.Execution, domain.ID, error) {
				return b.n.store.Executions(f, limit, cursor)
			})
		}, func(c *api.Client, ctx context.Context, q api.ListQuery) (api.Page[*domain.Execution], error) {
			p, err := c.Executions(ctx, q)
			out := api.Page[*domain.Execution]{Next: p.Next}
			for _, v := range p.Items {
				out.Items = append(out.Items, v.Execution())
			}
			return out, err
		})
}

func (b *backend) Event(ctx context.Context, id domain.ID) (*domain.Event, error) {
	return clusterGet(ctx, b, func() (*domain.Event, error) { return b.n.store.Event(id) },
		func(ctx context.Context, c *api.Client) (*domain.Event, error) { return c.Event(ctx, id.String()) })
}

func (b *backend) Events(ctx context.Context, q api.ListQuery) (api.Page[*domain.Event], error) {
	return clusterList(ctx, b, q, func(ev *domain.Event) domain.ID { return ev.ID },
		func(q api.ListQuery) (api.Page[*domain.Event], error) {
			return page(q, func(limit int, cursor domain.ID) ([]*domain.Event, domain.ID, error) {
				return b.n.store.Events(storage.EventFilter{Trigger: q.Trigger}, limit, cursor)
			})
		}, (*api.Client).Events)
}

func (b *backend) Enforcement(ctx context.Context, id domain.ID) (*domain.Enforcement, error) {
	return clusterGet(ctx, b, func() (*domain.Enforcement, error) { return b.n.store.Enforcement(id) },
		func(ctx context.Context, c *api.Client) (*domain.Enforcement, error) {
			return c.Enforcement(ctx, id.String())
		})
}

func (b *backend) Enforcements(ctx context.Context, q api.ListQuery) (api.Page[*domain.Enforcement], error) {
	f := storage.EnforcementFilter{Rule: q.Rule}
	if q.Event != "" {
		var err error
		if f.Event, err = domain.ParseID(q.Event); err != nil {
			return api.Page[*domain.Enforcement]{}, err
		}
	}
	return clusterList(ctx, b, q, func(en *domain.Enforcement) domain.ID { return en.ID },
		func(q api.ListQuery) (api.Page[*domain.Enforcement], error) {
			return page(q, func(limit int, cursor domain.ID) ([]*domain.Enforcement, domain.ID, error) {
				return b.n.store.Enforcements(f, limit, cursor)
			})
		}, (*api.Client).Enforcements)
}

func (b *backend) Packs() []*domain.Pack { return b.n.packs.live.Catalog().Packs() }

func (b *backend) PackViews(context.Context) ([]*domain.Pack, error) { return b.n.packViews(), nil }

func (b *backend) InstallPack(_ context.Context, archive []byte) (*domain.Pack, bool, error) {
	return b.n.packs.Install(archive)
}

func (b *backend) RemovePack(_ context.Context, ref string) error { return b.n.packs.Remove(ref) }

// Ready is whether the node takes work, then whether it has joined the
// cluster it was told to be part of. A node none of whose seeds answered
// still takes webhooks and runs (it runs them itself, as a cluster of one),
// but a load balancer should send them to the members that have met each
// other, and a rolling restart should wait for the join.
func (b *backend) Ready() error {
	if err := b.takesWork(); err != nil {
		return err
	}
	if seeds := b.n.gossip.Joining(); len(seeds) > 0 {
		return fmt.Errorf("not yet joined any of its seeds %s; it runs alone meanwhile and keeps trying them",
			strings.Join(seeds, ", "))
	}
	return nil
}

// takesWork is the node's own state first (starting, shutting down), then
// its store's health: a store that cannot take writes makes the node refuse
// webhooks and runs, saying why, before Pebble would fail it.
func (b *backend) takesWork() error {
	if err := b.n.ready.Load(); err != nil {
		return *err
	}
	return b.n.store.Healthy()
}

// page runs one store listing for an API query; cursors are ID text.
func page[T any](q api.ListQuery, list func(int, domain.ID) ([]T, domain.ID, error)) (api.Page[T], error) {
	var cursor domain.ID
	if q.Cursor != "" {
		var err error
		if cursor, err = domain.ParseID(q.Cursor); err != nil {
			return api.Page[T]{}, fmt.Errorf("cursor: %w", err)
		}
	}
	items, next, err := list(q.Limit, cursor)
	if err != nil {
		return api.Page[T]{}, err
	}
	p := api.Page[T]{Items: items}
	if !next.IsZero() {
		p.Next = next.String()
	}
	if p.Items == nil {
		p.Items = []T{}
	}
	return p, nil
}
