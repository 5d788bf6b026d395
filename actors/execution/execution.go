package execution

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/internal/dispatch"
	"github.com/troupehq/troupe/metrics"
	"github.com/troupehq/troupe/storage"
)

// Store is what execution actors need of storage: read a record, list the
// unfinished ones and apply
// transitions to it durably.
type Store interface {
	Execution(id domain.ID) (*domain.Execution, error)
	Active() ([]*domain.Execution, error)
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

// Lanes is how many actors share a node's executions. An execution keeps
// its lane for life, so its messages are handled one at a time, in order;
// executions of different lanes commit concurrently and share fsyncs. A lane
// blocks only while a commit syncs; 256 concurrent writers sync ~51,000
// commits/s (DESIGN.md), several times what a node's executions need.
const Lanes = 256

// Props returns the props of the manager actor; spawn it named
// protocol.ExecutionsActor.
func Props(cfg Config) *actor.Props {
	cfg.defaults()
	return actor.PropsFromProducer(func() actor.Actor {
		return &manager{cfg: cfg}
	}, actor.WithDispatcher(dispatch.Shared))
}

// manager routes each message to the lane of its execution. A lane holds
// the live executions that hash to it, one child each, instead of an actor
// per execution: spawning and stopping ten thousand actors a second, with
// their system messages and registry entries, cost ~2.5 % of the node's CPU
// per execution for nothing an execution needs.
type manager struct {
	cfg   Config
	lanes []*actor.PID
}

func (m *manager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		m.lanes = make([]*actor.PID, Lanes)
		for i := range m.lanes {
			var made atomic.Bool
			m.lanes[i] = ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
				// The producer runs again when the lane restarts after a
				// panic, and that lane starts empty.
				return &lane{cfg: m.cfg, index: i, children: map[domain.ID]*child{}, reload: made.Swap(true)}
			}, actor.WithDispatcher(dispatch.Shared)))
		}
	case *protocol.StartExecution:
		m.forward(ctx, msg.ExecutionId)
	case *protocol.SlotGrant:
		m.forward(ctx, msg.ExecutionId)
	case *protocol.Report:
		m.forward(ctx, msg.ExecutionId)
	case *protocol.MemberDown:
		for _, pid := range m.lanes {
			ctx.Send(pid, msg)
		}
	}
}

func (m *manager) forward(ctx actor.Context, rawID []byte) {
	id := protocol.ID(rawID)
	if id.IsZero() {
		m.cfg.Logger.Warn("dropping message with a malformed execution id", "type", fmt.Sprintf("%T", ctx.Message()))
		return
	}
	ctx.Forward(m.lanes[laneOf(id)])
}

// laneOf is the lane of execution id. The last byte is random
// (domain.NewID), so lanes fill evenly.
func laneOf(id domain.ID) int { return int(id[len(id)-1]) % Lanes }

// lane keeps a child per live execution of its share, made on demand: an
// execution that already finished, or whose child did not survive a
// restart, is rebuilt from the stored record, so late or re-delivered
// reports are still acknowledged.
type lane struct {
	cfg      Config
	index    int
	children map[domain.ID]*child
	// reload is set on a lane made again after a panic: it lost its
	// children, with their deadlines, and takes them back from the store.
	reload bool
	// One timer per lane wakes it at its children's earliest deadline:
	// each execution arms a grant timeout and a backstop, and ten thousand
	// runtime timers a second, nearly all stopped before they fire, cost
	// more than scanning a lane's few children when one is due.
	wake   scheduler.CancelFunc
	wakeAt time.Time
}

// wakeUp travels only from a lane's timer to the lane.
type wakeUp struct{}

func (l *lane) Receive(ctx actor.Context) {
	var c *child
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		if l.reload {
			l.reloadShare(ctx)
		}
		return
	case *actor.Stopping:
		l.sleep()
	case *protocol.StartExecution:
		if c = l.child(protocol.ID(msg.ExecutionId)); c != nil {
			c.start(ctx)
		}
	case *protocol.SlotGrant:
		if c = l.child(protocol.ID(msg.ExecutionId)); c != nil {
			c.onGrant(ctx, msg)
		}
	case *protocol.Report:
		if c = l.child(protocol.ID(msg.ExecutionId)); c != nil {
			c.onReport(ctx, msg)
		}
	case wakeUp:
		l.onWakeUp(ctx)
		return
	case *protocol.MemberDown:
		for _, c := range l.children {
			c.onMemberDown(ctx, msg)
			l.settle(c)
		}
		return
	}
	if c != nil {
		l.settle(c)
	}
}

// reloadShare starts again, as a node does at start, every unfinished
// execution of this lane: one waiting for a slot asks again, one with a
// worker gets its backstop back, or is abandoned if the worker is gone.
func (l *lane) reloadShare(ctx actor.Context) {
	active, err := l.cfg.Store.Active()
	if err != nil {
		l.cfg.Logger.Error("restarted execution lane cannot reload its executions; they wait for their next message or the node's restart",
			"lane", l.index, "err", err)
		return
	}
	n := 0
	for _, ex := range active {
		if laneOf(ex.ID) != l.index {
			continue
		}
		if c := l.child(ex.ID); c != nil {
			c.start(ctx)
			l.settle(c)
			n++
		}
	}
	l.cfg.Logger.Warn("execution lane restarted; reloaded its unfinished executions", "lane", l.index, "executions", n)
}

// child returns the child of id, rebuilding it from the record if the lane
// has none, or nil if the execution cannot be loaded.
func (l *lane) child(id domain.ID) *child {
	if c := l.children[id]; c != nil {
		return c
	}
	c := &child{cfg: l.cfg, lane: l, id: id}
	ex, err := l.cfg.Store.Execution(id)
	if err != nil {
		c.log().Error("load execution", "err", err)
		return nil
	}
	c.ex = ex
	l.children[id] = c
	return c
}

// settle forgets c once its execution has ended: a report arriving from
// then on gets a fresh child, which acknowledges it from the record.
func (l *lane) settle(c *child) {
	if c.ex.Status.Terminal() {
		delete(l.children, c.id)
	}
}

// due makes sure the lane wakes up by at.
func (l *lane) due(ctx actor.Context, at time.Time) {
	if l.wake != nil && !at.Before(l.wakeAt) {
		return
	}
	l.sleep()
	l.wake = scheduler.NewTimerScheduler(ctx).SendOnce(time.Until(at), ctx.Self(), wakeUp{})
	l.wakeAt = at
}

func (l *lane) sleep() {
	if l.wake != nil {
		l.wake()
		l.wake = nil
	}
}

// onWakeUp runs what is due and sleeps until the next deadline. A wake-up
// whose timer was replaced just as it fired only rescans.
func (l *lane) onWakeUp(ctx actor.Context) {
	l.sleep()
	now := time.Now()
	for _, c := range l.children {
		if !c.retryAt.IsZero() && !c.retryAt.After(now) {
			c.retryAt = time.Time{}
			c.requestSlot(ctx)
		}
		if !c.backstopAt.IsZero() && !c.backstopAt.After(now) {
			c.backstopAt = time.Time{}
			c.onBackstop(ctx)
		}
		l.settle(c)
	}
	for _, c := range l.children {
		for _, at := range [...]time.Time{c.retryAt, c.backstopAt} {
			if !at.IsZero() {
				l.due(ctx, at)
			}
		}
	}
}

type child struct {
	cfg    Config
	id     domain.ID
	ex     *domain.Execution
	logger *slog.Logger // see log
	lane   *lane
	// backstopAt is when a silent worker is given up; retryAt is when a
	// slot is asked for again. Zero when not armed.
	backstopAt time.Time
	retryAt    time.Time
	// waitingSince is when this attempt started looking for a worker.
	waitingSince time.Time
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

func (c *child) onBackstop(ctx actor.Context) {
	if !c.ex.Status.Terminal() {
		c.apply(ctx, storage.Transition{Attempt: c.ex.Attempt, To: domain.StatusAbandoned, At: time.Now(),
			Error: fmt.Sprintf("no report from worker %s within %s after the action's timeout", c.ex.Worker, c.cfg.ReportGrace)})
	}
}

// start takes over an execution: a requested one looks for a worker; one
// that a worker on another member already runs (this owner restarted) waits
// for that worker's reports, unless that member is gone.
func (c *child) start(ctx actor.Context) {
	switch {
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
	if c.ex.Status != domain.StatusRequested {
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
	c.backstopAt = time.Time{}
	c.waitingSince = time.Time{}
	c.later(ctx, a.Retry.Delay)
}

func (c *child) later(ctx actor.Context, d time.Duration) {
	c.retryAt = time.Now().Add(d)
	c.lane.due(ctx, c.retryAt)
}

func (c *child) onMemberDown(ctx actor.Context, m *protocol.MemberDown) {
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
	c.backstopAt = time.Now().Add(timeout + c.cfg.ReportGrace)
	c.lane.due(ctx, c.backstopAt)
}

func (c *child) onGrant(ctx actor.Context, g *protocol.SlotGrant) {
	worker := actor.NewPID(g.WorkerAddress, protocol.WorkerActor)
	release := func() { ctx.Send(worker, &protocol.SlotRelease{ExecutionId: g.ExecutionId, Attempt: g.Attempt}) }
	if c.ex.Status != domain.StatusRequested || int(g.Attempt) != c.ex.Attempt {
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
	c.retryAt = time.Time{}
	c.armBackstop(ctx)
}

func (c *child) onReport(ctx actor.Context, r *protocol.Report) {
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
