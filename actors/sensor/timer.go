package sensor

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"

	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/packs"
)

// Schedule yields the tick times of a timer trigger.
type Schedule interface {
	// Next returns the first tick strictly after t, or false when there is none.
	Next(t time.Time) (time.Time, bool)
}

var cronParser = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

var units = map[string]time.Duration{"seconds": time.Second, "minutes": time.Minute, "hours": time.Hour, "days": 24 * time.Hour}

// NewSchedule builds the schedule of a core timer trigger; (nil, nil) for
// trigger types that are not timers. Parameters were validated at pack load.
func NewSchedule(triggerType string, p map[string]any) (Schedule, error) {
	loc := time.UTC
	if tz, _ := p["timezone"].(string); tz != "" {
		var err error
		if loc, err = time.LoadLocation(tz); err != nil {
			return nil, fmt.Errorf("timezone %q: %w", tz, err)
		}
	}
	switch triggerType {
	case "core.intervaltimer":
		unit, ok := units[fmt.Sprint(p["unit"])]
		delta, err := strconv.ParseInt(fmt.Sprint(p["delta"]), 10, 64)
		if !ok || err != nil || delta < 1 {
			return nil, fmt.Errorf("interval timer: bad unit %v or delta %v", p["unit"], p["delta"])
		}
		return interval(unit * time.Duration(delta)), nil
	case "core.crontimer":
		s, err := cronParser.Parse(fmt.Sprint(p["expression"]))
		if err != nil {
			return nil, fmt.Errorf("cron timer: %w", err)
		}
		return cronSchedule{s: s, loc: loc}, nil
	case "core.datetimer":
		tz, _ := p["timezone"].(string)
		at, err := packs.ParseDate(fmt.Sprint(p["date"]), tz)
		if err != nil {
			return nil, fmt.Errorf("date timer: %w", err)
		}
		return once(at), nil
	}
	return nil, nil
}

// interval ticks are aligned to the epoch, so every node and every restart
// agrees on which instants are ticks, and hence on their event IDs.
type interval time.Duration

func (d interval) Next(t time.Time) (time.Time, bool) {
	p := int64(d)
	return time.Unix(0, (t.UnixNano()/p+1)*p), true
}

type cronSchedule struct {
	s   cron.Schedule
	loc *time.Location
}

func (c cronSchedule) Next(t time.Time) (time.Time, bool) {
	n := c.s.Next(t.In(c.loc))
	return n, !n.IsZero()
}

type once time.Time

func (o once) Next(t time.Time) (time.Time, bool) {
	at := time.Time(o)
	return at, at.After(t)
}

// TickEvent is the event of the tick at `at` of a timer instance. Its ID is
// derived from both, which is what makes a doubly fired tick one event.
func TickEvent(triggerType, instance string, params map[string]any, at time.Time) *domain.Event {
	return &domain.Event{
		ID:        domain.DeriveID(at, "tick", instance, strconv.FormatInt(at.UnixMilli(), 10)),
		Trigger:   triggerType,
		Instance:  instance,
		Payload:   map[string]any{"executed_at": at.UTC().Format(time.RFC3339Nano), "schedule": params},
		Source:    "timer " + instance,
		CreatedAt: at.UTC(),
	}
}

// fire travels only from a timer's clock to the timer itself.
type fire struct{ at time.Time }

type timer struct {
	trigger  string
	params   map[string]any
	instance string
	sched    Schedule
	clock    *time.Timer
	fenced   func() string
	accept   func(*actor.ActorSystem, domain.ID) (*actor.PID, error)
	lag      prometheus.Observer
	log      *slog.Logger
}

func (t *timer) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		// Misfire policy "skip": ticks missed while no node ran this timer
		// are not fired late; the next tick is the first one after now.
		t.arm(ctx, time.Now())
	case *actor.Stopping:
		if t.clock != nil {
			t.clock.Stop()
		}
	case fire:
		t.lag.Observe(time.Since(msg.at).Seconds())
		ev, err := protocol.NewEvent(TickEvent(t.trigger, t.instance, t.params, msg.at))
		if reason := t.fenced(); reason != "" {
			// Cut off from most of the cluster, this member may be the one
			// presumed dead while another already fires this timer: a tick
			// skipped is better than a tick run twice.
			t.log.Warn("tick skipped: this member is fenced", "tick", msg.at, "reason", reason)
		} else if err != nil {
			t.log.Error("encode tick", "err", err)
		} else if rules, err := t.accept(ctx.ActorSystem(), protocol.ID(ev.Id)); err != nil {
			t.log.Error("tick not delivered", "tick", msg.at, "err", err)
		} else {
			ctx.Request(rules, ev)
		}
		t.arm(ctx, maxTime(msg.at, time.Now().Add(-time.Millisecond)))
	case *protocol.EventAccepted:
		if msg.Error != "" {
			t.log.Error("tick not accepted", "event", protocol.ID(msg.Id), "err", msg.Error)
		}
	}
}

func (t *timer) arm(ctx actor.Context, after time.Time) {
	next, ok := t.sched.Next(after)
	if !ok {
		t.log.Info("timer has no further ticks")
		return
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	t.clock = time.AfterFunc(time.Until(next), func() { root.Send(self, fire{at: next}) })
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
