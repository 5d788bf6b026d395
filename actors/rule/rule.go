package rule

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/internal/dispatch"
	"github.com/troupehq/troupe/metrics"
	"github.com/troupehq/troupe/rules"
)

// Store durably accepts an event with everything it caused.
type Store interface {
	AcceptEvent(ev *domain.Event, enfs []*domain.Enforcement, exs []*domain.Execution) error
}

// Catalog validates rendered parameters and names an action's runtime.
type Catalog interface {
	Action(ref string) (*domain.Action, bool)
	ValidateParams(action string, params map[string]any) (map[string]any, error)
}

// Config wires the rule actors of one node.
type Config struct {
	Node    string
	Store   Store
	Catalog Catalog
	// Rules are the compiled enabled rules; disabled rules are not passed.
	Rules []*rules.Compiled
	// Commits bounds how many event batches are being committed at once.
	// Concurrent commits share fsyncs, so throughput needs many; the bound
	// keeps memory flat under overload (the sender waits instead). Default 256.
	Commits int
	// Admit, when set, is asked about each event another member forwards
	// here (events accepted on this node were admitted where they were
	// accepted); an error refuses the event, which is then not stored and
	// is answered with EventAccepted.Overloaded and the error's text. It
	// keeps a member without the rule role from piling webhooks on a rule
	// member past its max_in_flight.
	Admit   func(*domain.Event) error
	Metrics *metrics.Metrics // default: registered nowhere
	Logger  *slog.Logger
}

// Props returns the router's props; spawn it named protocol.RulesActor.
func Props(cfg Config) *actor.Props {
	if cfg.Commits <= 0 {
		cfg.Commits = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.Discard()
	}
	return actor.PropsFromProducer(func() actor.Actor {
		return &router{cfg: cfg, children: map[string]*actor.PID{}}
	})
}

// LocalEvent is an event accepted on this node, handed over as it is. The
// wire form (protocol.Event) carries the payload as JSON, which a local
// sender would encode only for the evaluator to decode again (~4 % of the
// node's CPU under webhook-noop, docs/performance.md); it stays for events
// from other members. Its payload must hold only what encoding/json decodes
// to (map[string]any, []any, string, float64, bool, nil), so that rules see
// the types an event from another member would have. The evaluator takes
// it over: the sender must not use the event afterwards. The answer goes to
// Accepted, which must have room for it so the evaluator never waits: a
// local sender waits on a channel rather than on a protoactor future, which
// is an actor registered, named and timed per request (~1.5 % of the node's
// CPU under webhook-noop).
type LocalEvent struct {
	Event    *domain.Event
	Accepted chan<- *protocol.EventAccepted
}

// SetRules replaces the router's rules, e.g. after a pack install. Events
// already queued are evaluated against the rules they were sent under.
type SetRules struct{ Rules []*rules.Compiled }

type router struct {
	cfg      Config
	children map[string]*actor.PID // by trigger type
	commits  chan struct{}         // shared: the disk is shared
}

func (r *router) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		r.commits = make(chan struct{}, r.cfg.Commits)
		r.spawn(ctx, r.cfg.Rules)
	case *SetRules:
		// Poison, not Stop: an evaluator finishes the events in its mailbox
		// first, so none is dropped by the swap.
		for _, pid := range r.children {
			ctx.Poison(pid)
		}
		r.children = map[string]*actor.PID{}
		r.spawn(ctx, msg.Rules)
	case *protocol.Event:
		r.route(ctx, msg.Trigger)
	case *LocalEvent:
		r.route(ctx, msg.Event.Trigger)
	}
}

// route forwards the message to the evaluator of its trigger type.
func (r *router) route(ctx actor.Context, trigger string) {
	pid, ok := r.children[trigger]
	if !ok {
		pid = r.children[""]
	}
	ctx.Forward(pid)
}

// spawn starts one evaluator per trigger type the rules listen to.
func (r *router) spawn(ctx actor.Context, compiled []*rules.Compiled) {
	byType := map[string]map[string][]*rules.Compiled{} // trigger type → instance → rules
	for _, c := range compiled {
		t := c.Rule.Trigger
		if byType[t.Type] == nil {
			byType[t.Type] = map[string][]*rules.Compiled{}
		}
		inst := domain.TriggerInstance(t.Type, t.Parameters)
		byType[t.Type][inst] = append(byType[t.Type][inst], c)
	}
	for typ, rs := range byType {
		e := &evaluator{cfg: r.cfg, byInstance: rs, commits: r.commits, log: r.cfg.Logger.With("trigger", typ)}
		r.children[typ] = ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return e }, actor.WithDispatcher(dispatch.Shared)))
	}
	// Events of trigger types no rule listens to are still stored.
	r.children[""] = ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &evaluator{cfg: r.cfg, commits: r.commits, log: r.cfg.Logger}
	}, actor.WithDispatcher(dispatch.Shared)))
}

type evaluator struct {
	cfg        Config
	byInstance map[string][]*rules.Compiled
	commits    chan struct{}
	log        *slog.Logger
}

func (e *evaluator) Receive(ctx actor.Context) {
	var ev *domain.Event
	var accepted chan<- *protocol.EventAccepted
	switch msg := ctx.Message().(type) {
	case *LocalEvent:
		ev, accepted = msg.Event, msg.Accepted
	case *protocol.Event:
		var err error
		if ev, err = msg.Domain(); err != nil || ev.ID.IsZero() {
			if ctx.Sender() != nil {
				ctx.Respond(&protocol.EventAccepted{Id: msg.Id, Error: fmt.Sprintf("malformed event: %v", err)})
			}
			return
		}
		if e.cfg.Admit != nil {
			if err := e.cfg.Admit(ev); err != nil {
				if ctx.Sender() != nil {
					ctx.Respond(&protocol.EventAccepted{Id: msg.Id, Overloaded: true, Error: err.Error()})
				}
				return
			}
		}
	default:
		return
	}
	ev.Node = e.cfg.Node
	enfs, exs := e.evaluate(ev)
	sender, root, executions := ctx.Sender(), ctx.ActorSystem().Root, actor.NewPID(ctx.ActorSystem().Address(), protocol.ExecutionsActor)
	// The commit runs beside the actor so that many events' batches are in
	// Pebble's commit pipeline at once and share fsyncs; the semaphore is
	// acquired here, so a saturated disk slows the senders down.
	e.commits <- struct{}{}
	dispatch.Shared.Go(func() {
		defer func() { <-e.commits }()
		err := e.cfg.Store.AcceptEvent(ev, enfs, exs)
		ack := &protocol.EventAccepted{Id: ev.ID[:], Executions: int32(len(exs))}
		switch {
		case errors.Is(err, domain.ErrDuplicate):
			ack.Duplicate, ack.Executions = true, 0
			e.cfg.Metrics.Duplicates.WithLabelValues("event").Inc()
		case err != nil:
			e.log.Error("store event", "event", ev.ID, "err", err)
			ack.Error, ack.Executions = "store event: "+err.Error(), 0
		default:
			e.cfg.Metrics.EventsIngested.WithLabelValues(ev.Trigger).Inc()
			for _, enf := range enfs {
				e.cfg.Metrics.Enforcements.WithLabelValues(enf.Rule, string(enf.Status)).Inc()
			}
			for _, ex := range exs {
				root.Send(executions, &protocol.StartExecution{ExecutionId: ex.ID[:]})
			}
		}
		switch {
		case accepted != nil:
			accepted <- ack
		case sender != nil:
			root.Send(sender, ack)
		}
	})
}

// evaluate applies every rule of the event's trigger instance. A rule that
// matches but cannot produce valid parameters yields a failed enforcement
// carrying the reason, never a crash and never a silent drop.
func (e *evaluator) evaluate(ev *domain.Event) ([]*domain.Enforcement, []*domain.Execution) {
	var enfs []*domain.Enforcement
	var exs []*domain.Execution
	scope := map[string]any{"trigger": ev.Payload}
	now := time.Now().UTC()
	for _, c := range e.byInstance[ev.Instance] {
		r := c.Rule
		ok, err := c.Match(scope)
		if err != nil {
			e.cfg.Metrics.RuleEvaluations.WithLabelValues(r.Ref, "error").Inc()
			e.log.Warn("rule evaluation failed", "rule", r.Ref, "event", ev.ID, "err", err)
			continue
		}
		if !ok {
			e.cfg.Metrics.RuleEvaluations.WithLabelValues(r.Ref, "unmatched").Inc()
			continue
		}
		e.cfg.Metrics.RuleEvaluations.WithLabelValues(r.Ref, "matched").Inc()
		enf := &domain.Enforcement{ID: domain.EnforcementID(ev.ID, r.Ref), Event: ev.ID, Rule: r.Ref,
			Action: r.Action.Ref, Status: domain.EnforcementSucceeded, Node: e.cfg.Node, CreatedAt: now}
		enfs = append(enfs, enf)
		ex, err := e.execution(c, enf, scope, now)
		if err != nil {
			enf.Status, enf.Error = domain.EnforcementFailed, err.Error()
			e.log.Warn("enforcement failed", "rule", r.Ref, "event", ev.ID, "err", err)
			continue
		}
		enf.Execution = ex.ID
		exs = append(exs, ex)
	}
	return enfs, exs
}

func (e *evaluator) execution(c *rules.Compiled, enf *domain.Enforcement, scope map[string]any, now time.Time) (*domain.Execution, error) {
	action, ok := e.cfg.Catalog.Action(c.Rule.Action.Ref)
	if !ok {
		return nil, fmt.Errorf("action %s is not loaded", c.Rule.Action.Ref)
	}
	rendered, err := c.Render(scope)
	if err != nil {
		return nil, fmt.Errorf("render parameters: %w", err)
	}
	params, err := e.cfg.Catalog.ValidateParams(action.Ref, rendered)
	if err != nil {
		return nil, err
	}
	return &domain.Execution{
		ID: domain.ExecutionIDFor(enf.ID), Action: action.Ref, Runtime: action.Runtime,
		Status: domain.StatusRequested, Parameters: params, Attempt: 1, Rule: c.Rule.Ref,
		Event: enf.Event, Enforcement: enf.ID, Node: e.cfg.Node, CreatedAt: now, Secret: action.SecretParams(),
	}, nil
}
