package sensor

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"reflect"
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
	// Accept returns the rules actor that evaluates and stores the event
	// of that ID: this member's own, or when it lacks the rule role, one of
	// a member that has it; an error says why there is none. Default: this
	// member's rules actor.
	Accept func(domain.ID) (*actor.PID, error)
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

// accept is the rules actor an event of this member's sensors goes to.
func (cfg Config) accept(system *actor.ActorSystem, id domain.ID) (*actor.PID, error) {
	if cfg.Accept == nil {
		return actor.NewPID(system.Address(), protocol.RulesActor), nil
	}
	return cfg.Accept(id)
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
func definitions(rules []*domain.Rule, sensors []*domain.Sensor, log *slog.Logger) map[string]*definition {
	defs := map[string]*definition{}
	for _, r := range rules {
		inst := domain.TriggerInstance(r.Trigger.Type, r.Trigger.Parameters)
		sum := sha256.Sum256([]byte(inst))
		id := "timer-" + hex.EncodeToString(sum[:10])
		if defs[id] != nil {
			continue
		}
		sched, err := NewSchedule(r.Trigger.Type, r.Trigger.Parameters)
		if err != nil {
			log.Error("timer not started", "rule", r.Ref, "err", err)
			continue
		}
		if sched != nil {
			defs[id] = &definition{trigger: r.Trigger.Type, params: r.Trigger.Parameters, instance: inst, sched: sched}
		}
	}
	for _, s := range sensors {
		defs["script-"+s.Ref] = &definition{sensor: s}
	}
	return defs
}

// same says whether a grain running d can keep running as e. A timer's
// identity already names its trigger instance; a script sensor's names
// only its ref, so a new pack version must restart it.
func (d *definition) same(e *definition) bool {
	if d.sensor == nil || e.sensor == nil {
		return d.sensor == e.sensor
	}
	return reflect.DeepEqual(*d.sensor, *e.sensor)
}

// Set is the sensors of one sensor-role member: what each grain identity
// runs, and which grains run here now. Every such member is given the same
// definitions (from the same packs), so they agree on identities; Update
// follows pack installs.
type Set struct {
	cfg  Config
	defs atomic.Pointer[map[string]*definition]
	mu   sync.Mutex
	here map[string]running // grains active on this member, by identity
}

type running struct {
	pid  *actor.PID
	root *actor.RootContext
	def  *definition
}

// NewSet starts from cfg's rules and sensors.
func NewSet(cfg Config) *Set {
	cfg.defaults()
	s := &Set{cfg: cfg, here: map[string]running{}}
	defs := definitions(cfg.Rules, cfg.Sensors, cfg.Logger)
	s.defs.Store(&defs)
	return s
}

func (s *Set) current() map[string]*definition { return *s.defs.Load() }

// Update replaces the definitions. Grains on this member whose definition
// is gone or changed are stopped; the keepers' next touch starts the new
// definition wherever its identity now belongs, and nobody touches a
// removed one again.
func (s *Set) Update(rules []*domain.Rule, sensors []*domain.Sensor) {
	defs := definitions(rules, sensors, s.cfg.Logger)
	s.defs.Store(&defs)
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range s.here {
		if d := defs[id]; d == nil || !d.same(r.def) {
			s.cfg.Logger.Info("sensor definition changed; restarting it", "component", "sensor", "identity", id, "removed", d == nil)
			r.root.Poison(r.pid)
			delete(s.here, id)
		}
	}
}

// Kind returns the grain kind a sensor-role member registers.
func (s *Set) Kind() *protocluster.Kind {
	return protocluster.NewKind(Kind, actor.PropsFromProducer(func() actor.Actor { return &grain{set: s} }))
}

// grain hosts one sensor on the member that owns its identity. protoactor
// stops it when ownership moves (a member joined or left), and the keepers'
// next touch starts it on the new owner.
type grain struct {
	set *Set
	id  string
}

func (g *grain) Receive(ctx actor.Context) {
	cfg := g.set.cfg
	switch msg := ctx.Message().(type) {
	case *protocluster.ClusterInit:
		g.id = msg.Identity.Identity
		def := g.set.current()[g.id]
		if def == nil {
			cfg.Logger.Warn("unknown sensor identity; is this member's pack set different?", "identity", g.id)
			return
		}
		var a actor.Actor
		if def.sensor != nil {
			a = &supervisor{cfg: cfg, sensor: def.sensor, log: cfg.Logger.With("component", "sensor", "sensor", def.sensor.Ref)}
		} else {
			a = &timer{trigger: def.trigger, params: def.params, instance: def.instance, sched: def.sched, fenced: cfg.Fenced,
				lag: cfg.Metrics.TimerLag.WithLabelValues(def.trigger), accept: cfg.accept,
				log: cfg.Logger.With("component", "timer", "trigger", def.instance)}
		}
		ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return a }))
		g.set.mu.Lock()
		g.set.here[g.id] = running{pid: ctx.Self(), root: ctx.ActorSystem().Root, def: def}
		g.set.mu.Unlock()
		cfg.Logger.Info("sensor activated here", "component", "sensor", "identity", g.id)
	case *actor.Stopped:
		g.set.mu.Lock()
		if r, ok := g.set.here[g.id]; ok && r.pid.Equal(ctx.Self()) {
			delete(g.set.here, g.id)
		}
		g.set.mu.Unlock()
	case *protocol.Touch:
		ctx.Respond(&protocol.Touched{Node: cfg.Node})
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

// StartKeeper starts touching the set's current sensors; Stop ends it.
func (s *Set) StartKeeper(c *protocluster.Cluster) *Keeper {
	cfg := s.cfg
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
		inflight := map[string]*atomic.Int32{}
		for {
			for id := range s.current() {
				n := inflight[id]
				if n == nil {
					n = new(atomic.Int32)
					inflight[id] = n
				}
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
	cfg.Logger.Info("sensor keeper started", "component", "sensor", "sensors", len(s.current()))
	return k
}

// Stop ends the touching and waits for the touches in flight.
func (k *Keeper) Stop() {
	close(k.stop)
	k.done.Wait()
	k.touches.Wait()
}
