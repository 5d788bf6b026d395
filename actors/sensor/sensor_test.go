package sensor

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/troupehq/troupe/actors/actortest"
	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/runtimes"
)

// activate runs every sensor cfg describes as the cluster would on the
// member owning it: one grain per identity, initialised with it. It returns
// a probe standing in for the rule actors, which accepts every event.
func activate(t *testing.T, cfg Config) *actortest.Probe {
	t.Helper()
	rules, _ := activateSet(t, actortest.NewSystem(t), cfg)
	return rules
}

// activateSet is activate in sys, also returning the sensor set.
func activateSet(t *testing.T, sys *actor.ActorSystem, cfg Config) (*actortest.Probe, *Set) {
	t.Helper()
	rules := actortest.NewProbe(t, sys, protocol.RulesActor, func(ctx actor.Context, msg any) {
		if ev, ok := msg.(*protocol.Event); ok {
			ctx.Respond(&protocol.EventAccepted{Id: ev.Id})
		}
	})
	cfg.Logger = actortest.Logger(t)
	set := NewSet(cfg)
	for id := range set.current() {
		pid := actortest.Spawn(t, sys, actor.PropsFromProducer(func() actor.Actor { return &grain{set: set} }), id)
		sys.Root.Send(pid, &protocluster.ClusterInit{Identity: &protocluster.ClusterIdentity{Identity: id, Kind: Kind}})
	}
	return rules, set
}

func events(t *testing.T, p *actortest.Probe) []*domain.Event {
	t.Helper()
	var out []*domain.Event
	for _, m := range actortest.Received[*protocol.Event](p) {
		ev, err := m.Domain()
		if err != nil {
			t.Fatalf("event %s: %v", protocol.ID(m.Id), err)
		}
		out = append(out, ev)
	}
	return out
}

func TestTimerFiresAlignedTicks(t *testing.T) {
	params := map[string]any{"unit": "seconds", "delta": 1}
	instance := domain.TriggerInstance("core.intervaltimer", params)
	rule := func(name, typ string, p map[string]any) *domain.Rule {
		return &domain.Rule{Ref: "t." + name, Enabled: true, Trigger: domain.RuleTrigger{Type: typ, Parameters: p}}
	}
	rules := activate(t, Config{Node: "n1", Rules: []*domain.Rule{
		rule("a", "core.intervaltimer", params),
		rule("b", "core.intervaltimer", params), // the same instance: one timer for both
		rule("hook", "core.webhook", map[string]any{"url": "x"}),
	}})

	actortest.WaitFor(t, 10*time.Second, func() error {
		if n := len(events(t, rules)); n < 3 {
			return fmt.Errorf("%d ticks, want 3", n)
		}
		return nil
	})
	evs := events(t, rules)
	for i, ev := range evs {
		want := TickEvent("core.intervaltimer", instance, params, ev.CreatedAt)
		if ev.CreatedAt.UnixNano()%int64(time.Second) != 0 || ev.ID != want.ID || ev.Instance != instance ||
			ev.Payload["executed_at"] != want.Payload["executed_at"] {
			t.Errorf("tick %d: %+v, want an aligned tick of %s with ID %s", i, ev, instance, want.ID)
		}
		if i > 0 && ev.CreatedAt.Sub(evs[i-1].CreatedAt) != time.Second {
			t.Errorf("tick %d at %s follows %s, want one second later", i, ev.CreatedAt, evs[i-1].CreatedAt)
		}
	}
}

// TestUpdateStopsRemovedTimersAndKeepsTheOthers: after a pack change drops a
// timer's last rule, its grain on this member stops and fires no more,
// while a timer whose rules remain keeps its grain (no restart, no gap).
func TestUpdateStopsRemovedTimersAndKeepsTheOthers(t *testing.T) {
	rule := func(name string, delta int) *domain.Rule {
		return &domain.Rule{Ref: "t." + name, Enabled: true,
			Trigger: domain.RuleTrigger{Type: "core.intervaltimer", Parameters: map[string]any{"unit": "seconds", "delta": delta}}}
	}
	keep, drop := rule("keep", 1), rule("drop", 2)
	rules, set := activateSet(t, actortest.NewSystem(t), Config{Node: "n1", Rules: []*domain.Rule{keep, drop}})
	byInstance := func() map[string]int {
		n := map[string]int{}
		for _, ev := range events(t, rules) {
			n[ev.Instance]++
		}
		return n
	}
	keepInst, dropInst := domain.TriggerInstance("core.intervaltimer", keep.Trigger.Parameters), domain.TriggerInstance("core.intervaltimer", drop.Trigger.Parameters)
	actortest.WaitFor(t, 10*time.Second, func() error {
		if n := byInstance()[dropInst]; n < 1 {
			return fmt.Errorf("the 2 s timer fired %d times, want 1", n)
		}
		return nil
	})
	set.mu.Lock()
	before := set.here
	set.mu.Unlock()
	keptPID := before[timerID(t, set, keepInst)].pid

	set.Update([]*domain.Rule{keep}, nil)
	after := byInstance()
	time.Sleep(2500 * time.Millisecond)
	now := byInstance()
	if now[dropInst] != after[dropInst] {
		t.Errorf("the removed 2 s timer fired %d more times after Update", now[dropInst]-after[dropInst])
	}
	if now[keepInst] < after[keepInst]+2 {
		t.Errorf("the kept 1 s timer fired %d times in 2.5 s after Update, want ≥ 2", now[keepInst]-after[keepInst])
	}
	set.mu.Lock()
	defer set.mu.Unlock()
	if r, ok := set.here[timerID(t, set, keepInst)]; !ok || !r.pid.Equal(keptPID) {
		t.Errorf("the kept timer's grain was restarted or lost: %v → %v", keptPID, r.pid)
	}
	if len(set.here) != 1 {
		t.Errorf("%d grains still registered here, want 1", len(set.here))
	}
}

// timerID is the grain identity of a timer instance in the set.
func timerID(t *testing.T, set *Set, instance string) string {
	t.Helper()
	for id, d := range set.current() {
		if d.instance == instance {
			return id
		}
	}
	t.Fatalf("no grain runs %s", instance)
	return ""
}

// The script prints, each time it starts, two good events numbered by run, a
// line that is not JSON and an event of a trigger it does not declare, then
// exits; it counts its starts in a file next to it.
const script = `echo started >> starts
run=$(wc -l < starts)
echo '{"trigger": "t.a", "payload": {"run": '$run', "line": 1}}'
echo 'this is not json'
echo '{"trigger": "t.undeclared", "payload": {"run": '$run'}}'
echo '{"trigger": "t.a", "payload": {"run": '$run', "line": 2}}'
`

func TestScriptSensorDeliversGoodLinesAndIsRestarted(t *testing.T) {
	dir := t.TempDir()
	entry := filepath.Join(dir, "watch.sh")
	if err := os.WriteFile(entry, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	reg, err := runtimes.NewRegistry(runtimes.DefaultConfig(), []string{"shell"})
	if err != nil {
		t.Fatal(err)
	}
	rules := activate(t, Config{Node: "n1", Interpreter: reg.Interpreter, Env: runtimes.DefaultConfig().Env, MaxBackoff: time.Second,
		Sensors: []*domain.Sensor{{Ref: "t.watch", Runtime: "shell", EntryPoint: entry, TriggerTypes: []string{"t.a"}, Enabled: true}}})

	// A run's events are accepted one after the other, so once the second
	// run's last event is in, both runs have delivered all they will.
	type line struct{ run, line float64 }
	var got []line
	actortest.WaitFor(t, 10*time.Second, func() error {
		got = nil
		for _, ev := range events(t, rules) {
			got = append(got, line{ev.Payload["run"].(float64), ev.Payload["line"].(float64)})
		}
		if !slices.Contains(got, line{2, 2}) {
			return fmt.Errorf("events %v, want the second run's second event", got)
		}
		return nil
	})
	if want := []line{{1, 1}, {1, 2}, {2, 1}, {2, 2}}; !slices.Equal(got[:4], want) {
		t.Fatalf("events %v, want %v first", got, want)
	}
	ids := map[domain.ID]bool{}
	for _, ev := range events(t, rules) {
		if ev.Trigger != "t.a" || ev.Instance != "t.a" || ev.Source != "sensor t.watch" || ev.ID.IsZero() || ids[ev.ID] {
			t.Errorf("event %+v, want a fresh t.a event from sensor t.watch", ev)
		}
		ids[ev.ID] = true
	}
	starts, err := os.ReadFile(filepath.Join(dir, "starts"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(starts), "\n"); n < 2 {
		t.Fatalf("script started %d times, want it restarted after it exited", n)
	}
}

// A fenced member's timer skips its ticks, and fires again once the fence
// lifts.
func TestFencedTimerSkipsTicks(t *testing.T) {
	var fenced atomic.Bool
	fenced.Store(true)
	params := map[string]any{"unit": "seconds", "delta": 1}
	rules := activate(t, Config{Node: "n1", Rules: []*domain.Rule{
		{Ref: "t.a", Enabled: true, Trigger: domain.RuleTrigger{Type: "core.intervaltimer", Parameters: params}},
	}, Fenced: func() string {
		if fenced.Load() {
			return "only 1 of 3 members reachable"
		}
		return ""
	}})
	// Two ticks' worth of time pass with no event; then the fence lifts.
	deadline := time.Now().Add(2100 * time.Millisecond)
	actortest.WaitFor(t, 5*time.Second, func() error {
		if n := len(events(t, rules)); n > 0 {
			t.Fatalf("a fenced timer fired %d ticks", n)
		}
		if time.Now().Before(deadline) {
			return fmt.Errorf("still watching the fenced timer")
		}
		return nil
	})
	fenced.Store(false)
	actortest.WaitFor(t, 5*time.Second, func() error {
		if len(events(t, rules)) == 0 {
			return fmt.Errorf("no tick since the fence lifted")
		}
		return nil
	})
}
