package worker_test

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troupehq/troupe/actors/actortest"
	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/actors/worker"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/metrics"
	"github.com/troupehq/troupe/runtimes"
)

const wait = 10 * time.Second

// env is one worker under test, with a probe standing in for the owning
// node's execution manager: it records the grants and reports the worker
// sends and, while ack is set, acknowledges each report.
type env struct {
	t      *testing.T
	sys    *actor.ActorSystem
	worker *actor.PID
	owner  *actortest.Probe
	rt     *actortest.Runtime
	ack    atomic.Bool
	ticks  *tickGauge
	// unnamed counts reports that did not name the worker's address, which
	// an owner needs to acknowledge a report that came without a sender. The
	// owner reads it as each report arrives, so under -race this also checks
	// that the worker never writes to a report it has already sent.
	unnamed atomic.Int64
}

// tickGauge counts the worker's resend ticks: it publishes its queue length
// on every tick, and only then.
type tickGauge struct {
	prometheus.Gauge
	n atomic.Int64
}

func (g *tickGauge) Set(v float64) { g.n.Add(1); g.Gauge.Set(v) }

// start runs a worker with one slot, no resend or lease ticks (an hour) and
// acknowledging owner; edit changes that.
func start(t *testing.T, rt *actortest.Runtime, edit func(*worker.Config)) *env {
	t.Helper()
	e := &env{t: t, sys: actortest.NewSystem(t), rt: rt}
	e.ack.Store(true)
	e.owner = actortest.NewProbe(t, e.sys, protocol.ExecutionsActor, func(ctx actor.Context, msg any) {
		r, ok := msg.(*protocol.Report)
		if !ok {
			return
		}
		if r.WorkerAddress != e.sys.Address() {
			e.unnamed.Add(1)
		}
		if e.ack.Load() {
			ctx.Respond(&protocol.ReportAck{ExecutionId: r.ExecutionId, Attempt: r.Attempt, Status: last(r)})
		}
	})
	m := metrics.Discard()
	e.ticks = &tickGauge{Gauge: m.WorkerQueued}
	m.WorkerQueued = e.ticks
	cfg := worker.Config{Node: "w1", Slots: 1, Runtimes: runtimes.RegistryOf(rt),
		GrantLease: time.Hour, Resend: time.Hour, Metrics: m, Logger: actortest.Logger(t)}
	if edit != nil {
		edit(&cfg)
	}
	e.worker = actortest.Spawn(t, e.sys, worker.Props(cfg), protocol.WorkerActor)
	return e
}

func ids(n int) []domain.ID {
	out := make([]domain.ID, n)
	for i := range out {
		out[i] = domain.NewID(time.Now())
	}
	return out
}

func last(r *protocol.Report) string {
	if len(r.Steps) == 0 {
		return ""
	}
	return r.Steps[len(r.Steps)-1].Status
}

func countOf(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

func (e *env) request(ids ...domain.ID) {
	for _, id := range ids {
		e.sys.Root.Send(e.worker, &protocol.SlotRequest{ExecutionId: id[:], Attempt: 1, Runtime: e.rt.Name(), OwnerAddress: e.sys.Address()})
	}
}

func (e *env) assign(ids ...domain.ID) {
	for _, id := range ids {
		e.sys.Root.Send(e.worker, &protocol.Assign{ExecutionId: id[:], Attempt: 1, Action: "t.act", Runtime: e.rt.Name(),
			ParametersJson: []byte(`{}`), OwnerAddress: e.sys.Address()})
	}
}

func (e *env) release(id domain.ID) {
	e.sys.Root.Send(e.worker, &protocol.SlotRelease{ExecutionId: id[:], Attempt: 1})
}

func (e *env) stats() worker.SlotStats {
	e.t.Helper()
	return *actortest.Request(e.t, e.sys, e.worker, &worker.Stats{}).(*worker.SlotStats)
}

// settle returns the worker's load once everything it sent so far has
// reached the owner probe: what the test reads next is complete.
func (e *env) settle() worker.SlotStats {
	e.t.Helper()
	s := e.stats()
	e.owner.Sync(e.t)
	return s
}

// grants lists the executions granted a slot, in grant order.
func (e *env) grants() []domain.ID {
	var out []domain.ID
	for _, g := range actortest.Received[*protocol.SlotGrant](e.owner) {
		out = append(out, protocol.ID(g.ExecutionId))
	}
	return out
}

// reports lists the reports about id, oldest first.
func (e *env) reports(id domain.ID) []*protocol.Report {
	var out []*protocol.Report
	for _, r := range actortest.Received[*protocol.Report](e.owner) {
		if protocol.ID(r.ExecutionId) == id {
			out = append(out, r)
		}
	}
	return out
}

// statuses lists the last status of each report about id.
func (e *env) statuses(id domain.ID) []string {
	var out []string
	for _, r := range e.reports(id) {
		out = append(out, last(r))
	}
	return out
}

// waitReport waits for a report about id ending in status and returns it.
func (e *env) waitReport(id domain.ID, status domain.Status) *protocol.Report {
	e.t.Helper()
	var found *protocol.Report
	actortest.WaitFor(e.t, wait, func() error {
		for _, r := range e.reports(id) {
			if last(r) == string(status) {
				found = r
				return nil
			}
		}
		return fmt.Errorf("reports about %s end in %v, want one ending in %s", id, e.statuses(id), status)
	})
	return found
}

func (e *env) waitGrants(want ...domain.ID) {
	e.t.Helper()
	actortest.WaitFor(e.t, wait, func() error {
		if got := e.grants(); !slices.Equal(got, want) {
			return fmt.Errorf("grants %v, want %v", got, want)
		}
		return nil
	})
}

func wantStats(t *testing.T, got, want worker.SlotStats) {
	t.Helper()
	if got != want {
		t.Fatalf("slot stats %+v, want %+v", got, want)
	}
}

func TestSlotsAreGrantedFirstComeFirstServed(t *testing.T) {
	e := start(t, &actortest.Runtime{Block: true}, func(c *worker.Config) { c.Slots = 2 })
	x := ids(5)
	e.request(x...)
	wantStats(t, e.settle(), worker.SlotStats{Used: 2, Free: 0, Queued: 3})
	e.waitGrants(x[:2]...)

	e.assign(x[:2]...)
	actortest.WaitFor(t, wait, e.rt.WaitRunning(2))
	// Each run that ends hands its slot to the oldest waiting request.
	for i := 2; i < len(x); i++ {
		e.rt.Release(x[i-2].String())
		e.waitGrants(x[:i+1]...)
		e.assign(x[i])
	}
	for _, id := range x[len(x)-2:] {
		e.rt.Release(id.String())
	}
	for _, id := range x {
		e.waitReport(id, domain.StatusSucceeded)
	}
	wantStats(t, e.settle(), worker.SlotStats{Used: 0, Free: 2, Queued: 0})
	if got := e.rt.MaxRunning(); got != 2 {
		t.Errorf("at most %d runs at once, want 2", got)
	}
}

func TestDuplicateSlotRequestTakesOneSlot(t *testing.T) {
	e := start(t, &actortest.Runtime{}, nil)
	x := ids(2)
	e.request(x[0], x[0], x[1], x[1])
	// The repeated request of the granted one is answered with its grant
	// again; the repeated request of the waiting one is not queued twice.
	wantStats(t, e.settle(), worker.SlotStats{Used: 1, Free: 0, Queued: 1})
	if got, want := e.grants(), []domain.ID{x[0], x[0]}; !slices.Equal(got, want) {
		t.Fatalf("grants %v, want %v", got, want)
	}
	e.release(x[0])
	e.waitGrants(x[0], x[0], x[1])
	wantStats(t, e.settle(), worker.SlotStats{Used: 1, Free: 0, Queued: 0})
}

func TestDuplicateAssignRunsOnce(t *testing.T) {
	// The running report is held back for an hour, so the only running
	// report is the one the duplicate asks for.
	e := start(t, &actortest.Runtime{Block: true}, func(c *worker.Config) { c.RunningDelay = time.Hour })
	a := ids(1)[0]
	e.request(a)
	e.assign(a)
	actortest.WaitFor(t, wait, e.rt.WaitRunning(1))

	e.assign(a) // while it runs: answered with where it is, running
	e.settle()
	if got, want := e.statuses(a), []string{"running"}; !slices.Equal(got, want) {
		t.Fatalf("reports end in %v, want %v", got, want)
	}

	e.rt.Release(a.String())
	e.waitReport(a, domain.StatusSucceeded)
	e.assign(a) // after it ended: answered with the final report
	e.settle()
	if got, want := e.statuses(a), []string{"running", "succeeded", "succeeded"}; !slices.Equal(got, want) {
		t.Fatalf("reports end in %v, want %v", got, want)
	}
	if n := e.rt.Runs(a.String()); n != 1 {
		t.Fatalf("execution ran %d times, want once", n)
	}
	final := e.reports(a)[1]
	if len(final.Steps) != 2 || final.Steps[0].Status != "running" || final.Steps[1].Result.GetStdout() != "ran t.act" {
		t.Errorf("final report steps %v, want running then succeeded with the run's output", final.Steps)
	}
}

// TestAcknowledgedAttemptIsRememberedByStatusUntilRemember: once its owner
// acknowledged the final report, a late duplicate request or assignment
// of the attempt gets that status back and runs nothing; after Remember
// the worker has forgotten it (a request is granted like a new one).
func TestAcknowledgedAttemptIsRememberedByStatusUntilRemember(t *testing.T) {
	const remember = 300 * time.Millisecond
	e := start(t, &actortest.Runtime{}, func(c *worker.Config) { c.Remember, c.Resend = remember, 20*time.Millisecond })
	a := ids(1)[0]
	e.request(a)
	e.assign(a)
	e.waitReport(a, domain.StatusSucceeded)
	e.owner.Sync(t) // acknowledged
	e.settle()

	e.request(a)
	e.assign(a)
	e.settle()
	e.owner.Sync(t)
	if got, want := e.statuses(a), []string{"succeeded", "succeeded", "succeeded"}; !slices.Equal(got, want) {
		t.Fatalf("reports end in %v, want the final status, then once for each duplicate", got)
	}
	if n := len(e.grants()); n != 1 {
		t.Fatalf("%d grants, want only the first: a duplicate of a finished attempt takes no slot", n)
	}
	if n := e.rt.Runs(a.String()); n != 1 {
		t.Fatalf("ran %d times, want once", n)
	}
	wantStats(t, e.settle(), worker.SlotStats{Used: 0, Free: 1})

	time.Sleep(remember + 100*time.Millisecond)
	e.settle()
	e.request(a)
	e.waitGrants(a, a)
}

// TestRememberedAttemptsAreBoundedByCount: past RememberMax the oldest
// acknowledged attempt is forgotten (its late request is granted like a new
// one), while the newer ones are still answered with their status.
func TestRememberedAttemptsAreBoundedByCount(t *testing.T) {
	e := start(t, &actortest.Runtime{}, func(c *worker.Config) { c.RememberMax, c.Resend = 2, 20*time.Millisecond })
	as := ids(3)
	for _, a := range as {
		e.request(a)
		e.assign(a)
		e.waitReport(a, domain.StatusSucceeded)
		e.owner.Sync(t) // acknowledged
		e.settle()
	}
	e.request(as[2])
	e.settle()
	e.owner.Sync(t)
	if got, want := e.statuses(as[2]), []string{"succeeded", "succeeded"}; !slices.Equal(got, want) {
		t.Fatalf("reports of the newest attempt end in %v, want its final status answered again", got)
	}
	e.request(as[0])
	e.waitGrants(as[0], as[1], as[2], as[0])
}

func TestAssignWithoutGrantIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(e *env, id domain.ID)
	}{
		{"never granted", func(*env, domain.ID) {}},
		{"grant released", func(e *env, id domain.ID) { e.request(id); e.release(id) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, &actortest.Runtime{}, nil)
			a := ids(1)[0]
			tc.before(e, a)
			e.assign(a)
			r := e.waitReport(a, domain.StatusAbandoned)
			if msg := r.Steps[len(r.Steps)-1].Error; !strings.Contains(msg, "holds no slot") {
				t.Errorf("abandoned report says %q, want it to say the worker holds no slot", msg)
			}
			wantStats(t, e.settle(), worker.SlotStats{Used: 0, Free: 1, Queued: 0})
			if n := e.rt.Runs(a.String()); n != 0 {
				t.Fatalf("execution ran %d times, want never", n)
			}
		})
	}
}

func TestAssignmentThatCannotRunFails(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(*protocol.Assign)
		wantErr string
	}{
		{"runtime not here", func(m *protocol.Assign) { m.Runtime = "python" }, `runtime "python" not found (available: test)`},
		{"parameters not an object", func(m *protocol.Assign) { m.ParametersJson = []byte(`[1]`) }, "decode parameters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, &actortest.Runtime{}, nil)
			a := ids(1)[0]
			e.request(a)
			m := &protocol.Assign{ExecutionId: a[:], Attempt: 1, Action: "t.act", Runtime: e.rt.Name(),
				ParametersJson: []byte(`{}`), OwnerAddress: e.sys.Address()}
			tc.edit(m)
			e.sys.Root.Send(e.worker, m)
			r := e.waitReport(a, domain.StatusFailed)
			if msg := r.Steps[len(r.Steps)-1].Error; !strings.Contains(msg, tc.wantErr) {
				t.Errorf("failed report says %q, want %q", msg, tc.wantErr)
			}
			wantStats(t, e.settle(), worker.SlotStats{Used: 0, Free: 1, Queued: 0})
			if n := e.rt.Runs(a.String()); n != 0 {
				t.Fatalf("execution ran %d times, want never", n)
			}
		})
	}
}

func TestReportsAreResentUntilAcknowledged(t *testing.T) {
	e := start(t, &actortest.Runtime{}, func(c *worker.Config) { c.Resend = 10 * time.Millisecond })
	e.ack.Store(false)
	a := ids(1)[0]
	e.request(a)
	e.assign(a)
	actortest.WaitFor(t, wait, func() error {
		if got := e.statuses(a); countOf(got, "succeeded") < 3 {
			return fmt.Errorf("reports end in %v, want the final report resent at least twice", got)
		}
		return nil
	})

	e.ack.Store(true)
	n := len(e.reports(a))
	actortest.WaitFor(t, wait, func() error {
		if got := len(e.reports(a)); got == n {
			return fmt.Errorf("%d reports, want another one to acknowledge", got)
		}
		return nil
	})
	e.owner.Sync(t)       // the probe has acknowledged it,
	e.settle()            // the worker has taken the ack, and what it sent before is recorded:
	n = len(e.reports(a)) // this is the last report
	ticks := e.ticks.n.Load()
	actortest.WaitFor(t, wait, func() error {
		if got := e.ticks.n.Load(); got < ticks+5 {
			return fmt.Errorf("%d resend ticks since the ack, want 5", got-ticks)
		}
		return nil
	})
	e.settle()
	if got := len(e.reports(a)); got != n {
		t.Fatalf("%d reports after 5 ticks since the ack, want still %d", got, n)
	}
	if got := e.unnamed.Load(); got != 0 {
		t.Errorf("%d reports did not name the worker's address", got)
	}
}

func TestSlotReleaseFreesGrantedSlotOnly(t *testing.T) {
	e := start(t, &actortest.Runtime{Block: true}, nil)
	x := ids(3)
	e.request(x...)
	e.release(x[0])
	e.waitGrants(x[0], x[1])
	wantStats(t, e.settle(), worker.SlotStats{Used: 1, Free: 0, Queued: 1})

	// A running attempt's slot is its run's, not the owner's, to free.
	e.assign(x[1])
	actortest.WaitFor(t, wait, e.rt.WaitRunning(1))
	e.release(x[1])
	wantStats(t, e.settle(), worker.SlotStats{Used: 1, Free: 0, Queued: 1})
	e.rt.Release(x[1].String())
	e.waitGrants(x[0], x[1], x[2])
}

func TestUnusedGrantIsReclaimedAfterLease(t *testing.T) {
	e := start(t, &actortest.Runtime{}, func(c *worker.Config) {
		c.Resend, c.GrantLease = 10*time.Millisecond, 100*time.Millisecond
	})
	x := ids(2)
	e.request(x...)
	e.waitGrants(x...) // the first lease lapsed and the waiting request got the slot
	actortest.WaitFor(t, wait, func() error {
		if s := e.stats(); s.Used != 0 {
			return fmt.Errorf("%d slots used, want the second lease to lapse too", s.Used)
		}
		return nil
	})
	e.assign(x[0])
	e.waitReport(x[0], domain.StatusAbandoned)
	if n := e.rt.Runs(x[0].String()); n != 0 {
		t.Fatalf("execution whose grant lapsed ran %d times, want never", n)
	}
}

func TestDrainStopsRunsAndAnswersOnceReportsAreAcked(t *testing.T) {
	e := start(t, &actortest.Runtime{Block: true}, func(c *worker.Config) {
		c.Slots, c.Resend = 2, 10*time.Millisecond
	})
	drainer := actortest.NewProbe(t, e.sys, "drainer", nil)
	e.ack.Store(false)
	x := ids(3)
	e.request(x[:2]...)
	e.assign(x[:2]...)
	actortest.WaitFor(t, wait, e.rt.WaitRunning(2))

	e.sys.Root.RequestWithCustomSender(e.worker, &worker.Drain{}, drainer.PID)
	for _, id := range x[:2] {
		r := e.waitReport(id, domain.StatusAbandoned)
		if msg := r.Steps[len(r.Steps)-1].Error; !strings.Contains(msg, "node w1 shut down") {
			t.Errorf("report of a drained run says %q, want it to name the shutdown", msg)
		}
	}
	e.request(x[2]) // a draining worker grants nothing
	e.settle()
	drainer.Sync(t)
	if got := drainer.Messages(); len(got) != 0 {
		t.Fatalf("drainer got %v before the reports were acknowledged", got)
	}
	if got := e.grants(); slices.Contains(got, x[2]) {
		t.Fatalf("grants %v: a draining worker granted a slot", got)
	}

	e.ack.Store(true)
	actortest.WaitFor(t, wait, func() error {
		if got := drainer.Messages(); len(got) != 1 {
			return fmt.Errorf("drainer got %v, want one Drained", got)
		}
		return nil
	})
	if _, ok := drainer.Messages()[0].(*worker.Drained); !ok {
		t.Fatalf("drainer got %T, want *worker.Drained", drainer.Messages()[0])
	}
	if n := e.rt.Running(); n != 0 {
		t.Fatalf("%d runs still in progress after Drained", n)
	}
}

// An assignment for a slot granted before the drain must not start a run on
// a node that is shutting down.
func TestAssignWhileDrainingIsRefused(t *testing.T) {
	e := start(t, &actortest.Runtime{}, nil)
	a := ids(1)[0]
	e.request(a)
	e.waitGrants(a)
	if _, ok := actortest.Request(t, e.sys, e.worker, &worker.Drain{}).(*worker.Drained); !ok {
		t.Fatal("drain of an idle worker was not answered with Drained")
	}
	e.assign(a)
	e.waitReport(a, domain.StatusAbandoned)
	if n := e.rt.Runs(a.String()); n != 0 {
		t.Fatalf("a draining worker ran a new assignment %d times, want never", n)
	}
}

// A run that ends before RunningDelay reports running and its end in one
// report, which saves the owner a durable commit.
func TestFastRunReportsOnce(t *testing.T) {
	e := start(t, &actortest.Runtime{}, func(c *worker.Config) { c.RunningDelay = time.Hour })
	a := ids(1)[0]
	e.request(a)
	e.assign(a)
	e.waitReport(a, domain.StatusSucceeded)
	e.settle()
	reports := e.reports(a)
	if len(reports) != 1 || len(reports[0].Steps) != 2 || reports[0].Steps[0].Status != "running" {
		t.Fatalf("reports %v, want one report with running then succeeded", reports)
	}
}

// A final report its owner never acknowledges is given up after GiveUp, so
// a vanished owner does not hold the worker's memory forever.
func TestUnacknowledgedReportIsGivenUp(t *testing.T) {
	e := start(t, &actortest.Runtime{}, func(c *worker.Config) {
		c.Resend, c.GiveUp = 10*time.Millisecond, 50*time.Millisecond
	})
	e.ack.Store(false)
	a := ids(1)[0]
	e.request(a)
	e.assign(a)
	e.waitReport(a, domain.StatusSucceeded)
	// A duplicate assignment is answered with the remembered report until
	// the worker gives up; from then on it is refused, never run again.
	actortest.WaitFor(t, 5*time.Second, func() error {
		e.assign(a)
		if e.settle(); slices.Contains(e.statuses(a), string(domain.StatusAbandoned)) {
			return nil
		}
		return fmt.Errorf("the worker still remembers the unacknowledged report")
	})
	if n := e.rt.Runs(a.String()); n != 1 {
		t.Fatalf("ran %d times, want once", n)
	}
}
