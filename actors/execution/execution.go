package execution

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/metrics"
	"github.com/troupehq/troupe/storage"
)

// Store is what execution actors need of storage: read a record and apply
// transitions to it durably.
type Store interface {
	Execution(id domain.ID) (*domain.Execution, error)
	Apply(id domain.ID, ts ...storage.Transition) (*domain.Execution, bool, error)
}

// Catalog resolves an action ref to its current definition at assignment time.
type Catalog interface {
	Action(ref string) (*domain.Action, bool)
}

// Placement picks the worker that should run an execution needing runtime.
// The error is the user-facing reason when no worker can.
type Placement interface {
	Worker(runtime string) (*actor.PID, error)
}

// Config wires the execution actors of one node.
type Config struct {
	// Node is this node's stable name, recorded on transitions it makes.
	Node      string
	Store     Store
	Catalog   Catalog
	Placement Placement
	// OnTerminal is called once a terminal transition has been committed by
	// this node (after the outbox entry exists), to wake the dispatcher.
	OnTerminal func(*domain.Execution)
	// ReportGrace is how long past an action's timeout the owner waits for
	// the worker's final report before it gives the execution up as
	// abandoned. Default 60s.
	ReportGrace time.Duration
	Metrics     *metrics.Metrics // default: registered nowhere
	Logger      *slog.Logger
}

func (c *Config) defaults() {
	if c.ReportGrace <= 0 {
		c.ReportGrace = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = metrics.Discard()
	}
	if c.OnTerminal == nil {
		c.OnTerminal = func(*domain.Execution) {}
	}
}

// Props returns the props of the manager actor; spawn it named
// protocol.ExecutionsActor.
func Props(cfg Config) *actor.Props {
	cfg.defaults()
	return actor.PropsFromProducer(func() actor.Actor {
		return &manager{cfg: cfg, children: map[string]*actor.PID{}}
	})
}

// manager routes messages to the child of their execution, spawning it on
// demand: a child that already finished, or did not survive a restart, is
// rebuilt from the stored record, so late or re-delivered reports are still
// acknowledged.
type manager struct {
	cfg      Config
	children map[string]*actor.PID // by execution ID text
}

func (m *manager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *protocol.StartExecution:
		m.forward(ctx, msg.ExecutionId)
	case *protocol.SlotGrant:
		m.forward(ctx, msg.ExecutionId)
	case *protocol.Report:
		m.forward(ctx, msg.ExecutionId)
	case *actor.Terminated:
		name := msg.Who.Id[strings.LastIndexByte(msg.Who.Id, '/')+1:]
		if pid, ok := m.children[name]; ok && pid.Equal(msg.Who) {
			delete(m.children, name)
		}
	}
}

func (m *manager) forward(ctx actor.Context, rawID []byte) {
	id := protocol.ID(rawID)
	if id.IsZero() {
		m.cfg.Logger.Warn("dropping message with a malformed execution id", "type", fmt.Sprintf("%T", ctx.Message()))
		return
	}
	key := id.String()
	pid, ok := m.children[key]
	if !ok {
		var err error
		pid, err = ctx.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
			return &child{cfg: m.cfg, id: id, log: m.cfg.Logger.With("execution", key)}
		}), key)
		if err != nil {
			m.cfg.Logger.Error("spawn execution actor", "execution", key, "err", err)
			return
		}
		ctx.Watch(pid)
		m.children[key] = pid
	}
	ctx.Forward(pid)
}

// backstopExpired fires when a worker has been silent past the action's
// timeout plus the grace; it only ever travels to self.
type backstopExpired struct{ attempt int }

type child struct {
	cfg      Config
	id       domain.ID
	ex       *domain.Execution
	log      *slog.Logger
	backstop scheduler.CancelFunc
}

func (c *child) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		ex, err := c.cfg.Store.Execution(c.id)
		if err != nil {
			c.log.Error("load execution", "err", err)
			ctx.Stop(ctx.Self())
			return
		}
		c.ex = ex
		c.log = c.log.With("action", ex.Action)
	case *actor.Stopping:
		if c.backstop != nil {
			c.backstop()
		}
		return
	case *actor.Stopped, *actor.Restarting:
		return
	case *protocol.StartExecution:
		c.requestSlot(ctx)
	case *protocol.SlotGrant:
		c.onGrant(ctx, msg)
	case *protocol.Report:
		c.onReport(ctx, msg)
	case backstopExpired:
		if msg.attempt == c.ex.Attempt && !c.ex.Status.Terminal() {
			c.apply(ctx, storage.Transition{Attempt: c.ex.Attempt, To: domain.StatusAbandoned, At: time.Now(),
				Error: fmt.Sprintf("no report from worker %s within %s after the action's timeout", c.ex.Worker, c.cfg.ReportGrace)})
		}
	}
	if c.ex != nil && c.ex.Status.Terminal() {
		// Poison, not Stop: reports already queued behind this message must
		// still be acknowledged.
		ctx.Poison(ctx.Self())
	}
}

func (c *child) requestSlot(ctx actor.Context) {
	if c.ex == nil || c.ex.Status != domain.StatusRequested {
		return
	}
	worker, err := c.cfg.Placement.Worker(c.ex.Runtime)
	if err != nil {
		c.cfg.Metrics.PlacementFailures.WithLabelValues(c.ex.Runtime).Inc()
		c.apply(ctx, storage.Transition{Attempt: c.ex.Attempt, To: domain.StatusFailed, At: time.Now(), Error: err.Error()})
		return
	}
	ctx.Send(worker, &protocol.SlotRequest{
		ExecutionId: c.id[:], Attempt: int32(c.ex.Attempt), Runtime: c.ex.Runtime,
		OwnerAddress: ctx.ActorSystem().Address(),
	})
}

func (c *child) onGrant(ctx actor.Context, g *protocol.SlotGrant) {
	worker := actor.NewPID(g.WorkerAddress, protocol.WorkerActor)
	release := func() { ctx.Send(worker, &protocol.SlotRelease{ExecutionId: g.ExecutionId, Attempt: g.Attempt}) }
	if c.ex == nil || c.ex.Status != domain.StatusRequested || int(g.Attempt) != c.ex.Attempt {
		release() // a stale or duplicate grant: the slot must not leak
		return
	}
	action, ok := c.cfg.Catalog.Action(c.ex.Action)
	if !ok {
		release()
		c.apply(ctx, storage.Transition{Attempt: c.ex.Attempt, To: domain.StatusFailed, At: time.Now(),
			Error: fmt.Sprintf("action %s is no longer loaded", c.ex.Action)})
		return
	}
	params, err := json.Marshal(c.ex.Parameters)
	if err != nil {
		release()
		c.apply(ctx, storage.Transition{Attempt: c.ex.Attempt, To: domain.StatusFailed, At: time.Now(), Error: "encode parameters: " + err.Error()})
		return
	}
	// Recording `scheduled` before the worker hears of it is what makes a
	// crash safe: a record still `requested` was never handed to a worker.
	if !c.apply(ctx, storage.Transition{Attempt: c.ex.Attempt, To: domain.StatusScheduled, At: time.Now(), Node: g.WorkerNode}) ||
		c.ex.Status != domain.StatusScheduled {
		release()
		return
	}
	ctx.Send(worker, &protocol.Assign{
		ExecutionId: c.id[:], Attempt: g.Attempt, Action: action.Ref, Runtime: action.Runtime,
		EntryPoint: action.EntryPoint, Cmd: action.Cmd, ParametersJson: params,
		TimeoutMs: action.Timeout.Milliseconds(), OwnerAddress: ctx.ActorSystem().Address(),
	})
	if action.Timeout > 0 {
		c.backstop = scheduler.NewTimerScheduler(ctx).SendOnce(action.Timeout+c.cfg.ReportGrace, ctx.Self(), backstopExpired{attempt: c.ex.Attempt})
	}
}

func (c *child) onReport(ctx actor.Context, r *protocol.Report) {
	if c.ex == nil {
		return
	}
	ts := make([]storage.Transition, 0, len(r.Steps))
	for _, s := range r.Steps {
		ts = append(ts, storage.Transition{Attempt: int(r.Attempt), To: domain.Status(s.Status),
			At: time.Unix(0, s.AtUnixNano), Node: r.WorkerNode, Error: s.Error, Result: s.Result.Domain()})
	}
	// A report that can no longer apply (the execution ended meanwhile) is
	// still acknowledged, or the worker would resend it forever.
	if !c.apply(ctx, ts...) {
		return // not committed: no ack, so the worker sends it again
	}
	ack := &protocol.ReportAck{ExecutionId: r.ExecutionId, Attempt: r.Attempt, Status: string(c.ex.Status)}
	if ctx.Sender() != nil {
		ctx.Respond(ack)
	} else {
		ctx.Send(actor.NewPID(r.WorkerAddress, protocol.WorkerActor), ack)
	}
}

// apply commits transitions and reports whether the record is now usable;
// a storage failure leaves c.ex unchanged so nothing acts on an uncommitted
// state.
func (c *child) apply(ctx actor.Context, ts ...storage.Transition) bool {
	ex, applied, err := c.cfg.Store.Apply(c.id, ts...)
	if ex != nil {
		c.ex = ex
	}
	if !applied && (err == nil || errors.Is(err, domain.ErrTransition)) {
		c.cfg.Metrics.Duplicates.WithLabelValues("transition").Inc()
	}
	if err != nil && !errors.Is(err, domain.ErrTransition) {
		c.log.Error("apply transition", "to", ts[len(ts)-1].To, "err", err)
		return false
	}
	if err != nil {
		c.log.Debug("transition ignored", "err", err)
	}
	if applied && c.ex.Status.Terminal() {
		c.log.Info("execution finished", "status", c.ex.Status, "attempt", c.ex.Attempt, "error", c.ex.Error)
		c.cfg.OnTerminal(c.ex)
	}
	return true
}
