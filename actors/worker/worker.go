package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/internal/dispatch"
	"github.com/troupehq/troupe/metrics"
	"github.com/troupehq/troupe/runtimes"
)

// Runtimes resolves a runtime by name.
type Runtimes interface {
	Get(name string) (runtimes.Runtime, error)
}

// Config wires a node's worker.
type Config struct {
	// Node is this node's stable name, reported as the worker of its runs.
	Node string
	// Slots is how many executions of process runtimes (shell, python, …)
	// run at once. Default 8× CPUs (set by the caller).
	Slots int
	// BuiltinSlots is how many builtin (in-process Go) actions run at once;
	// they cost a goroutine, not a process, so they have their own, larger
	// pool and never queue behind scripts. Default 256.
	BuiltinSlots int
	// RunningDelay is how long a run may go before its `running` report is
	// sent; a run that ends sooner reports running and its end together,
	// with the times each happened, which saves the owner a durable commit.
	// Default 100ms: short enough that nobody watching sees the difference,
	// long enough to cover the short scripts of a busy node, whose wall
	// time stretches to tens of ms as they wait for a core (at 5ms nearly
	// every webhook-shell run paid the extra commit: 5% of the node's CPU).
	// Scheduled and running are alike to recovery: either is abandoned if
	// the worker's node is lost.
	RunningDelay time.Duration
	Runtimes     Runtimes
	// Live, when set, holds the output of every process run in progress,
	// for `troupe execution tail` to follow. Builtin actions print nothing.
	Live *runtimes.Live
	// GrantLease is how long a granted slot waits for its assignment before
	// it is taken back (the owner may have died). Default 30s.
	GrantLease time.Duration
	// Resend is how often unacknowledged reports are sent again. Default 1s.
	Resend time.Duration
	// Remember is how long a finished, acknowledged attempt is remembered
	// for deduplication. Default 2m.
	Remember time.Duration
	// RememberMax bounds how many such attempts are remembered, the oldest
	// forgotten first, so that memory does not grow with the rate: two
	// minutes at 10,000 executions/s would be 1.2 million (~85 MB). A
	// forgotten attempt is still safe: a late slot request for it is
	// granted and released by its owner, and a late assignment without a
	// grant is refused. Default 250,000 (~20 MB).
	RememberMax int
	// GiveUp is how long a final report is resent without acknowledgement
	// before the worker forgets it (its owner has been gone that long; on
	// its return it gives the execution up by its own backstop). Default 10m.
	GiveUp time.Duration
	// Resolve returns the current actor address of a node by name, "" when
	// unknown. Reports go to the owner's current address, so an owner that
	// restarted elsewhere still gets them. Default: the address the request
	// came from.
	Resolve func(node string) string
	// Locate finds a script in this member's own copy of the pack with the
	// given content hash, waiting a little for a pack that is still on its
	// way. Default: run the owner's entry point path as it is (one node).
	Locate  func(ctx context.Context, packHash, rel string) (string, error)
	Metrics *metrics.Metrics // default: registered nowhere
	Logger  *slog.Logger
}

func (c *Config) defaults() {
	if c.Slots <= 0 {
		c.Slots = 1
	}
	if c.BuiltinSlots <= 0 {
		c.BuiltinSlots = 256
	}
	if c.RunningDelay <= 0 {
		c.RunningDelay = 100 * time.Millisecond
	}
	if c.GrantLease <= 0 {
		c.GrantLease = 30 * time.Second
	}
	if c.Resend <= 0 {
		c.Resend = time.Second
	}
	if c.Remember <= 0 {
		c.Remember = 2 * time.Minute
	}
	if c.RememberMax <= 0 {
		c.RememberMax = 250_000
	}
	if c.GiveUp <= 0 {
		c.GiveUp = 10 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = metrics.Discard()
	}
}

// Props returns the worker's props; spawn it named protocol.WorkerActor.
func Props(cfg Config) *actor.Props {
	cfg.defaults()
	return actor.PropsFromProducer(func() actor.Actor {
		return &worker{cfg: cfg, seen: map[key]*attempt{}, retired: map[key]retired{},
			process: &pool{slots: cfg.Slots}, builtin: &pool{slots: cfg.BuiltinSlots}}
	}, actor.WithDispatcher(dispatch.Shared))
}

// Drain asks the worker to stop every run (the node is shutting down) and
// to answer once each stopped run's report has been acknowledged. It is a
// node-local request from the composition root, never sent across nodes.
type Drain struct{}

// Drained answers Drain.
type Drained struct{}

// Stats asks for slot usage (node-local); answered with SlotStats.
type Stats struct{}

// SlotStats is the worker's current load.
type SlotStats struct{ Used, Free, Queued int }

type key struct {
	id      domain.ID
	attempt int32
}

type phase int

const (
	granted phase = iota
	running
	done
)

// pool is a set of slots with its own first-come-first-served queue.
type pool struct {
	slots, used int
	queue       []*protocol.SlotRequest
}

type attempt struct {
	key       key
	phase     phase
	pool      *pool
	ownerNode string
	since     time.Time
	owner     *actor.PID // the owning node's execution manager
	cancel    context.CancelFunc
	announce  *time.Timer      // sends announce after RunningDelay
	report    *protocol.Report // the latest report, cumulative
	acked     bool
	sentAt    time.Time
	startedAt time.Time
}

// announce travels only from a run's RunningDelay timer to its worker.
type announce struct{ key key }

// finished travels only from a run's goroutine to its own worker.
type finished struct {
	key     key
	outcome runtimes.Outcome
	at      time.Time
}

type tick struct{}

// retired is free of pointers, so that the garbage collector skips the
// hundreds of thousands that a busy worker remembers instead of scanning
// them on every cycle.
type retired struct {
	status uint8 // index in domain.Statuses
	at     int64 // Unix nanoseconds
}

type worker struct {
	cfg     Config
	addr    string // this node's actor address, for reports
	process *pool
	builtin *pool
	seen    map[key]*attempt
	// retired holds attempts whose final report the owner acknowledged, in
	// retiredOrder (oldest first) until Remember has passed: only what
	// answering a late duplicate takes. Whole attempts (report, output,
	// PIDs) kept for minutes grew a busy node's heap by hundreds of MiB, and
	// scanning them every tick cost CPU that grew with the rate.
	retired      map[key]retired
	retiredOrder []key
	draining     bool
	drainers     []*actor.PID
	stopTick     scheduler.CancelFunc
}

func (w *worker) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		w.addr = ctx.ActorSystem().Address()
		w.stopTick = scheduler.NewTimerScheduler(ctx).SendRepeatedly(w.cfg.Resend, w.cfg.Resend, ctx.Self(), tick{})
	case *actor.Stopping:
		w.stopTick()
		for _, a := range w.seen {
			if a.cancel != nil {
				a.cancel()
			}
		}
	case *protocol.SlotRequest:
		w.onSlotRequest(ctx, msg)
	case *protocol.SlotRelease:
		k := key{protocol.ID(msg.ExecutionId), msg.Attempt}
		if a := w.seen[k]; a != nil && a.phase == granted {
			delete(w.seen, k)
			w.freeSlot(ctx, a.pool)
		}
	case announce:
		if a := w.seen[msg.key]; a != nil && a.phase == running && a.report == nil {
			w.send(ctx, a)
		}
	case *protocol.Assign:
		w.onAssign(ctx, msg)
	case finished:
		w.onFinished(ctx, msg)
	case *protocol.ReportAck:
		a := w.seen[key{protocol.ID(msg.ExecutionId), msg.Attempt}]
		if a != nil && a.report != nil && lastStatus(a.report) == msg.Status {
			a.acked = true
			if a.phase == done {
				w.retire(a)
			}
		}
		w.answerDrainers(ctx)
	case tick:
		w.onTick(ctx)
		w.gauge()
	case *Drain:
		w.draining = true
		w.process.queue, w.builtin.queue = nil, nil
		w.drainers = append(w.drainers, ctx.Sender())
		for _, a := range w.seen {
			if a.cancel != nil {
				a.cancel()
			}
		}
		w.answerDrainers(ctx)
	case *Stats:
		ctx.Respond(&SlotStats{Used: w.process.used, Free: w.process.slots - w.process.used,
			Queued: len(w.process.queue) + len(w.builtin.queue)})
	}
}

func (w *worker) onSlotRequest(ctx actor.Context, r *protocol.SlotRequest) {
	k := key{protocol.ID(r.ExecutionId), r.Attempt}
	if w.replay(ctx, k, r.OwnerAddress, "slot_request") {
		return
	}
	if a := w.seen[k]; a != nil {
		// A repeated request is answered with where the attempt is now.
		w.cfg.Metrics.Duplicates.WithLabelValues("slot_request").Inc()
		switch a.phase {
		case granted:
			w.grant(ctx, r, a)
		default:
			w.send(ctx, a)
		}
		return
	}
	if w.draining {
		return // the owner will see this node leave and re-place the execution
	}
	p := w.process
	if r.Runtime == "builtin" {
		p = w.builtin
	}
	for _, q := range p.queue {
		if protocol.ID(q.ExecutionId) == k.id && q.Attempt == k.attempt {
			return
		}
	}
	if p.used >= p.slots {
		p.queue = append(p.queue, r)
		return
	}
	p.used++
	a := &attempt{key: k, phase: granted, pool: p, since: time.Now(), ownerNode: r.OwnerNode,
		owner: actor.NewPID(r.OwnerAddress, protocol.ExecutionsActor)}
	w.seen[k] = a
	w.grant(ctx, r, a)
}

func (w *worker) grant(ctx actor.Context, r *protocol.SlotRequest, a *attempt) {
	ctx.Send(a.owner, &protocol.SlotGrant{ExecutionId: r.ExecutionId, Attempt: r.Attempt,
		WorkerNode: w.cfg.Node, WorkerAddress: ctx.ActorSystem().Address()})
}

// freeSlot gives a slot of p back and hands it to p's oldest waiting request.
func (w *worker) freeSlot(ctx actor.Context, p *pool) {
	p.used--
	for len(p.queue) > 0 && p.used < p.slots {
		next := p.queue[0]
		p.queue = p.queue[1:]
		w.onSlotRequest(ctx, next)
	}
}

func (w *worker) onAssign(ctx actor.Context, m *protocol.Assign) {
	k := key{protocol.ID(m.ExecutionId), m.Attempt}
	if w.replay(ctx, k, m.OwnerAddress, "assignment") {
		return
	}
	a := w.seen[k]
	switch {
	case a == nil:
		// Not granted here (this worker restarted since, or the grant
		// lapsed): running it could run it twice, so refuse explicitly.
		a = &attempt{key: k, phase: done, since: time.Now(), ownerNode: m.OwnerNode, owner: actor.NewPID(m.OwnerAddress, protocol.ExecutionsActor)}
		w.seen[k] = a
		a.report = w.newReport(m.ExecutionId, m.Attempt,
			protocol.NewStep(domain.StatusAbandoned, time.Now(), fmt.Sprintf("worker %s holds no slot for this assignment (restarted or lease expired)", w.cfg.Node), nil))
		w.send(ctx, a)
		return
	case a.phase != granted:
		w.cfg.Metrics.Duplicates.WithLabelValues("assignment").Inc()
		w.send(ctx, a) // duplicate assignment: never a second run
		return
	case w.draining:
		// Granted before the drain began: starting it now would outlive it.
		a.phase, a.since = done, time.Now()
		a.report = w.newReport(m.ExecutionId, m.Attempt, protocol.NewStep(domain.StatusAbandoned, time.Now(),
			fmt.Sprintf("worker %s is shutting down", w.cfg.Node), nil))
		w.send(ctx, a)
		w.freeSlot(ctx, a.pool)
		return
	}
	rt, err := w.cfg.Runtimes.Get(m.Runtime)
	now := time.Now()
	a.phase, a.startedAt = running, now
	if err != nil {
		w.onFinished(ctx, finished{key: k, at: now, outcome: runtimes.Outcome{Status: domain.StatusFailed, Error: err.Error()}})
		return
	}
	var params map[string]any
	if err := json.Unmarshal(m.ParametersJson, &params); err != nil {
		w.onFinished(ctx, finished{key: k, at: now, outcome: runtimes.Outcome{Status: domain.StatusFailed, Error: "decode parameters: " + err.Error()}})
		return
	}
	runCtx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.announce = time.AfterFunc(w.cfg.RunningDelay, func() { root.Send(self, announce{key: k}) })
	req := runtimes.Request{ExecutionID: k.id.String(), Action: m.Action, EntryPoint: m.EntryPoint, Cmd: m.Cmd,
		Parameters: params, Timeout: time.Duration(m.TimeoutMs) * time.Millisecond}
	if w.cfg.Live != nil && a.pool == w.process {
		req.Output = w.cfg.Live.Start(req.ExecutionID, int(k.attempt))
	}
	dispatch.Shared.Go(func() {
		if req.Output != nil {
			defer w.cfg.Live.End(req.ExecutionID, req.Output)
		}
		if m.PackHash != "" && w.cfg.Locate != nil {
			ep, err := w.cfg.Locate(runCtx, m.PackHash, m.EntryRel)
			if err != nil {
				root.Send(self, finished{key: k, outcome: runtimes.Outcome{Status: domain.StatusFailed, Error: err.Error()}, at: time.Now()})
				return
			}
			req.EntryPoint = ep
		}
		out := rt.Run(runCtx, req)
		root.Send(self, finished{key: k, outcome: out, at: time.Now()})
	})
}

func (w *worker) onFinished(ctx actor.Context, f finished) {
	a := w.seen[f.key]
	if a == nil || a.phase != running {
		return
	}
	a.phase, a.since = done, f.at
	if a.cancel != nil {
		a.cancel()
	}
	if a.announce != nil {
		a.announce.Stop() // a run that ends first reports running with its end
	}
	// The attempt is remembered for minutes after this (Remember); what
	// only the run needed must not be.
	a.cancel, a.announce = nil, nil
	out := f.outcome
	if out.Status == domain.StatusCanceled && w.draining {
		out.Status, out.Error = domain.StatusAbandoned, fmt.Sprintf("stopped: node %s shut down while the action ran", w.cfg.Node)
	}
	steps := []*protocol.Step{protocol.NewStep(domain.StatusRunning, a.startedAt, "", nil)}
	steps = append(steps, protocol.NewStep(out.Status, f.at, out.Error, &out.Result))
	a.report = w.newReport(f.key.id[:], f.key.attempt, steps...)
	a.acked = false
	w.send(ctx, a)
	w.freeSlot(ctx, a.pool)
}

// gauge publishes slot usage; called on the resend tick, so it costs
// nothing per execution.
func (w *worker) gauge() {
	w.cfg.Metrics.WorkerSlots.WithLabelValues("used").Set(float64(w.process.used))
	w.cfg.Metrics.WorkerSlots.WithLabelValues("free").Set(float64(w.process.slots - w.process.used))
	w.cfg.Metrics.WorkerQueued.Set(float64(len(w.process.queue) + len(w.builtin.queue)))
}

func (w *worker) newReport(id []byte, att int32, steps ...*protocol.Step) *protocol.Report {
	return &protocol.Report{ExecutionId: id, Attempt: att, WorkerNode: w.cfg.Node, WorkerAddress: w.addr, Steps: steps}
}

// send (re)sends the attempt's latest report; a run not yet announced is
// announced now, since someone asked where it is.
func (w *worker) send(ctx actor.Context, a *attempt) {
	if a.report == nil && a.phase == running {
		a.report = w.newReport(a.key.id[:], a.key.attempt, protocol.NewStep(domain.StatusRunning, a.startedAt, "", nil))
	}
	if a.report == nil {
		return
	}
	a.sentAt = time.Now()
	if w.cfg.Resolve != nil && a.ownerNode != "" {
		if addr := w.cfg.Resolve(a.ownerNode); addr != "" && addr != a.owner.Address {
			a.owner = actor.NewPID(addr, protocol.ExecutionsActor)
		}
	}
	ctx.Request(a.owner, a.report)
}

func (w *worker) onTick(ctx actor.Context) {
	now := time.Now()
	n := 0
	for _, k := range w.retiredOrder {
		if now.Sub(time.Unix(0, w.retired[k].at)) <= w.cfg.Remember {
			break
		}
		delete(w.retired, k)
		n++
	}
	w.retiredOrder = w.retiredOrder[n:]
	for k, a := range w.seen {
		switch {
		case a.phase == granted && now.Sub(a.since) > w.cfg.GrantLease:
			delete(w.seen, k)
			w.freeSlot(ctx, a.pool)
		case a.report != nil && !a.acked && now.Sub(a.sentAt) >= w.cfg.Resend:
			w.send(ctx, a)
		case a.phase == done && !a.acked && now.Sub(a.since) > w.cfg.GiveUp:
			w.cfg.Logger.Warn("giving up on a report its owner never acknowledged", "execution", k.id,
				"attempt", k.attempt, "owner", a.ownerNode, "status", lastStatus(a.report))
			delete(w.seen, k)
		}
	}
}

// retire forgets all of a finished, acknowledged attempt but its status.
func (w *worker) retire(a *attempt) {
	delete(w.seen, a.key)
	st := slices.Index(domain.Statuses, domain.Status(lastStatus(a.report)))
	w.retired[a.key] = retired{status: uint8(st), at: time.Now().UnixNano()}
	w.retiredOrder = append(w.retiredOrder, a.key)
	if len(w.retiredOrder) > w.cfg.RememberMax {
		delete(w.retired, w.retiredOrder[0])
		w.retiredOrder = w.retiredOrder[1:]
	}
}

// replay answers a late duplicate of a retired attempt with its final
// status (the owner has it already, and ignores it); it reports whether k
// was retired.
func (w *worker) replay(ctx actor.Context, k key, ownerAddr, kind string) bool {
	r, ok := w.retired[k]
	if !ok {
		return false
	}
	w.cfg.Metrics.Duplicates.WithLabelValues(kind).Inc()
	ctx.Send(actor.NewPID(ownerAddr, protocol.ExecutionsActor), w.newReport(k.id[:], k.attempt, protocol.NewStep(domain.Statuses[r.status], time.Unix(0, r.at), "", nil)))
	return true
}

func (w *worker) answerDrainers(ctx actor.Context) {
	if !w.draining || len(w.drainers) == 0 {
		return
	}
	pending := 0
	for _, a := range w.seen {
		if a.phase == running || (a.report != nil && !a.acked && a.phase == done) {
			pending++
		}
	}
	if pending > 0 {
		return
	}
	for _, d := range w.drainers {
		ctx.Send(d, &Drained{})
	}
	w.drainers = nil
}

func lastStatus(r *protocol.Report) string {
	if len(r.Steps) == 0 {
		return ""
	}
	return r.Steps[len(r.Steps)-1].Status
}
