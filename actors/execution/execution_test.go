package execution_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupehq/troupe/actors/actortest"
	"github.com/troupehq/troupe/actors/execution"
	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/actors/worker"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/runtimes"
	"github.com/troupehq/troupe/storage"
)

const wait = 10 * time.Second

// actions is the catalog of these tests.
var actions = catalog{
	"t.act":     {Ref: "t.act", Runtime: "test", Timeout: time.Minute},
	"t.silent":  {Ref: "t.silent", Runtime: "test", Timeout: 50 * time.Millisecond},
	"t.slow":    {Ref: "t.slow", Runtime: "test", Timeout: 2 * time.Second},
	"t.python":  {Ref: "t.python", Runtime: "python", Timeout: time.Minute},
	"t.echo":    {Ref: "t.echo", Runtime: "shell", Cmd: `printf '%s' "$TROUPE_PARAM_MESSAGE"`, Timeout: time.Minute},
	"t.exit3":   {Ref: "t.exit3", Runtime: "shell", Cmd: "echo oops >&2; exit 3", Timeout: time.Minute},
	"t.sleeper": {Ref: "t.sleeper", Runtime: "shell", Cmd: "sleep 30", Timeout: 200 * time.Millisecond},
}

type catalog map[string]*domain.Action

func (c catalog) Action(ref string) (*domain.Action, bool) { a, ok := c[ref]; return a, ok }

// Locate leaves entry points as they are: the worker is on this node.
func (c catalog) Locate(*domain.Action) (string, string) { return "", "" }

// placement sends every execution whose runtime the registry has to the
// node's own worker, as a single node does. While noWorker is set it answers
// as a cluster that has no member for the runtime yet; members in dead are
// not alive.
type placement struct {
	reg      *runtimes.Registry
	worker   *actor.PID
	noWorker atomic.Bool
	dead     sync.Map // node name → true
}

func (p *placement) Worker(runtime string) (*actor.PID, error) {
	if p.noWorker.Load() {
		return nil, fmt.Errorf("no live member runs %s yet: %w", runtime, execution.ErrNoWorker)
	}
	if _, err := p.reg.Get(runtime); err != nil {
		return nil, err
	}
	return p.worker, nil
}

func (p *placement) Alive(node string) bool {
	_, dead := p.dead.Load(node)
	return !dead
}

// env is one node's execution actors over a real store, with a real worker
// (running the shell runtime and the scripted one) or a stand-in for it.
type env struct {
	t       *testing.T
	sys     *actor.ActorSystem
	db      *storage.DB
	rt      *actortest.Runtime
	manager *actor.PID
	worker  *actor.PID
	place   *placement

	mu       sync.Mutex
	terminal map[domain.ID]int // OnTerminal calls
}

type options struct {
	slots            int
	reportGrace      time.Duration
	resend           time.Duration
	placementTimeout time.Duration
	// fakeWorker, when set, is the worker's message handler instead of a
	// real worker.
	fakeWorker func(ctx actor.Context, msg any)
	// panicOnLoad, when set, makes the first load of that execution panic.
	panicOnLoad domain.ID
}

// panicky is the store with one load that panics, as a bug in a lane would.
type panicky struct {
	*storage.DB
	id       domain.ID
	panicked atomic.Bool
}

func (p *panicky) Execution(id domain.ID) (*domain.Execution, error) {
	if id == p.id && !p.panicked.Swap(true) {
		panic("test: loading execution " + id.String())
	}
	return p.DB.Execution(id)
}

func start(t *testing.T, rt *actortest.Runtime, o options) *env {
	t.Helper()
	shell, err := runtimes.NewShell(runtimes.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	reg := runtimes.RegistryOf(shell, rt)
	e := &env{t: t, sys: actortest.NewSystem(t), db: actortest.Store(t), rt: rt, terminal: map[domain.ID]int{}}
	e.worker = actor.NewPID(e.sys.Address(), protocol.WorkerActor)
	e.place = &placement{reg: reg, worker: e.worker}
	if o.fakeWorker != nil {
		actortest.NewProbe(t, e.sys, protocol.WorkerActor, o.fakeWorker)
	} else {
		actortest.Spawn(t, e.sys, worker.Props(worker.Config{Node: "w1", Slots: max(o.slots, 1), Runtimes: reg,
			Resend: o.resend, Logger: actortest.Logger(t)}), protocol.WorkerActor)
	}
	var store execution.Store = e.db
	if !o.panicOnLoad.IsZero() {
		store = &panicky{DB: e.db, id: o.panicOnLoad}
	}
	e.manager = actortest.Spawn(t, e.sys, execution.Props(execution.Config{
		Node: "n1", Store: store, Catalog: actions, Placement: e.place,
		OnTerminal: func(ex *domain.Execution) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.terminal[ex.ID]++
		},
		ReportGrace: o.reportGrace, PlacementTimeout: o.placementTimeout, Logger: actortest.Logger(t),
	}), protocol.ExecutionsActor)
	return e
}

// run stores a new execution of action and starts it.
func (e *env) run(action string, params map[string]any) domain.ID {
	e.t.Helper()
	return e.runAs(domain.NewID(time.Now()), action, params)
}

// runAs is run with the execution's ID chosen by the test.
func (e *env) runAs(id domain.ID, action string, params map[string]any) domain.ID {
	e.t.Helper()
	ex := &domain.Execution{ID: id, Action: action, Runtime: actions[action].Runtime,
		Parameters: params, Node: "n1"}
	if err := e.db.CreateExecution(ex); err != nil {
		e.t.Fatal(err)
	}
	e.sys.Root.Send(e.manager, &protocol.StartExecution{ExecutionId: ex.ID[:]})
	return ex.ID
}

func (e *env) execution(id domain.ID) *domain.Execution {
	e.t.Helper()
	ex, err := e.db.Execution(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return ex
}

// waitEnd waits until id is terminal and OnTerminal has been called for it,
// and returns the record.
func (e *env) waitEnd(id domain.ID) *domain.Execution {
	e.t.Helper()
	var ex *domain.Execution
	actortest.WaitFor(e.t, wait, func() error {
		ex = e.execution(id)
		if !ex.Status.Terminal() {
			return fmt.Errorf("execution %s is %s, want it finished", id, ex.Status)
		}
		if n := e.terminalCalls(id); n == 0 {
			return fmt.Errorf("execution %s is %s but OnTerminal was not called", id, ex.Status)
		}
		return nil
	})
	return ex
}

func (e *env) terminalCalls(id domain.ID) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.terminal[id]
}

// history returns the statuses id went through, checking that their seqs
// count up from 1.
func (e *env) history(id domain.ID) []domain.Status {
	e.t.Helper()
	hs, err := e.db.History(id)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []domain.Status
	for i, h := range hs {
		if h.Seq != uint64(i+1) {
			e.t.Errorf("history entry %d of %s has seq %d, want %d", i, id, h.Seq, i+1)
		}
		out = append(out, h.Status)
	}
	return out
}

// drain asks the real worker to drain: it answers once every report it
// sent has been acknowledged.
func (e *env) drain() error {
	_, err := e.sys.Root.RequestFuture(e.worker, &worker.Drain{}, 5*time.Second).Result()
	if err != nil {
		return fmt.Errorf("worker did not drain (a report it sent is still unacknowledged): %w", err)
	}
	return nil
}

// wantEnd checks how an execution ended, and that OnTerminal announced it
// exactly once.
func (e *env) wantEnd(ex *domain.Execution, status domain.Status, errText string) {
	e.t.Helper()
	if ex.Status != status || ex.Error != errText {
		e.t.Fatalf("execution is %s (%q), want %s (%q)", ex.Status, ex.Error, status, errText)
	}
	if n := e.terminalCalls(ex.ID); n != 1 {
		e.t.Fatalf("OnTerminal called %d times, want once", n)
	}
}

// finalReport is what a worker reports when the attempt ended in status.
func finalReport(id domain.ID, worker, address string, status domain.Status) *protocol.Report {
	now := time.Now()
	return &protocol.Report{ExecutionId: id[:], Attempt: 1, WorkerNode: worker, WorkerAddress: address,
		Steps: []*protocol.Step{protocol.NewStep(domain.StatusRunning, now, "", nil), protocol.NewStep(status, now, "", nil)}}
}

func wantHistory(t *testing.T, got []domain.Status, want ...domain.Status) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
}

func TestExecutionRunsToTheEndOfItsAction(t *testing.T) {
	for _, tc := range []struct {
		action   string
		status   domain.Status
		exitCode int
		stdout   string
		stderr   string
		err      string
	}{
		{action: "t.echo", status: domain.StatusSucceeded, stdout: "hello"},
		{action: "t.exit3", status: domain.StatusFailed, exitCode: 3, stderr: "oops\n", err: "exit code 3"},
		{action: "t.sleeper", status: domain.StatusTimeout, exitCode: -9, err: "timed out after 200ms"},
	} {
		t.Run(tc.action, func(t *testing.T) {
			e := start(t, &actortest.Runtime{}, options{})
			id := e.run(tc.action, map[string]any{"message": "hello"})
			ex := e.waitEnd(id)
			e.wantEnd(ex, tc.status, tc.err)
			wantHistory(t, e.history(id), domain.StatusRequested, domain.StatusScheduled, domain.StatusRunning, tc.status)
			if ex.Worker != "w1" || ex.StartedAt == nil || ex.FinishedAt == nil {
				t.Errorf("execution ran on worker %q, started %v, finished %v; want w1 with both times", ex.Worker, ex.StartedAt, ex.FinishedAt)
			}
			if r := ex.Result; r == nil || r.ExitCode != tc.exitCode || r.Stdout != tc.stdout || r.Stderr != tc.stderr {
				t.Errorf("result %+v, want exit code %d, stdout %q, stderr %q", r, tc.exitCode, tc.stdout, tc.stderr)
			}
			if err := e.drain(); err != nil { // the worker was told its reports are recorded
				t.Fatal(err)
			}
		})
	}
}

func TestRuntimeNoWorkerHasFailsWithPlacementError(t *testing.T) {
	e := start(t, &actortest.Runtime{}, options{})
	id := e.run("t.python", nil)
	e.wantEnd(e.waitEnd(id), domain.StatusFailed, `runtime "python" not found (available: shell, test)`)
	wantHistory(t, e.history(id), domain.StatusRequested, domain.StatusFailed)
}

func TestManyExecutionsShareTheSlots(t *testing.T) {
	rt := &actortest.Runtime{RunFor: 20 * time.Millisecond}
	e := start(t, rt, options{slots: 2})
	var x []domain.ID
	for range 50 {
		x = append(x, e.run("t.act", nil))
	}
	for _, id := range x {
		e.wantEnd(e.waitEnd(id), domain.StatusSucceeded, "")
		if n := rt.Runs(id.String()); n != 1 {
			t.Fatalf("execution %s ran %d times, want once", id, n)
		}
	}
	if got := rt.MaxRunning(); got != 2 {
		t.Fatalf("at most %d runs at once, want 2 (the slots)", got)
	}
}

func TestReportAfterCompletionIsAcknowledgedAndChangesNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		final domain.Status
	}{
		{"duplicate", domain.StatusSucceeded},
		{"conflicting", domain.StatusFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, &actortest.Runtime{}, options{})
			id := e.run("t.act", nil)
			before := e.waitEnd(id)
			report := finalReport(id, "w1", e.sys.Address(), tc.final)
			ack, ok := actortest.Request(t, e.sys, e.manager, report).(*protocol.ReportAck)
			if !ok {
				t.Fatal("report was not answered with a ReportAck")
			}
			// The worker takes an ack as meant for its report only when the
			// statuses agree; any other ack leaves it resending forever.
			if protocol.ID(ack.ExecutionId) != id || ack.Attempt != 1 || ack.Status != string(tc.final) {
				t.Errorf("ack %v, want execution %s attempt 1 status %s", ack, id, tc.final)
			}
			after := e.execution(id)
			if after.Seq != before.Seq {
				t.Errorf("after the report the execution is at seq %d, want still %d", after.Seq, before.Seq)
			}
			e.wantEnd(after, domain.StatusSucceeded, "")
			wantHistory(t, e.history(id), domain.StatusRequested, domain.StatusScheduled, domain.StatusRunning, domain.StatusSucceeded)
		})
	}
}

// silentWorker grants every slot request, then swallows the assignment.
func silentWorker(assigns *actortest.Count) func(ctx actor.Context, msg any) {
	return func(ctx actor.Context, msg any) {
		switch m := msg.(type) {
		case *protocol.SlotRequest:
			ctx.Send(actor.NewPID(m.OwnerAddress, protocol.ExecutionsActor), &protocol.SlotGrant{ExecutionId: m.ExecutionId,
				Attempt: m.Attempt, WorkerNode: "w9", WorkerAddress: ctx.ActorSystem().Address()})
		case *protocol.Assign:
			assigns.Add()
		}
	}
}

func TestSilentWorkerIsGivenUpAfterTimeoutAndGrace(t *testing.T) {
	var assigns actortest.Count
	e := start(t, &actortest.Runtime{}, options{reportGrace: 50 * time.Millisecond, fakeWorker: silentWorker(&assigns)})
	began := time.Now()
	id := e.run("t.silent", nil)
	ex := e.waitEnd(id)
	if took := time.Since(began); took < 100*time.Millisecond {
		t.Errorf("given up after %s, before the timeout (50ms) plus the grace (50ms)", took)
	}
	e.wantEnd(ex, domain.StatusAbandoned, "no report from worker w9 within 50ms after the action's timeout")
	wantHistory(t, e.history(id), domain.StatusRequested, domain.StatusScheduled, domain.StatusAbandoned)
	if n := assigns.Get(); n != 1 {
		t.Fatalf("worker was assigned the execution %d times, want once", n)
	}
}

// Executions that share a lane share its one timer: one whose deadline
// comes first must not wait for an earlier execution's later deadline, and
// the later one must still be kept once the first is gone.
func TestExecutionsOfOneLaneAreGivenUpEachOnItsDeadline(t *testing.T) {
	var assigns actortest.Count
	e := start(t, &actortest.Runtime{}, options{reportGrace: 50 * time.Millisecond, fakeWorker: silentWorker(&assigns)})
	slow, quick := domain.NewID(time.Now()), domain.NewID(time.Now())
	quick[len(quick)-1] = slow[len(slow)-1] // the lane is chosen by the last byte
	began := time.Now()
	e.runAs(slow, "t.slow", nil)
	actortest.WaitFor(t, wait, func() error {
		if n := assigns.Get(); n != 1 {
			return fmt.Errorf("%d assignments, want the slow execution's", n)
		}
		return nil
	})
	e.runAs(quick, "t.silent", nil)
	q := e.waitEnd(quick)
	e.wantEnd(q, domain.StatusAbandoned, "no report from worker w9 within 50ms after the action's timeout")
	if s := e.execution(slow); s.Status != domain.StatusScheduled {
		t.Fatalf("when the quick execution was given up the slow one was %s, want still scheduled", s.Status)
	}
	if took := q.FinishedAt.Sub(began); took >= 2*time.Second {
		t.Fatalf("quick execution given up after %s, not before the slow one's deadline (2s)", took)
	}
	s := e.waitEnd(slow)
	e.wantEnd(s, domain.StatusAbandoned, "no report from worker w9 within 50ms after the action's timeout")
	if took := s.FinishedAt.Sub(began); took < 2050*time.Millisecond {
		t.Fatalf("slow execution given up after %s, before its timeout (2s) plus the grace (50ms)", took)
	}
}

// A worker whose run outlives the backstop reports after the execution was
// given up; the owner must still acknowledge that report so the worker stops
// resending it (and can drain).
func TestLateReportAfterBackstopIsAcknowledged(t *testing.T) {
	rt := &actortest.Runtime{Block: true} // ignores the action's timeout
	e := start(t, rt, options{reportGrace: 50 * time.Millisecond, resend: 10 * time.Millisecond})
	id := e.run("t.silent", nil)
	actortest.WaitFor(t, wait, rt.WaitRunning(1))
	e.wantEnd(e.waitEnd(id), domain.StatusAbandoned, "no report from worker w1 within 50ms after the action's timeout")
	e.finishLate(rt, id)
}

// finishLate lets the run of an execution that was already given up end,
// and checks that its worker's report is acknowledged and changes nothing.
func (e *env) finishLate(rt *actortest.Runtime, id domain.ID) {
	e.t.Helper()
	before := e.execution(id)
	rt.Release(id.String())
	actortest.WaitFor(e.t, wait, rt.WaitRunning(0))
	if err := e.drain(); err != nil {
		e.t.Fatal(err)
	}
	if after := e.execution(id); after.Seq != before.Seq {
		e.t.Fatalf("late report moved the execution to %s at seq %d, want it left at seq %d", after.Status, after.Seq, before.Seq)
	}
	if n := e.terminalCalls(id); n != 1 {
		e.t.Fatalf("OnTerminal called %d times, want once", n)
	}
}

func TestStartOfUnknownExecutionIsDropped(t *testing.T) {
	e := start(t, &actortest.Runtime{}, options{})
	unknown := domain.NewID(time.Now())
	e.sys.Root.Send(e.manager, &protocol.StartExecution{ExecutionId: unknown[:]})
	id := e.run("t.act", nil) // the manager carries on
	e.wantEnd(e.waitEnd(id), domain.StatusSucceeded, "")
	if _, err := e.db.Execution(unknown); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("unknown execution: %v, want not found", err)
	}
}

func TestExecutionWaitsForAWorkerWithItsRuntime(t *testing.T) {
	for _, tc := range []struct {
		name       string
		appears    bool
		status     domain.Status
		wantErr    string
		wantStatus []domain.Status
	}{
		{"one appears", true, domain.StatusSucceeded, "",
			[]domain.Status{domain.StatusRequested, domain.StatusScheduled, domain.StatusRunning, domain.StatusSucceeded}},
		{"none appears", false, domain.StatusFailed, "no live member runs test yet: no worker available",
			[]domain.Status{domain.StatusRequested, domain.StatusFailed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, &actortest.Runtime{}, options{placementTimeout: 100 * time.Millisecond})
			e.place.noWorker.Store(true)
			began := time.Now()
			id := e.run("t.act", nil)
			if tc.appears {
				actortest.WaitFor(t, wait, func() error {
					if ex := e.execution(id); ex.Status != domain.StatusRequested {
						return fmt.Errorf("execution is %s, want it waiting in requested", ex.Status)
					}
					return nil
				})
				e.place.noWorker.Store(false)
			}
			e.wantEnd(e.waitEnd(id), tc.status, tc.wantErr)
			if took := time.Since(began); !tc.appears && took < 100*time.Millisecond {
				t.Errorf("failed after %s, before the placement timeout (100ms)", took)
			}
			wantHistory(t, e.history(id), tc.wantStatus...)
		})
	}
}

// TestRestartedLaneTakesBackItsExecutions: a lane that panics restarts
// empty; it takes back its unfinished executions from the store, so that
// one waiting for a worker still fails at its placement timeout, and the
// one whose message made it panic is started too.
func TestRestartedLaneTakesBackItsExecutions(t *testing.T) {
	waiting, crashing := domain.NewID(time.Now()), domain.NewID(time.Now())
	crashing[len(crashing)-1] = waiting[len(waiting)-1] // the lane is chosen by the last byte
	e := start(t, &actortest.Runtime{}, options{placementTimeout: 300 * time.Millisecond, panicOnLoad: crashing})
	e.place.noWorker.Store(true)
	e.runAs(waiting, "t.act", nil)
	e.runAs(crashing, "t.act", nil)
	for _, id := range []domain.ID{waiting, crashing} {
		e.wantEnd(e.waitEnd(id), domain.StatusFailed, "no live member runs test yet: no worker available")
	}
}

func TestLostWorkerMemberEndsItsExecutions(t *testing.T) {
	rt := &actortest.Runtime{Block: true}
	e := start(t, rt, options{resend: 10 * time.Millisecond})
	id := e.run("t.act", nil)
	actortest.WaitFor(t, wait, rt.WaitRunning(1))
	actortest.WaitFor(t, wait, func() error {
		if ex := e.execution(id); ex.Status != domain.StatusRunning {
			return fmt.Errorf("execution is %s, want running", ex.Status)
		}
		return nil
	})
	e.sys.Root.Send(e.manager, &protocol.MemberDown{Node: "w2", Status: "dead"}) // not its worker
	e.sys.Root.Send(e.manager, &protocol.MemberDown{Node: "w1", Status: "left"})
	e.wantEnd(e.waitEnd(id), domain.StatusAbandoned, "worker node w1 is left; the execution was running there")
	wantHistory(t, e.history(id), domain.StatusRequested, domain.StatusScheduled, domain.StatusRunning, domain.StatusAbandoned)
	e.finishLate(rt, id) // the member was not gone after all
}

// An owner that restarts finds executions that a worker on another member
// runs: it waits for that worker's reports if the member is alive, and
// abandons them if it is not.
func TestRestartedOwnerTakesOverRunningExecutions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		alive   bool
		status  domain.Status
		wantErr string
	}{
		{"worker alive", true, domain.StatusSucceeded, ""},
		{"worker gone", false, domain.StatusAbandoned, "worker node w2 is not a live member; the execution was running there"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, &actortest.Runtime{}, options{})
			if !tc.alive {
				e.place.dead.Store("w2", true)
			}
			id := domain.NewID(time.Now())
			if err := e.db.CreateExecution(&domain.Execution{ID: id, Action: "t.act", Runtime: "test", Node: "n1"}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := e.db.Apply(id, storage.Transition{Attempt: 1, To: domain.StatusScheduled, Node: "w2"},
				storage.Transition{Attempt: 1, To: domain.StatusRunning, Node: "w2"}); err != nil {
				t.Fatal(err)
			}
			e.sys.Root.Send(e.manager, &protocol.StartExecution{ExecutionId: id[:]})
			// w2's report reaches the execution after the start does.
			report := finalReport(id, "w2", e.sys.Address(), domain.StatusSucceeded)
			if _, ok := actortest.Request(t, e.sys, e.manager, report).(*protocol.ReportAck); !ok {
				t.Fatal("report was not acknowledged")
			}
			e.wantEnd(e.waitEnd(id), tc.status, tc.wantErr)
			wantHistory(t, e.history(id), domain.StatusRequested, domain.StatusScheduled, domain.StatusRunning, tc.status)
		})
	}
}
