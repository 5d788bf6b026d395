package rule_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupehq/troupe/actors/actortest"
	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/actors/rule"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/internal/troupetest"
	"github.com/troupehq/troupe/packs"
	"github.com/troupehq/troupe/rules"
	"github.com/troupehq/troupe/storage"
)

// pack "t": t.thing has a rule that matches deploys and one that matches
// nothing the tests send; t.other's rule renders a string into an integer
// parameter; t.lonely has no rule. The disabled rule would match everything.
var pack = map[string]string{
	"pack.yaml":            "ref: t\nversion: \"1\"\n",
	"triggers/thing.yaml":  "name: thing\n",
	"triggers/other.yaml":  "name: other\n",
	"triggers/lonely.yaml": "name: lonely\n",
	"actions/act.yaml": `name: act
runtime: shell
cmd: echo "$TROUPE_PARAM_HOST"
parameters:
  host: {type: string, required: true}
  count: {type: integer, default: 1}
`,
	"rules/match.yaml": `name: match
trigger: {type: t.thing}
criteria:
  trigger.kind: {type: equals, pattern: deploy}
action: {ref: t.act, parameters: {host: "{{ trigger.host }}"}}
`,
	"rules/nomatch.yaml": `name: nomatch
trigger: {type: t.thing}
criteria:
  trigger.kind: {type: equals, pattern: rollback}
action: {ref: t.act, parameters: {host: "{{ trigger.host }}"}}
`,
	"rules/badparams.yaml": `name: badparams
trigger: {type: t.other}
action: {ref: t.act, parameters: {host: "{{ trigger.host }}", count: "{{ trigger.host }}"}}
`,
	"rules/disabled.yaml": `name: disabled
enabled: false
trigger: {type: t.thing}
action: {ref: t.act, parameters: {host: x}}
`,
}

func loadCatalog(t *testing.T) (*packs.Catalog, []*rules.Compiled) {
	t.Helper()
	dir := t.TempDir()
	troupetest.WriteFiles(t, dir, pack)
	cat, err := packs.Load([]string{dir}, packs.Options{
		CompileRule: func(r *domain.Rule) error { _, err := rules.Compile(r); return err },
	})
	if err != nil {
		t.Fatalf("load pack: %v", err)
	}
	var compiled []*rules.Compiled
	for _, r := range cat.Rules() {
		if !r.Enabled {
			continue
		}
		c, err := rules.Compile(r)
		if err != nil {
			t.Fatal(err)
		}
		compiled = append(compiled, c)
	}
	return cat, compiled
}

// recordingStore remembers each AcceptEvent call, to show what was
// written together.
type recordingStore struct {
	*storage.DB
	mu    sync.Mutex
	calls []accepted
}

type accepted struct {
	enforcements []*domain.Enforcement
	executions   []*domain.Execution
}

func (s *recordingStore) AcceptEvent(ev *domain.Event, enfs []*domain.Enforcement, exs []*domain.Execution) error {
	s.mu.Lock()
	s.calls = append(s.calls, accepted{enfs, exs})
	s.mu.Unlock()
	return s.DB.AcceptEvent(ev, enfs, exs)
}

func (s *recordingStore) accepted() []accepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

type env struct {
	t          *testing.T
	sys        *actor.ActorSystem
	store      *recordingStore
	rules      *actor.PID
	executions *actortest.Probe // stands in for the execution manager
}

// start spawns the rule actors; with set, it may change their Config first.
func start(t *testing.T, set ...func(*rule.Config)) *env {
	t.Helper()
	cat, compiled := loadCatalog(t)
	e := &env{t: t, sys: actortest.NewSystem(t)}
	e.store = &recordingStore{DB: actortest.Store(t)}
	e.executions = actortest.NewProbe(t, e.sys, protocol.ExecutionsActor, nil)
	cfg := rule.Config{Node: "n1", Store: e.store, Catalog: cat, Rules: compiled, Logger: actortest.Logger(t)}
	for _, f := range set {
		f(&cfg)
	}
	e.rules = actortest.Spawn(t, e.sys, rule.Props(cfg), protocol.RulesActor)
	return e
}

// TestForwardedEventsAreAdmitted: an event from another member is asked
// about and, refused, answered as overloaded without a trace in the store;
// an event accepted on this node was admitted there and is not asked again.
func TestForwardedEventsAreAdmitted(t *testing.T) {
	var asked []domain.ID
	e := start(t, func(c *rule.Config) {
		c.Admit = func(ev *domain.Event) error {
			asked = append(asked, ev.ID)
			return errors.New("node n1 is overloaded")
		}
	})
	deploy := map[string]any{"kind": "deploy", "host": "h1"}
	remote := newEvent(t, "t.thing", deploy)
	acc := e.send(remote)
	if !acc.Overloaded || acc.Error != "node n1 is overloaded" || acc.Executions != 0 {
		t.Fatalf("forwarded event refused by Admit answered %+v, want overloaded with its reason", acc)
	}
	if len(e.store.accepted()) != 0 || len(e.started()) != 0 {
		t.Fatalf("a refused event reached the store (%d batches) or started executions (%v)", len(e.store.accepted()), e.started())
	}
	local := newDomainEvent("t.thing", deploy)
	if acc := e.send(&rule.LocalEvent{Event: local}); acc.Overloaded || acc.Error != "" || acc.Executions == 0 {
		t.Fatalf("local event answered %+v, want it stored with its executions", acc)
	}
	if len(asked) != 1 || asked[0] != protocol.ID(remote.Id) {
		t.Errorf("Admit was asked about %v, want only the forwarded event %s", asked, protocol.ID(remote.Id))
	}
}

func newDomainEvent(trigger string, payload map[string]any) *domain.Event {
	now := time.Now().UTC()
	return &domain.Event{ID: domain.NewID(now), Trigger: trigger,
		Instance: domain.TriggerInstance(trigger, nil), Payload: payload, Source: "test", CreatedAt: now}
}

func newEvent(t *testing.T, trigger string, payload map[string]any) *protocol.Event {
	t.Helper()
	ev, err := protocol.NewEvent(newDomainEvent(trigger, payload))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// send delivers ev (a *protocol.Event or a *rule.LocalEvent) to the rule
// actors and returns their answer, once the execution probe has seen
// whatever was started because of it.
func (e *env) send(ev any) *protocol.EventAccepted {
	e.t.Helper()
	var acc *protocol.EventAccepted
	if local, ok := ev.(*rule.LocalEvent); ok {
		accepted := make(chan *protocol.EventAccepted, 1)
		local.Accepted = accepted
		e.sys.Root.Send(e.rules, local)
		select {
		case acc = <-accepted:
		case <-time.After(5 * time.Second):
			e.t.Fatalf("local event %s was not answered", local.Event.ID)
		}
	} else if acc, ok = actortest.Request(e.t, e.sys, e.rules, ev).(*protocol.EventAccepted); !ok {
		e.t.Fatalf("event %v was not answered with EventAccepted", ev)
	}
	e.executions.Sync(e.t) // executions are started before the answer is sent
	return acc
}

func (e *env) started() []domain.ID {
	var out []domain.ID
	for _, s := range actortest.Received[*protocol.StartExecution](e.executions) {
		out = append(out, protocol.ID(s.ExecutionId))
	}
	return out
}

func (e *env) stored(id domain.ID) ([]*domain.Enforcement, []*domain.Execution) {
	e.t.Helper()
	enfs, _, err := e.store.Enforcements(storage.EnforcementFilter{Event: id}, 0, domain.ID{})
	if err != nil {
		e.t.Fatal(err)
	}
	exs, _, err := e.store.Executions(storage.ExecutionFilter{Event: id}, 0, domain.ID{})
	if err != nil {
		e.t.Fatal(err)
	}
	return enfs, exs
}

func TestEventsAreStoredWithWhatTheirRulesCreate(t *testing.T) {
	type enforcement struct {
		rule   string
		status domain.EnforcementStatus
		err    string // a substring of the enforcement's error
	}
	for _, tc := range []struct {
		name         string
		trigger      string
		payload      map[string]any
		enforcements []enforcement
	}{
		{"one of two rules matches", "t.thing", map[string]any{"kind": "deploy", "host": "h1"},
			[]enforcement{{rule: "t.match", status: domain.EnforcementSucceeded}}},
		{"no rule matches", "t.thing", map[string]any{"kind": "restart", "host": "h1"}, nil},
		{"rendered parameters are invalid", "t.other", map[string]any{"host": "h1"},
			[]enforcement{{rule: "t.badparams", status: domain.EnforcementFailed, err: `parameter "count"`}}},
		{"no rule uses the trigger", "t.lonely", map[string]any{"host": "h1"}, nil},
	} {
		// An event from another member arrives as protocol.Event; one accepted
		// on this node as rule.LocalEvent. Both must be treated alike.
		for _, form := range []string{"wire", "local"} {
			t.Run(tc.name+"/"+form, func(t *testing.T) {
				e := start(t)
				dev := newDomainEvent(tc.trigger, tc.payload)
				id := dev.ID
				var ev any = &rule.LocalEvent{Event: dev}
				if form == "wire" {
					var err error
					if ev, err = protocol.NewEvent(dev); err != nil {
						t.Fatal(err)
					}
				}
				wantExecutions := 0
				for _, w := range tc.enforcements {
					if w.status == domain.EnforcementSucceeded {
						wantExecutions++
					}
				}
				acc := e.send(ev)
				if protocol.ID(acc.Id) != id || acc.Duplicate || acc.Error != "" || int(acc.Executions) != wantExecutions {
					t.Fatalf("answer %v, want event %s accepted with %d executions", acc, id, wantExecutions)
				}

				stored, err := e.store.Event(id)
				if err != nil {
					t.Fatalf("event not stored: %v", err)
				}
				if stored.Node != "n1" || stored.Payload["host"] != "h1" {
					t.Errorf("stored event %+v, want node n1 and the payload", stored)
				}
				enfs, exs := e.stored(id)
				if len(enfs) != len(tc.enforcements) || len(exs) != wantExecutions {
					t.Fatalf("stored %d enforcements and %d executions, want %d and %d", len(enfs), len(exs), len(tc.enforcements), wantExecutions)
				}
				if calls := e.store.accepted(); len(calls) != 1 || len(calls[0].enforcements) != len(enfs) || len(calls[0].executions) != len(exs) {
					t.Fatalf("AcceptEvent calls %+v, want one holding the event's enforcements and executions", calls)
				}
				var wantStarted []domain.ID
				for i, w := range tc.enforcements {
					enf := enfs[i]
					if enf.ID != domain.EnforcementID(id, w.rule) || enf.Rule != w.rule || enf.Status != w.status || !strings.Contains(enf.Error, w.err) {
						t.Errorf("enforcement %+v, want rule %s %s with error containing %q", enf, w.rule, w.status, w.err)
					}
					if w.status != domain.EnforcementSucceeded {
						if !enf.Execution.IsZero() {
							t.Errorf("failed enforcement points at execution %s", enf.Execution)
						}
						continue
					}
					ex, err := e.store.Execution(domain.ExecutionIDFor(enf.ID))
					if err != nil {
						t.Fatalf("execution of enforcement %s: %v", enf.ID, err)
					}
					if enf.Execution != ex.ID || ex.Status != domain.StatusRequested || ex.Rule != w.rule || ex.Runtime != "shell" ||
						ex.Parameters["host"] != "h1" || ex.Parameters["count"] != float64(1) {
						t.Errorf("execution %+v, want requested, of rule %s, runtime shell, parameters host=h1 count=1 (default)", ex, w.rule)
					}
					wantStarted = append(wantStarted, ex.ID)
				}
				if got := e.started(); !slices.Equal(got, wantStarted) {
					t.Fatalf("executions started %v, want %v", got, wantStarted)
				}
			})
		}
	}
}

func TestRedeliveredEventIsADuplicate(t *testing.T) {
	e := start(t)
	ev := newEvent(t, "t.thing", map[string]any{"kind": "deploy", "host": "h1"})
	if acc := e.send(ev); acc.Duplicate || acc.Executions != 1 {
		t.Fatalf("first delivery answered %v, want one execution", acc)
	}
	acc := e.send(ev)
	if !acc.Duplicate || acc.Executions != 0 || acc.Error != "" {
		t.Fatalf("second delivery answered %v, want a duplicate with no executions", acc)
	}
	if enfs, exs := e.stored(protocol.ID(ev.Id)); len(enfs) != 1 || len(exs) != 1 {
		t.Fatalf("stored %d enforcements and %d executions, want one of each", len(enfs), len(exs))
	}
	if got := e.started(); len(got) != 1 {
		t.Fatalf("executions started %v, want one", got)
	}
}

func TestMalformedEventIsRefused(t *testing.T) {
	e := start(t)
	ev := newEvent(t, "t.thing", map[string]any{"kind": "deploy"})
	ev.PayloadJson = []byte(`[1, 2]`)
	acc := e.send(ev)
	if !strings.Contains(acc.Error, "malformed event") {
		t.Fatalf("answer %v, want an error naming the malformed event", acc)
	}
	if _, err := e.store.Event(protocol.ID(ev.Id)); err == nil {
		t.Fatal("malformed event was stored")
	}
	if calls := e.store.accepted(); len(calls) != 0 {
		t.Fatalf("AcceptEvent called %d times for a malformed event", len(calls))
	}
}

// Many events in flight at once (commits share fsyncs) are each stored with
// their execution exactly once.
func TestConcurrentEvents(t *testing.T) {
	e := start(t)
	const n = 100
	var futures []*actor.Future
	var evs []*protocol.Event
	for i := range n {
		ev := newEvent(t, "t.thing", map[string]any{"kind": "deploy", "host": fmt.Sprint("h", i)})
		evs = append(evs, ev)
		futures = append(futures, e.sys.Root.RequestFuture(e.rules, ev, 10*time.Second))
	}
	for i, f := range futures {
		res, err := f.Result()
		if acc, ok := res.(*protocol.EventAccepted); err != nil || !ok || acc.Executions != 1 {
			t.Fatalf("event %d answered %v (%v), want one execution", i, res, err)
		}
	}
	e.executions.Sync(t)
	if got := len(e.started()); got != n {
		t.Fatalf("%d executions started, want %d", got, n)
	}
	for _, ev := range evs {
		if _, exs := e.stored(protocol.ID(ev.Id)); len(exs) != 1 {
			t.Fatalf("event %s has %d executions, want 1", protocol.ID(ev.Id), len(exs))
		}
	}
}

// TestSetRulesSwapsTheRulesWithoutDroppingEvents: events sent before the
// swap are all answered, and events after it see only the new rules.
func TestSetRulesSwapsTheRulesWithoutDroppingEvents(t *testing.T) {
	e := start(t)
	_, compiled := loadCatalog(t)
	var keep []*rules.Compiled // t.nomatch only: deploys stop matching
	for _, c := range compiled {
		if c.Rule.Ref == "t.nomatch" {
			keep = append(keep, c)
		}
	}
	deploy := map[string]any{"kind": "deploy", "host": "h1"}
	var before []*actor.Future
	for range 50 {
		before = append(before, e.sys.Root.RequestFuture(e.rules, newEvent(t, "t.thing", deploy), 10*time.Second))
	}
	e.sys.Root.Send(e.rules, &rule.SetRules{Rules: keep})
	for i, f := range before {
		res, err := f.Result()
		if err != nil {
			t.Fatalf("event %d sent before the swap got no answer: %v", i, err)
		}
		if acc := res.(*protocol.EventAccepted); acc.Error != "" {
			t.Fatalf("event %d: %s", i, acc.Error)
		}
	}
	ev := newEvent(t, "t.thing", deploy)
	if acc := e.send(ev); acc.Error != "" || acc.Executions != 0 {
		t.Fatalf("after the swap a deploy created %d executions (error %q), want 0: t.match is gone", acc.Executions, acc.Error)
	}
	if enfs, _ := e.stored(protocol.ID(ev.Id)); len(enfs) != 0 {
		t.Fatalf("after the swap: %d enforcements, want none", len(enfs))
	}
}
