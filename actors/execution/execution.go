package execution

import (
	"context"
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
	"github.com/troupehq/troupe/internal/dispatch"
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
	// Locate names an action's script by its pack's content hash and its
	// path in the pack ("", "" for actions without one).
	Locate(a *domain.Action) (packHash, rel string)
}

// Placement picks the worker that should run an execution needing runtime.
// The error is the user-facing reason when no worker can; it wraps
// ErrNoWorker when one may appear later (a member that runs the runtime may
// join), and the execution then waits in requested up to PlacementTimeout.
type Placement interface {
	Worker(runtime string) (*actor.PID, error)
	// Alive reports whether the named member is alive, to tell a worker that
	// is merely slow from one that is gone.
	Alive(node string) bool
}

// ErrNoWorker is wrapped by placement errors that may resolve themselves.
var ErrNoWorker = errors.New("no worker available")

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
	// PlacementTimeout is how long an execution waits in requested for a
	// member that runs its runtime before it fails. Default 60s.
	PlacementTimeout time.Duration
	// GrantTimeout is how long a slot request may go unanswered before it is
	// sent again, possibly to another worker. Default 5s.
	GrantTimeout time.Duration
	Metrics      *metrics.Metrics // default: registered nowhere
	Logger       *slog.Logger
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
	if c.PlacementTimeout <= 0 {
		c.PlacementTimeout = time.Minute
	}
	if c.GrantTimeout <= 0 {
		c.GrantTimeout = 5 * time.Second
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
		return &manager{cfg: cfg, children: map[domain.ID]*actor.PID{}}
	}, actor.WithDispatcher(dispatch.Shared))
}

// manager routes messages to the child of their execution, spawning it on
// demand: a child that already finished, or did not survive a restart, is
// rebuilt from the stored record, so late or re-delivered reports are still
// acknowledged.
type manager struct {
	cfg      Config
	children map[domain.ID]*actor.PID
}

func (m *manager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *protocol.StartExecution:
		m.forward(ctx, msg.ExecutionId)
	case *protocol.SlotGrant:
		m.forward(ctx, msg.ExecutionId)
	case *protocol.Report:
		m.forward(ctx, msg.ExecutionId)
	case *protocol.MemberDown:
		for _, pid := range m.children {
			ctx.Send(pid, msg)
		}
	case childDone:
		// Forget the child before it stops, so that a report arriving from
		// now on reaches a fresh child (which acknowledges it from the
		// record) instead of a stopping one's mailbox.
		if pid, ok := m.children[msg.id]; ok && pid.Equal(ctx.Sender()) {
			delete(m.children, msg.id)
		}
		ctx.Poison(ctx.Sender())
	case *actor.Terminated: // a child stopped; protoactor tells its parent
		name := msg.Who.Id[strings.LastIndexByte(msg.Who.Id, '/')+1:]
		text, _, _ := strings.Cut(name, "$")
		if id, err := domain.ParseID(text); err == nil {
			if pid, ok := m.children[id]; ok && pid.Equal(msg.Who) {
				delete(m.children, id)
			}
		}
	}
}

// childDone travels only from a child whose execution ended to its manager.
type childDone struct{ id domain.ID }

func (m *manager) forward(ctx actor.Context, rawID []byte) {
	id := protocol.ID(rawID)
	if id.IsZero() {
		m.cfg.Logger.Warn("dropping message with a malformed execution id", "type", fmt.Sprintf("%T", ctx.Message()))
		return
	}
	pid, ok := m.children[id]
	if !ok {
		// A unique suffix: the previous child of this execution may still be
		// draining its mailbox under the plain name.
		pid = ctx.SpawnPrefix(actor.PropsFromProducer(func() actor.Actor {
			return &child{cfg: m.cfg, id: id}
		}, actor.WithDispatcher(dispatch.Shared)), id.String()+"$")
		m.children[id] = pid
	}
	ctx.Forward(pid)
}

// backstopExpired fires when a worker has been silent past the action's
// timeout plus the grace; it only ever travels to self.
type backstopExpired struct{ attempt int }

// retryPlacement fires when a slot request went unanswered or no worker
// could be found; it only ever travels to self.
type retryPlacement struct{ attempt int }

type child struct {
	cfg      Config
	id       domain.ID
	ex       *domain.Execution
	logger   *slog.Logger // see log
	backstop scheduler.CancelFunc
	retry    scheduler.CancelFunc
	// waitingSince is when this attempt started looking for a worker.
	waitingSince time.Time
	done         bool // the manager was told the execution ended
}

// log is the child's logger, made on first use: most executions never log,
// and a logger With attributes costs allocations per execution.
func (c *child) log() *slog.Logger {
	if c.logger == nil {
		c.logger = c.cfg.Logger.With("execution", c.id.String())
		if c.ex != nil {
			c.logger = c.logger.With("action", c.ex.Action)
		}
	}
	return c.logger
}

func (c *child) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		ex, err := c.cfg.Store.Execution(c.id)
		if err != nil {
			c.log().Error("load execution", "err", err)
			ctx.Stop(ctx.Self())
			return
		}
		c.ex = ex
	case *actor.Stopping:
		c.disarm()
		return
	case *actor.Stopped, *actor.Restarting:
		return
	case *protocol.StartExecution:
		c.start(ctx)
	case retryPlacement:
		if c.ex != nil && msg.attempt == c.ex.Attempt {
			c.requestSlot(ctx)
		}
	case *protocol.MemberDown:
		c.onMemberDown(ctx, msg)
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
	if c.ex != nil && c.ex.Status.Terminal() && !c.done {
		c.done = true
		ctx.Request(ctx.Parent(), childDone{id: c.id})
	}
}

// start takes over an execution: a requested one looks for a worker; one
// that a worker on another member already runs (this owner restarted) waits
// for that worker's reports, unless that member is gone.
func (c *child) start(ctx actor.Context) {
	switch {
	case c.ex == nil:
	case c.ex.Status == domain.StatusRequested:
		c.requestSlot(ctx)
	case c.ex.Status.Terminal():
	case !c.cfg.Placement.Alive(c.ex.Worker):
		c.abandonLost(ctx, c.ex.Worker, "not a live member")
	default:
		c.armBackstop(ctx)
	}
}

func (c *child) requestSlot(ctx actor.Context) {
	if c.ex == nil || c.ex.Status != domain.StatusRequested {
		return
	}
	if c.waitingSince.IsZero() {
		c.waitingSince = time.Now()
	}
	worker, err := c.cfg.Placement.Worker(c.ex.Runtime)
	if err != nil {
		if errors.Is(err, ErrNoWorker) && time.Since(c.waitingSince) < c.cfg.PlacementTimeout {
			c.later(ctx, time.Second)
			return
		}
		c.cfg.Metrics.PlacementFailures.WithLabelValues(c.ex.Runtime).Inc()
		c.apply(ctx, storage.Transition{Attempt: c.ex.Attempt, To: domain.StatusFailed, At: time.Now(), Error: err.Error()})
		return
	}
	ctx.Send(worker, &protocol.SlotRequest{
		ExecutionId: c.id[:], Attempt: int32(c.ex.Attempt), Runtime: c.ex.Runtime,
		OwnerAddress: ctx.ActorSystem().Address(), OwnerNode: c.cfg.Node,
	})
	// A worker that is busy keeps the request queued and answers later; one
	// that is gone never answers, so ask again (placement may pick another).
	c.later(ctx, c.cfg.GrantTimeout)
}

// retryAfter starts the next attempt once the policy's delay has passed.
func (c *child) retryAfter(ctx actor.Context, a *domain.Action) {
	if c.ex.Status != domain.StatusRequested {
		return // the retry was not committed
	}
	c.cfg.Metrics.Retries.WithLabelValues(a.Ref).Inc()
	c.log().Info("retrying execution", "attempt", c.ex.Attempt, "delay", a.Retry.Delay)
	if c.backstop != nil {
		c.backstop()
	}
	c.waitingSince = time.Time{}
	c.later(ctx, a.Retry.Delay)
}

func (c *child) later(ctx actor.Context, d time.Duration) {
	if c.retry != nil {
		c.retry()
	}
	c.retry = scheduler.NewTimerScheduler(ctx).SendOnce(d, ctx.Self(), retryPlacement{attempt: c.ex.Attempt})
}

func (c *child) disarm() {
	if c.backstop != nil {
		c.backstop()
	}
	if c.retry != nil {
		c.retry()
	}
}

func (c *child) onMemberDown(ctx actor.Context, m *protocol.MemberDown) {
	if c.ex == nil {
		return
	}
	switch c.ex.Status {
	case domain.StatusScheduled, domain.StatusRunning, domain.StatusCanceling:
		if c.ex.Worker == m.Node {
			c.abandonLost(ctx, m.Node, m.Status)
		}
	case domain.StatusRequested:
		c.requestSlot(ctx) // its slot request may have gone to that member
	}
}

// abandonLost ends an execution whose worker member is gone: nobody can
// say whether the action finished, so it must not silently run again.
func (c *child) abandonLost(ctx actor.Context, node, status string) {
	c.apply(ctx, storage.Transition{Attempt: c.ex.Attempt, To: domain.StatusAbandoned, At: time.Now(),
		Error: fmt.Sprintf("worker node %s is %s; the execution was %s there", node, status, c.ex.Status)})
}

func (c *child) armBackstop(ctx actor.Context) {
	timeout := domain.DefaultTimeout
	if a, ok := c.cfg.Catalog.Action(c.ex.Action); ok && a.Timeout > 0 {
		timeout = a.Timeout
	}
	if c.backstop != nil {
		c.backstop()
	}
	c.backstop = scheduler.NewTimerScheduler(ctx).SendOnce(timeout+c.cfg.ReportGrace, ctx.Self(), backstopExpired{attempt: c.ex.Attempt})
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
	hash, rel := c.cfg.Catalog.Locate(action)
	ctx.Send(worker, &protocol.Assign{
		ExecutionId: c.id[:], Attempt: g.Attempt, Action: action.Ref, Runtime: action.Runtime,
		EntryPoint: action.EntryPoint, Cmd: action.Cmd, ParametersJson: params,
		TimeoutMs: action.Timeout.Milliseconds(), OwnerAddress: ctx.ActorSystem().Address(), OwnerNode: c.cfg.Node,
		PackHash: hash, EntryRel: rel,
	})
	if c.retry != nil {
		c.retry()
	}
	c.armBackstop(ctx)
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
	// The ack names the step it answers, not the record's status: a retry
	// turns a reported failure into requested, and the worker must still
	// see its report acknowledged.
	ack := &protocol.ReportAck{ExecutionId: r.ExecutionId, Attempt: r.Attempt}
	if n := len(r.Steps); n > 0 {
		ack.Status = r.Steps[n-1].Status
	}
	if ctx.Sender() != nil {
		ctx.Respond(ack)
	} else {
		ctx.Send(actor.NewPID(r.WorkerAddress, protocol.WorkerActor), ack)
	}
}

// apply commits transitions and reports whether the record is now usable;
// a storage failure leaves c.ex unchanged so nothing acts on an uncommitted
// state. A final status the action's retry policy covers becomes a new
// attempt instead: the failure is kept in the history, not in the status.
func (c *child) apply(ctx actor.Context, ts ...storage.Transition) bool {
	last := &ts[len(ts)-1]
	if a, ok := c.cfg.Catalog.Action(c.ex.Action); ok && last.To.Terminal() && last.Attempt == c.ex.Attempt &&
		a.Retry.Allows(last.To, c.ex.Attempt) && domain.CanTransition(c.ex.Status, domain.StatusRequested) == nil {
		if last.Error == "" {
			last.Error = string(last.To)
		}
		last.Error = fmt.Sprintf("attempt %d %s (%s); retrying", c.ex.Attempt, last.To, last.Error)
		last.To, last.NextAttempt = domain.StatusRequested, true
		defer func() { c.retryAfter(ctx, a) }()
	}
	ex, applied, err := c.cfg.Store.Apply(c.id, ts...)
	if ex != nil {
		c.ex = ex
	}
	if !applied && (err == nil || errors.Is(err, domain.ErrTransition)) {
		c.cfg.Metrics.Duplicates.WithLabelValues("transition").Inc()
	}
	if err != nil && !errors.Is(err, domain.ErrTransition) {
		c.log().Error("apply transition", "to", ts[len(ts)-1].To, "err", err)
		return false
	}
	if err != nil {
		c.log().Debug("transition ignored", "err", err)
	}
	if applied && c.ex.Status.Terminal() {
		// A line per success would be thousands a second under load, and
		// GET /api/v1/stream follows them all; what did not succeed is worth
		// an operator's log.
		level := slog.LevelInfo
		if c.ex.Status == domain.StatusSucceeded {
			level = slog.LevelDebug
		}
		if c.cfg.Logger.Enabled(context.Background(), level) {
			c.log().Log(context.Background(), level, "execution finished", "status", c.ex.Status, "attempt", c.ex.Attempt, "error", c.ex.Error)
		}
		c.cfg.OnTerminal(c.ex)
	}
	return true
}
