package sensor

import (
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/metrics"
)

// Interpreter returns the program that runs a script of runtime name, e.g.
// ["/usr/bin/python3.11"] for python.
type Interpreter func(runtime string) ([]string, error)

// Config wires the sensors of one node.
type Config struct {
	Node string
	// Rules are the enabled rules; their timer triggers become timers.
	Rules []*domain.Rule
	// Sensors are the enabled script sensors to supervise.
	Sensors     []*domain.Sensor
	Interpreter Interpreter
	// Env is the base environment of sensor processes.
	Env []string
	// MaxBackoff caps the delay between restarts of a failing sensor. Default 60s.
	MaxBackoff time.Duration
	Metrics    *metrics.Metrics // default: registered nowhere
	Logger     *slog.Logger
}

// Props returns the keeper's props; spawn it named protocol.SensorsActor.
func Props(cfg Config) *actor.Props {
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.Discard()
	}
	return actor.PropsFromProducer(func() actor.Actor { return &keeper{cfg: cfg} })
}

type keeper struct{ cfg Config }

func (k *keeper) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Started); !ok {
		return
	}
	started := map[string]bool{}
	for _, r := range k.cfg.Rules {
		inst := domain.TriggerInstance(r.Trigger.Type, r.Trigger.Parameters)
		if started[inst] {
			continue
		}
		sched, err := NewSchedule(r.Trigger.Type, r.Trigger.Parameters)
		if err != nil {
			k.cfg.Logger.Error("timer not started", "rule", r.Ref, "err", err)
			continue
		}
		if sched == nil {
			continue // not a timer trigger
		}
		started[inst] = true
		t := &timer{trigger: r.Trigger.Type, lag: k.cfg.Metrics.TimerLag.WithLabelValues(r.Trigger.Type), params: r.Trigger.Parameters, instance: inst, sched: sched,
			log: k.cfg.Logger.With("component", "timer", "trigger", inst)}
		ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return t }))
	}
	for _, s := range k.cfg.Sensors {
		sup := &supervisor{cfg: k.cfg, sensor: s, log: k.cfg.Logger.With("component", "sensor", "sensor", s.Ref)}
		ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return sup }))
	}
	k.cfg.Logger.Info("sensors started", "timers", len(started), "scripts", len(k.cfg.Sensors))
}
