// Package apitest provides Backend, an in-memory api.Backend for testing the
// HTTP layer and its clients without a node behind them.
package apitest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// Backend keeps records in maps. Records are never modified in place — a
// transition stores a new copy — so what it returns is safe to read while
// tests move executions along.
type Backend struct {
	// Node is recorded as the owner of everything Backend creates.
	Node string
	// Unreachable, when set, marks every page partial, naming these nodes.
	Unreachable []string
	// Err, when set, is returned by every method that can fail.
	Err error
	// OnRun, when set, is called after Run has stored a new execution.
	OnRun func(id domain.ID)
	// Waiting, when set, receives (without blocking) the ID of each
	// WaitExecution about to block, so a test can act once a poll is held.
	Waiting chan domain.ID
	// Installed holds every archive InstallPack was given.
	Installed [][]byte

	mu           sync.Mutex
	packs        []*domain.Pack
	ready        error
	executions   map[domain.ID]execution
	events       map[domain.ID]*domain.Event
	enforcements map[domain.ID]*domain.Enforcement
	changed      chan struct{} // closed and replaced on every transition
	streams      api.Fanout
}

type execution struct {
	e *domain.Execution
	h []domain.HistoryEntry
}

var _ api.Backend = (*Backend)(nil)

// New returns a ready Backend serving packs.
func New(packs ...*domain.Pack) *Backend {
	return &Backend{
		Node: "test", packs: packs,
		executions:   map[domain.ID]execution{},
		events:       map[domain.ID]*domain.Event{},
		enforcements: map[domain.ID]*domain.Enforcement{},
		changed:      make(chan struct{}),
	}
}

// SetReady sets what Ready returns.
func (b *Backend) SetReady(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ready = err
}

// AddExecution stores e as it is, with its history.
func (b *Backend) AddExecution(e *domain.Execution, history ...domain.HistoryEntry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.executions[e.ID] = execution{e, slices.Clip(history)}
}

// AddEvent stores ev.
func (b *Backend) AddEvent(ev *domain.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events[ev.ID] = ev
}

// AddEnforcement stores en.
func (b *Backend) AddEnforcement(en *domain.Enforcement) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.enforcements[en.ID] = en
}

// Transition moves execution id to status as the pipeline would, checking
// the state machine, and wakes its waiters and, at a terminal status, its
// streams; result is stored when non-nil.
func (b *Backend) Transition(id domain.ID, to domain.Status, result *domain.Result) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	x, ok := b.executions[id]
	if !ok {
		return fmt.Errorf("execution %s: %w", id, domain.ErrNotFound)
	}
	if err := domain.CanTransition(x.e.Status, to); err != nil {
		return err
	}
	now := time.Now()
	e := *x.e
	e.Status, e.Seq = to, e.Seq+1
	switch {
	case to == domain.StatusRunning:
		e.StartedAt, e.Worker = &now, b.Node
	case to.Terminal():
		e.FinishedAt = &now
	}
	if result != nil {
		e.Result = result
	}
	b.executions[id] = execution{&e, append(x.h, domain.HistoryEntry{Status: to, At: now, Attempt: e.Attempt, Seq: e.Seq, Node: b.Node})}
	close(b.changed)
	b.changed = make(chan struct{})
	if to.Terminal() {
		b.streams.Publish(&e)
	}
	return nil
}

// Webhook accepts an event when an enabled rule on core.webhook has
// parameter url equal to name, as StackStorm's webhooks do.
func (b *Backend) Webhook(_ context.Context, name string, headers map[string]string, body any) (domain.ID, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Err != nil {
		return domain.ID{}, b.Err
	}
	for _, p := range b.packs {
		for _, r := range p.Rules {
			if r.Enabled && r.Trigger.Type == "core.webhook" && r.Trigger.Parameters["url"] == name {
				now := time.Now()
				ev := &domain.Event{
					ID: domain.NewID(now), Trigger: r.Trigger.Type,
					Instance: domain.TriggerInstance(r.Trigger.Type, r.Trigger.Parameters),
					Payload:  map[string]any{"headers": headers, "body": body},
					Source:   "webhook " + name, Node: b.Node, CreatedAt: now,
				}
				b.events[ev.ID] = ev
				return ev.ID, nil
			}
		}
	}
	return domain.ID{}, fmt.Errorf("no enabled rule listens on webhook %q: %w", name, domain.ErrNotFound)
}

// Run checks params against the action's declared parameters (known,
// required, defaults) and stores a requested execution.
func (b *Backend) Run(_ context.Context, ref string, params map[string]any) (*domain.Execution, error) {
	return b.run(func() (string, map[string]any, domain.ID, error) { return ref, params, domain.ID{}, nil })
}

// Rerun creates an execution of id's action with its parameters, params
// overriding them.
func (b *Backend) Rerun(_ context.Context, id domain.ID, params map[string]any) (*domain.Execution, error) {
	return b.run(func() (string, map[string]any, domain.ID, error) {
		x, ok := b.executions[id]
		if !ok {
			return "", nil, id, fmt.Errorf("execution %s: %w", id, domain.ErrNotFound)
		}
		merged := maps.Clone(x.e.Parameters)
		maps.Copy(merged, params)
		return x.e.Action, merged, id, nil
	})
}

// run creates the execution what describes, with b.mu held, then tells OnRun.
func (b *Backend) run(what func() (ref string, params map[string]any, rerunOf domain.ID, err error)) (*domain.Execution, error) {
	b.mu.Lock()
	if b.Err != nil {
		b.mu.Unlock()
		return nil, b.Err
	}
	ref, params, rerunOf, err := what()
	var e *domain.Execution
	if err == nil {
		e, err = b.create(ref, params, rerunOf)
	}
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if b.OnRun != nil {
		b.OnRun(e.ID)
	}
	return e, nil
}

func (b *Backend) create(ref string, params map[string]any, rerunOf domain.ID) (*domain.Execution, error) {
	a := b.action(ref)
	if a == nil {
		return nil, fmt.Errorf("action %q: %w", ref, domain.ErrNotFound)
	}
	for name := range params {
		if a.Parameters[name] == nil {
			return nil, &domain.ParamError{Action: ref, Param: name, Reason: "unknown parameter"}
		}
	}
	vals := maps.Clone(params)
	for _, name := range a.ParamOrder {
		p := a.Parameters[name]
		if _, ok := vals[name]; !ok && p.Default != nil {
			vals[name] = p.Default
		} else if !ok && p.Required {
			return nil, &domain.ParamError{Action: ref, Param: name, Reason: "required"}
		}
	}
	now := time.Now()
	e := &domain.Execution{
		ID: domain.NewID(now), Action: ref, Runtime: a.Runtime, Status: domain.StatusRequested,
		Parameters: vals, Attempt: 1, Seq: 1, Node: b.Node, CreatedAt: now, Secret: a.SecretParams(), RerunOf: rerunOf,
	}
	b.executions[e.ID] = execution{e, []domain.HistoryEntry{{Status: e.Status, At: now, Attempt: 1, Seq: 1, Node: b.Node}}}
	return e, nil
}

func (b *Backend) action(ref string) *domain.Action {
	for _, p := range b.packs {
		for _, a := range p.Actions {
			if a.Ref == ref {
				return a
			}
		}
	}
	return nil
}

func (b *Backend) Execution(_ context.Context, id domain.ID) (*domain.Execution, []domain.HistoryEntry, error) {
	x, _, err := b.execution(id)
	return x.e, x.h, err
}

func (b *Backend) execution(id domain.ID) (execution, <-chan struct{}, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Err != nil {
		return execution{}, nil, b.Err
	}
	x, ok := b.executions[id]
	if !ok {
		return x, nil, fmt.Errorf("execution %s: %w", id, domain.ErrNotFound)
	}
	return x, b.changed, nil
}

func (b *Backend) WaitExecution(ctx context.Context, id domain.ID) (*domain.Execution, []domain.HistoryEntry, error) {
	for {
		x, changed, err := b.execution(id)
		if err != nil || x.e.Status.Terminal() {
			return x.e, x.h, err
		}
		select {
		case b.Waiting <- id:
		default:
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return x.e, x.h, nil
		}
	}
}

// Output waits until the execution is terminal, then gives what its
// result kept past from, a piece per stream: it has no runs to follow live.
func (b *Backend) Output(ctx context.Context, id domain.ID, from api.OutputFrom, fn func(string, []byte) error) (*domain.Execution, error) {
	e, _, err := b.WaitExecution(ctx, id)
	if err != nil || !e.Status.Terminal() {
		return nil, cmp.Or(err, ctx.Err())
	}
	return e, api.SendKept(e.Result, from, fn)
}

func (b *Backend) Finished(ctx context.Context, after domain.ID) ([]domain.ID, <-chan *domain.Execution, error) {
	return b.streams.Subscribe(ctx, after)
}

func (b *Backend) Executions(_ context.Context, q api.ListQuery) (api.Page[*domain.Execution], error) {
	return page(b, b.executions, q, func(x execution) (*domain.Execution, bool) {
		return x.e, match(q.Action, x.e.Action) && match(q.Status, string(x.e.Status)) && match(q.Rule, x.e.Rule)
	})
}

func (b *Backend) Event(_ context.Context, id domain.ID) (*domain.Event, error) {
	return lookup(b, b.events, id, "event")
}

func (b *Backend) Events(_ context.Context, q api.ListQuery) (api.Page[*domain.Event], error) {
	return page(b, b.events, q, func(ev *domain.Event) (*domain.Event, bool) {
		return ev, match(q.Trigger, ev.Trigger)
	})
}

func (b *Backend) Enforcement(_ context.Context, id domain.ID) (*domain.Enforcement, error) {
	return lookup(b, b.enforcements, id, "enforcement")
}

func (b *Backend) Enforcements(_ context.Context, q api.ListQuery) (api.Page[*domain.Enforcement], error) {
	return page(b, b.enforcements, q, func(en *domain.Enforcement) (*domain.Enforcement, bool) {
		return en, match(q.Rule, en.Rule) && match(q.Event, en.Event.String())
	})
}

func (b *Backend) Packs() []*domain.Pack {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.packs)
}

// PackViews shows every pack held by this one test node.
func (b *Backend) PackViews(context.Context) ([]*domain.Pack, error) {
	var out []*domain.Pack
	for _, p := range b.Packs() {
		v := *p
		v.Members = []domain.PackMember{{Node: b.Node, Version: p.Version, Hash: p.Hash, State: "same"}}
		out = append(out, &v)
	}
	return out, b.Err
}

// InstallPack takes any archive as pack "uploaded", whose hash is the
// archive's; Installed records the archives it was given.
func (b *Backend) InstallPack(_ context.Context, archive []byte) (*domain.Pack, bool, error) {
	if b.Err != nil {
		return nil, false, b.Err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.Installed = append(b.Installed, archive)
	sum := sha256.Sum256(archive)
	p := &domain.Pack{Ref: "uploaded", Version: "1", Hash: hex.EncodeToString(sum[:]), Source: "api"}
	for i, old := range b.packs {
		if old.Ref == p.Ref {
			b.packs[i] = p
			return p, old.Hash != p.Hash, nil
		}
	}
	b.packs = append(b.packs, p)
	return p, true, nil
}

// RemovePack removes a pack by ref.
func (b *Backend) RemovePack(_ context.Context, ref string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, p := range b.packs {
		if p.Ref == ref {
			b.packs = slices.Delete(b.packs, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("pack %q: %w", ref, domain.ErrNotFound)
}

// Members answers a cluster of one: this test node.
func (b *Backend) Members(context.Context) ([]api.MemberView, error) {
	return []api.MemberView{{Name: "test", Status: "alive", Roles: []string{"api", "rule", "sensor", "worker"},
		Runtimes: []string{"shell"}, Slots: 2, SlotsFree: 2, Self: true}}, nil
}

func (b *Backend) Ready() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ready
}

func match(filter, v string) bool { return filter == "" || filter == v }

func lookup[T any](b *Backend, m map[domain.ID]T, id domain.ID, kind string) (T, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := m[id]
	switch {
	case b.Err != nil:
		return v, b.Err
	case !ok:
		return v, fmt.Errorf("%s %s: %w", kind, id, domain.ErrNotFound)
	}
	return v, nil
}

// page lists m newest first, as a node does, resuming after the cursor ID.
func page[S, T any](b *Backend, m map[domain.ID]S, q api.ListQuery, keep func(S) (T, bool)) (api.Page[T], error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := api.Page[T]{Partial: len(b.Unreachable) > 0, Unreachable: b.Unreachable}
	if b.Err != nil {
		return p, b.Err
	}
	var cursor domain.ID
	if q.Cursor != "" {
		var err error
		if cursor, err = domain.ParseID(q.Cursor); err != nil {
			return p, err
		}
	}
	var last domain.ID
	for _, id := range slices.SortedFunc(maps.Keys(m), func(a, b domain.ID) int { return bytes.Compare(b[:], a[:]) }) {
		if !cursor.IsZero() && bytes.Compare(id[:], cursor[:]) >= 0 {
			continue
		}
		if v, ok := keep(m[id]); ok {
			if q.Limit > 0 && len(p.Items) == q.Limit {
				p.Next = last.String()
				break
			}
			p.Items, last = append(p.Items, v), id
		}
	}
	return p, nil
}

// Serve serves b's API with the default configuration on a test HTTP
// server that is closed when the test ends; wrap, when not nil, wraps the
// API's handler (to break a route, say).
func Serve(t testing.TB, b *Backend, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	s, err := api.NewServer(api.DefaultConfig(), b, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Handler(s)
	if wrap != nil {
		h = wrap(s)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs
}
