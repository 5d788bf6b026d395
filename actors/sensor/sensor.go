package sensor

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/metrics"
)

// Kind is the protoactor cluster kind of sensor grains: each timer
// instance and each script sensor is one grain, activated on the member
// that owns its identity. Only members with the sensor role register it.
const Kind = "sensor"

// Interpreter returns the program that runs a script of runtime name, e.g.
// ["/usr/bin/python3.11"] for python.
type Interpreter func(runtime string) ([]string, error)

// Config describes the sensors of the cluster; every sensor-role member is
// given the same one (from the same packs), so they agree on identities.
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
	// Fenced, when it returns a reason, stops timers on this member from
	// firing: the member sees too few others to trust it still owns them.
	// Default: never fenced.
	Fenced func() string
	// Touch is how often the keeper re-activates every sensor; it bounds how
	// long a sensor stays down after its member is declared dead. Default 1s.
	Touch   time.Duration
	Metrics *metrics.Metrics // default: registered nowhere
	Logger  *slog.Logger
}

func (cfg *Config) defaults() {
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Minute
	}
	if cfg.Touch <= 0 {
		cfg.Touch = time.Second
	}
	if cfg.Fenced == nil {
		cfg.Fenced = func() string { return "" }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.Discard()
	}
}

// definition is what one grain runs: a timer or a script sensor.
type definition struct {
	trigger  string
	params   map[string]any
	instance string
	sched    Schedule
	sensor   *domain.Sensor
}

// definitions maps grain identities to what they run. Identities are
// hashes, since trigger parameters (cron's "*/5") are no actor names.
func definitions(cfg Config) map[string]*definition {
	defs := map[string]*definition{}
	for _, r := range cfg.Rules {
		inst := domain.TriggerInstance(r.Trigger.Type, r.Trigger.Parameters)
		sum := sha256.Sum256([]byte(inst))
		id := "timer-" + hex.EncodeToString(sum[:10])
		if defs[id] != nil {
			continue
		}
		sched, err := NewSchedule(r.Trigger.Type, r.Trigger.Parameters)
		if err != nil {
			cfg.Logger.Error("timer not started", "rule", r.Ref, "err", err)
			continue
		}
		if sched != nil {
			defs[id] = &definition{trigger: r.Trigger.Type, params: r.Trigger.Parameters, instance: inst, sched: sched}
		}
	}
	for _, s := range cfg.Sensors {
		defs["script-"+s.Ref] = &definition{sensor: s}
	}
	return defs
}

// NewKind returns the grain kind a sensor-role member registers.
func NewKind(cfg Config) *protocluster.Kind {
	cfg.defaults()
	defs := definitions(cfg)
	return protocluster.NewKind(Kind, actor.PropsFromProducer(func() actor.Actor {
		return &grain{cfg: cfg, defs: defs}
	}))
}

// grain hosts one sensor on the member that owns its identity. protoactor
// stops it when ownership moves (a member joined or left), and the keepers'
// next touch starts it on the new owner.
type grain struct {
	cfg  Config
	defs map[string]*definition
}

func (g *grain) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *protocluster.ClusterInit:
		def := g.defs[msg.Identity.Identity]
		if def == nil {
			g.cfg.Logger.Warn("unknown sensor identity; is this member's pack set different?", "identity", msg.Identity.Identity)
			return
		}
		var a actor.Actor
		if def.sensor != nil {
			a = &supervisor{cfg: g.cfg, sensor: def.sensor, log: g.cfg.Logger.With("component", "sensor", "sensor", def.sensor.Ref)}
		} else {
			a = &timer{trigger: def.trigger, params: def.params, instance: def.instance, sched: def.sched, fenced: g.cfg.Fenced,
				lag: g.cfg.Metrics.TimerLag.WithLabelValues(def.trigger),
				log: g.cfg.Logger.With("component", "timer", "trigger", def.instance)}
		}
		ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return a }))
		g.cfg.Logger.Info("sensor activated here", "component", "sensor", "identity", msg.Identity.Identity)
	case *protocol.Touch:
		ctx.Respond(&protocol.Touched{Node: g.cfg.Node})
	}
}

// Keeper touches every sensor grain periodically, so each runs somewhere
// without anyone asking. Every sensor-role member runs one; touches are
// idempotent, so more keepers only mean faster recovery.
type Keeper struct {
	stop    chan struct{}
	done    sync.WaitGroup
	touches sync.WaitGroup
}

// StartKeeper starts touching; Stop ends it.
func StartKeeper(cfg Config, c *protocluster.Cluster) *Keeper {
	cfg.defaults()
	defs := definitions(cfg)
	k := &Keeper{stop: make(chan struct{})}
	k.done.Add(1)
	go func() {
		defer k.done.Done()
		tick := time.NewTicker(cfg.Touch)
		defer tick.Stop()
		// Rounds do not wait for touches: protoactor's activation request has
		// a fixed 5s timeout, and one stuck on a member that died must not
		// hold back the touch that activates the sensor elsewhere once the
		// death is known. Two in flight per sensor at most.
		inflight := make(map[string]*atomic.Int32, len(defs))
		for id := range defs {
			inflight[id] = new(atomic.Int32)
		}
		for {
			for id, n := range inflight {
				if n.Add(1) > 2 {
					n.Add(-1)
					continue
				}
				k.touches.Go(func() {
					defer n.Add(-1)
					if _, err := c.Request(id, Kind, &protocol.Touch{}, protocluster.WithTimeout(cfg.Touch), protocluster.WithRetryCount(1)); err != nil {
						cfg.Logger.Debug("sensor touch failed; retrying next round", "identity", id, "err", err)
					}
				})
			}
			select {
			case <-k.stop:
				return
			case <-tick.C:
			}
		}
	}()
	cfg.Logger.Info("sensor keeper started", "component", "sensor", "sensors", len(defs))
	return k
}

// Stop ends the touching and waits for the touches in flight.
func (k *Keeper) Stop() {
	close(k.stop)
	k.done.Wait()
	k.touches.Wait()
}
