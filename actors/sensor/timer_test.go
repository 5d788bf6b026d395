package sensor

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupehq/troupe/actors/actortest"
	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/metrics"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestScheduleNext(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trigger string
		params  map[string]any
		after   string
		want    string // "" when there is no next tick
	}{
		{"interval from inside a period", "core.intervaltimer", map[string]any{"unit": "seconds", "delta": 10}, "2024-05-01T12:00:03Z", "2024-05-01T12:00:10Z"},
		{"interval from a tick is strictly after it", "core.intervaltimer", map[string]any{"unit": "seconds", "delta": 10}, "2024-05-01T12:00:10Z", "2024-05-01T12:00:20Z"},
		{"interval delta decoded from JSON", "core.intervaltimer", map[string]any{"unit": "seconds", "delta": 15.0}, "2024-05-01T12:00:00.5Z", "2024-05-01T12:00:15Z"},
		{"interval in minutes", "core.intervaltimer", map[string]any{"unit": "minutes", "delta": 5}, "2024-05-01T12:07:00.5Z", "2024-05-01T12:10:00Z"},
		{"interval in hours", "core.intervaltimer", map[string]any{"unit": "hours", "delta": 1}, "2024-05-01T12:59:59.999Z", "2024-05-01T13:00:00Z"},
		{"interval in days is aligned to UTC midnight", "core.intervaltimer", map[string]any{"unit": "days", "delta": 1}, "2024-05-01T23:00:00+02:00", "2024-05-02T00:00:00Z"},
		{"cron with seconds", "core.crontimer", map[string]any{"expression": "*/15 * * * * *"}, "2024-05-01T12:00:07Z", "2024-05-01T12:00:15Z"},
		{"cron in a timezone, winter", "core.crontimer", map[string]any{"expression": "30 0 9 * * *", "timezone": "America/New_York"}, "2024-01-15T15:00:00Z", "2024-01-16T14:00:30Z"},
		{"cron in a timezone, summer", "core.crontimer", map[string]any{"expression": "30 0 9 * * *", "timezone": "America/New_York"}, "2024-07-15T12:00:00Z", "2024-07-15T13:00:30Z"},
		{"cron across a DST change", "core.crontimer", map[string]any{"expression": "0 0 3 * * *", "timezone": "Europe/Berlin"}, "2024-03-31T00:30:00Z", "2024-03-31T01:00:00Z"},
		{"cron descriptor", "core.crontimer", map[string]any{"expression": "@hourly"}, "2024-05-01T12:00:00Z", "2024-05-01T13:00:00Z"},
		{"date in the future", "core.datetimer", map[string]any{"date": "2030-01-02T15:04:05Z"}, "2029-12-31T00:00:00Z", "2030-01-02T15:04:05Z"},
		{"date with an offset", "core.datetimer", map[string]any{"date": "2030-01-02T15:04:05+01:00", "timezone": "UTC"}, "2029-12-31T00:00:00Z", "2030-01-02T14:04:05Z"},
		// The pack loader accepts dates without an offset, read in the
		// timezone (packs.ParseDate); the timer must read them the same way.
		{"date without an offset, in the timezone", "core.datetimer", map[string]any{"date": "2030-07-02T15:04:05", "timezone": "Europe/Berlin"}, "2029-12-31T00:00:00Z", "2030-07-02T13:04:05Z"},
		{"date with a space, in the timezone", "core.datetimer", map[string]any{"date": "2030-01-02 15:04:05", "timezone": "America/New_York"}, "2029-12-31T00:00:00Z", "2030-01-02T20:04:05Z"},
		{"date now is past", "core.datetimer", map[string]any{"date": "2030-01-02T15:04:05Z"}, "2030-01-02T15:04:05Z", ""},
		{"date in the past", "core.datetimer", map[string]any{"date": "2020-01-02T15:04:05Z"}, "2024-05-01T12:00:00Z", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSchedule(tc.trigger, tc.params)
			if err != nil || s == nil {
				t.Fatalf("NewSchedule(%s, %v) = %v, %v; want a schedule", tc.trigger, tc.params, s, err)
			}
			next, ok := s.Next(at(tc.after))
			switch {
			case tc.want == "" && ok:
				t.Fatalf("Next(%s) = %s, want no further tick", tc.after, next)
			case tc.want != "" && (!ok || !next.Equal(at(tc.want))):
				t.Fatalf("Next(%s) = %s, %v; want %s", tc.after, next, ok, tc.want)
			}
		})
	}
}

// Every node computes the same ticks: any instant's next tick is the first
// multiple of the period (counted from the epoch) strictly after it.
func TestIntervalTicksAreAlignedToTheEpoch(t *testing.T) {
	for _, p := range []map[string]any{
		{"unit": "seconds", "delta": 7}, {"unit": "minutes", "delta": 13}, {"unit": "hours", "delta": 5}, {"unit": "days", "delta": 3},
	} {
		s, err := NewSchedule("core.intervaltimer", p)
		if err != nil {
			t.Fatal(err)
		}
		period := units[p["unit"].(string)] * time.Duration(p["delta"].(int))
		for from := at("2024-02-28T21:13:17.123456789Z"); from.Before(at("2024-03-02T00:00:00Z")); from = from.Add(period/3 + 17*time.Millisecond) {
			next, ok := s.Next(from)
			if !ok || next.UnixNano()%int64(period) != 0 || !next.After(from) || next.Sub(from) > period {
				t.Fatalf("every %v: Next(%s) = %s, %v; want the first multiple of the period after it", period, from, next, ok)
			}
		}
	}
}

func TestNewScheduleRejectsBadParameters(t *testing.T) {
	for _, tc := range []struct {
		trigger string
		params  map[string]any
		want    string
	}{
		{"core.intervaltimer", map[string]any{"unit": "weeks", "delta": 1}, "bad unit"},
		{"core.intervaltimer", map[string]any{"unit": "seconds", "delta": 0}, "bad unit"},
		{"core.intervaltimer", map[string]any{"unit": "seconds", "delta": 1.5}, "bad unit"},
		{"core.crontimer", map[string]any{"expression": "* * * * *"}, "cron timer"},
		{"core.crontimer", map[string]any{"expression": "* * * * * *", "timezone": "Mars/Olympus"}, `timezone "Mars/Olympus"`},
		{"core.datetimer", map[string]any{"date": "tomorrow"}, `"tomorrow"`},
		{"core.datetimer", map[string]any{"date": "2030-01-02T15:04:05+01:00", "timezone": "Asia/Tokyo"}, "not both"},
	} {
		if s, err := NewSchedule(tc.trigger, tc.params); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewSchedule(%s, %v) = %v, %v; want an error containing %q", tc.trigger, tc.params, s, err, tc.want)
		}
	}
	if s, err := NewSchedule("core.webhook", map[string]any{"url": "x"}); s != nil || err != nil {
		t.Errorf("NewSchedule(core.webhook) = %v, %v; want no schedule and no error", s, err)
	}
}

// TestTimerTicksGoWhereAcceptSays: on a member without the rule role,
// ticks go to the rules actor Accept names (another member's), never to a
// local one; while Accept finds none, ticks are dropped and the timer keeps
// its schedule.
func TestTimerTicksGoWhereAcceptSays(t *testing.T) {
	sys := actortest.NewSystem(t)
	accepted := func(ctx actor.Context, msg any) {
		if ev, ok := msg.(*protocol.Event); ok {
			ctx.Respond(&protocol.EventAccepted{Id: ev.Id})
		}
	}
	local := actortest.NewProbe(t, sys, protocol.RulesActor, accepted)
	elsewhere := actortest.NewProbe(t, sys, "rules-of-a-rule-member", accepted)
	var none atomic.Bool
	cfg := Config{Accept: func(domain.ID) (*actor.PID, error) {
		if none.Load() {
			return nil, errors.New("no live member has the rule role")
		}
		return elsewhere.PID, nil
	}}
	period := 100 * time.Millisecond
	tm := &timer{trigger: "core.intervaltimer", instance: "every 100ms", sched: interval(period),
		fenced: func() string { return "" }, accept: cfg.accept, lag: metrics.Discard().TimerLag.WithLabelValues("t"),
		log: actortest.Logger(t)}
	actortest.Spawn(t, sys, actor.PropsFromProducer(func() actor.Actor { return tm }), "timer")

	ticks := func() int { elsewhere.Sync(t); return len(actortest.Received[*protocol.Event](elsewhere)) }
	actortest.WaitFor(t, 5*time.Second, func() error {
		if n := ticks(); n < 3 {
			return fmt.Errorf("the rule member got %d ticks, want 3", n)
		}
		return nil
	})
	none.Store(true)
	time.Sleep(3 * period) // a tick in flight may still land
	dropped := ticks()
	time.Sleep(5 * period)
	if n := ticks(); n != dropped {
		t.Errorf("the rule member got %d ticks while Accept found none, want none", n-dropped)
	}
	none.Store(false)
	actortest.WaitFor(t, 5*time.Second, func() error {
		if n := ticks(); n < dropped+2 {
			return fmt.Errorf("the rule member got %d ticks since Accept found it again, want 2", n-dropped)
		}
		return nil
	})
	local.Sync(t)
	if n := len(local.Messages()); n != 0 {
		t.Errorf("this member's own rules actor got %d messages, want none", n)
	}
}

func TestTickEventIDIsDeterministic(t *testing.T) {
	tick := at("2024-05-01T12:00:10Z")
	a := "core.intervaltimer" + `{"delta":10,"unit":"seconds"}`
	b := "core.intervaltimer" + `{"delta":20,"unit":"seconds"}`
	id := func(inst string, at time.Time) string {
		return TickEvent("core.intervaltimer", inst, nil, at).ID.String()
	}
	for _, tc := range []struct {
		name string
		same bool
		x, y string
	}{
		{"same instance and tick", true, id(a, tick), id(a, tick)},
		{"another instance", false, id(a, tick), id(b, tick)},
		{"another tick", false, id(a, tick), id(a, tick.Add(10*time.Second))},
		{"a millisecond apart", false, id(a, tick), id(a, tick.Add(time.Millisecond))},
	} {
		if (tc.x == tc.y) != tc.same {
			t.Errorf("%s: IDs %s and %s, want same=%v", tc.name, tc.x, tc.y, tc.same)
		}
	}
	ev := TickEvent("core.intervaltimer", a, map[string]any{"unit": "seconds", "delta": 10}, tick)
	if !ev.ID.Time().Equal(tick) || !ev.CreatedAt.Equal(tick) || ev.Payload["executed_at"] != "2024-05-01T12:00:10Z" || ev.Instance != a {
		t.Errorf("tick event %+v, want it dated at the tick, of instance %s", ev, a)
	}
}
