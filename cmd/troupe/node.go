package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/troupehq/troupe/actors/execution"
	"github.com/troupehq/troupe/actors/pack"
	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/actors/rule"
	"github.com/troupehq/troupe/actors/sensor"
	"github.com/troupehq/troupe/actors/worker"
	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/cluster"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/metrics"
	"github.com/troupehq/troupe/packs"
	"github.com/troupehq/troupe/rules"
	"github.com/troupehq/troupe/runtimes"
	"github.com/troupehq/troupe/storage"
)

// node is one running Troupe agent: its store, actors and HTTP server.
type node struct {
	cfg      agentConfig
	log      *slog.Logger
	store    *storage.DB
	packs    *packSet
	runtimes *runtimes.Registry
	system   *actor.ActorSystem
	done     *completions
	registry *prometheus.Registry // this node's own: never the global one
	metrics  *metrics.Metrics
	// webhooks maps the url of each enabled webhook rule to its trigger
	// instance, so a request finds its instance without deriving it.
	webhooks atomic.Pointer[map[string]string]
	gossip   *cluster.Cluster
	workers  workerView // placement's view of gossip
	proto    *protocluster.Cluster
	sensors  *sensor.Set // nil without the sensor role
	keeper   *sensor.Keeper
	unwatch  func()
	quit     chan struct{}
	http     *http.Server
	listener net.Listener
	stopDone context.CancelFunc
	finished chan struct{}
	ready    atomic.Pointer[error]
	live     runtimes.Live // the output of the process runs in progress here
}

// loadCatalog loads and validates every pack, compiling each rule, so that
// `--check-config` and a real start report the same problems.
func loadCatalog(cfg agentConfig, reg *runtimes.Registry) (*packs.Catalog, error) {
	return packs.Load(cfg.Packs, packOptions(reg))
}

// packOptions is how every pack set of this node is loaded and checked,
// whichever member it came from.
func packOptions(reg *runtimes.Registry) packs.Options {
	return packs.Options{
		Runtimes:    reg.Names(),
		CompileRule: func(r *domain.Rule) error { _, err := rules.Compile(r); return err },
	}
}

func startNode(cfg agentConfig, log *slog.Logger) (*node, error) {
	n := &node{cfg: cfg, log: log, finished: make(chan struct{}), quit: make(chan struct{}), registry: prometheus.NewRegistry()}
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics.RegisterProcess(n.registry)
	n.metrics = metrics.New(n.registry)
	notReady := errors.New("starting: recovering executions")
	n.ready.Store(&notReady)
	reg, err := runtimes.NewRegistry(cfg.runtimes(), cfg.Runtimes)
	if err != nil {
		return nil, err
	}
	for name, why := range reg.Unavailable() {
		log.Warn("runtime unavailable on this node", "runtime", name, "reason", why)
	}
	n.runtimes = reg
	dirs, err := loadCatalog(cfg, reg)
	if err != nil {
		return nil, err
	}
	for _, w := range dirs.Warnings() {
		log.Warn("pack warning", "problem", w.Error())
	}
	if n.store, err = storage.Open(storage.Config{Dir: cfg.DataDir, Logger: log, MinFreeDisk: int64(cfg.MinFree)}); err != nil {
		return nil, err
	}
	if n.packs, err = openPackSet(cfg.NodeName, cfg.DataDir, n.store, dirs, packOptions(reg), log.With("component", "packs")); err != nil {
		n.store.Close()
		return nil, err
	}
	// Scrapes stop before the store closes: stop() shuts HTTP down first.
	n.registry.MustRegister(n.store.Collector())
	// Actions the previous process left running (it was killed) are
	// stopped before their executions are marked abandoned.
	if killed, err := runtimes.Reap(cfg.runDir()); err != nil || killed > 0 {
		log.Warn("stopped actions left running by the previous process", "groups", killed, "err", err)
	}
	n.listener, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		n.store.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	// protoactor narrates its routine at info; only its warnings are news
	// to an operator, unless they asked for debug logs.
	actorLevel := slog.LevelWarn
	if cfg.level() <= slog.LevelDebug {
		actorLevel = slog.LevelDebug
	}
	actorLog := slog.New(atLeast{n.log.Handler(), actorLevel}).With("component", "actor")
	n.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return actorLog }))
	if err := n.joinCluster(); err != nil {
		n.listener.Close()
		n.store.Close()
		if n.gossip != nil {
			n.gossip.Shutdown()
		}
		return nil, err
	}
	n.startActors()
	// Serving before recovery lets /healthz and /readyz answer (503 until
	// ready) while a large backlog is resolved; writes are refused meanwhile.
	if err := n.serveHTTP(); err != nil {
		n.listener.Close()
		n.system.Shutdown()
		n.store.Close()
		return nil, err
	}
	if err := n.recover(); err != nil {
		n.http.Close()
		n.system.Shutdown()
		n.store.Close()
		return nil, err
	}
	n.watchMembers()
	go n.syncPacks()
	if cfg.hasRole(cluster.RoleSensor) {
		n.keeper = n.sensors.StartKeeper(n.proto)
	}
	n.ready.Store(nil)
	log.Info("node ready", "http", n.listener.Addr().String(), "data_dir", cfg.DataDir,
		"runtimes", reg.Names(), "slots", cfg.Slots, "packs", len(n.packs.live.Catalog().Packs()))
	return n, nil
}

func (n *node) pid(name string) *actor.PID { return actor.NewPID(n.system.Address(), name) }

// every runs f every d until the node stops.
func (n *node) every(d time.Duration, f func()) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-n.quit:
			return
		case <-tick.C:
			f()
		}
	}
}

func (n *node) startActors() {
	ctx, cancel := context.WithCancel(context.Background())
	n.stopDone = cancel
	n.done = newCompletions(n.store, n.metrics, n.log.With("component", "completions"))
	go func() { n.done.run(ctx); close(n.finished) }()

	root := n.system.Root
	spawn := func(props *actor.Props, name string) {
		if _, err := root.SpawnNamed(props, name); err != nil {
			panic(fmt.Sprintf("spawn %s: %v", name, err)) // a fresh actor system has no name clashes
		}
	}
	if n.cfg.hasRole(cluster.RoleWorker) {
		spawn(worker.Props(worker.Config{Node: n.cfg.NodeName, Slots: n.cfg.Slots, Runtimes: n.runtimes, Resolve: n.remoteAddr, Locate: n.packs.Locate, Live: &n.live,
			Metrics: n.metrics, Logger: n.log.With("component", "worker")}), protocol.WorkerActor)
	}
	spawn(execution.Props(execution.Config{Node: n.cfg.NodeName, Store: n.store, Catalog: n.packs.live,
		Placement: placement{n: n}, OnTerminal: n.done.Completed,
		PlacementTimeout: n.cfg.Placement, Metrics: n.metrics, Logger: n.log.With("component", "execution")}), protocol.ExecutionsActor)

	compiled := n.compile(n.packs.live.Catalog())
	if n.cfg.hasRole(cluster.RoleRule) {
		spawn(rule.Props(rule.Config{Node: n.cfg.NodeName, Store: n.store, Catalog: n.packs.live, Rules: compiled,
			Admit: n.admitForwarded, Metrics: n.metrics, Logger: n.log.With("component", "rule")}), protocol.RulesActor)
	}
	spawn(pack.Props(n.packs), protocol.PacksActor)
	n.packs.changed = n.packsChanged
}

// compile compiles the enabled rules of cat and notes its webhooks.
func (n *node) compile(cat *packs.Catalog) []*rules.Compiled {
	var compiled []*rules.Compiled
	webhooks := map[string]string{}
	for _, r := range enabledRules(cat) {
		c, err := rules.Compile(r)
		if err != nil {
			panic(fmt.Sprintf("rule %s compiled at load but not now: %v", r.Ref, err))
		}
		compiled = append(compiled, c)
		if url, ok := r.Trigger.Parameters["url"].(string); ok && r.Trigger.Type == webhookTrigger {
			webhooks[url] = domain.TriggerInstance(r.Trigger.Type, r.Trigger.Parameters)
		}
	}
	n.webhooks.Store(&webhooks)
	return compiled
}

// packsChanged puts a new catalog to work: rules, webhooks, sensors, and
// the digest that tells the other members to come and fetch it.
func (n *node) packsChanged(cat *packs.Catalog, digest string) {
	compiled := n.compile(cat)
	if n.cfg.hasRole(cluster.RoleRule) {
		n.system.Root.Send(n.pid(protocol.RulesActor), &rule.SetRules{Rules: compiled})
	}
	if n.sensors != nil {
		cfg := sensorConfig(cat)
		n.sensors.Update(cfg.Rules, cfg.Sensors)
	}
	n.gossipPackDigest(digest)
}

func enabledRules(cat *packs.Catalog) []*domain.Rule {
	var out []*domain.Rule
	for _, r := range cat.Rules() {
		if r.Enabled {
			out = append(out, r)
		}
	}
	return out
}

// sensorConfig is the part of the sensor configuration a catalog decides.
func sensorConfig(cat *packs.Catalog) sensor.Config {
	var sensors []*domain.Sensor
	for _, s := range cat.Sensors() {
		if s.Enabled {
			sensors = append(sensors, s)
		}
	}
	return sensor.Config{Rules: enabledRules(cat), Sensors: sensors}
}

func (n *node) sensorConfig() sensor.Config {
	cfg := sensorConfig(n.packs.live.Catalog())
	cfg.Node, cfg.Fenced, cfg.Interpreter, cfg.Env, cfg.Metrics, cfg.Logger =
		n.cfg.NodeName, n.fenced, n.runtimes.Interpreter, n.cfg.runtimes().Env, n.metrics, n.log
	cfg.Accept = n.rulesFor
	return cfg
}

// recover resolves every execution this node left unfinished, before any
// new work is accepted. Work that never reached a worker runs again; work
// this node's own worker may have started cannot be known to have
// finished, so it is abandoned with a reason rather than run twice; work on
// another member's worker is picked up again, since that worker resends
// its reports until this owner acknowledges them.
func (n *node) recover() error {
	active, err := n.store.Active()
	if err != nil {
		return fmt.Errorf("recover executions: %w", err)
	}
	restarted, abandoned := 0, 0
	for _, ex := range active {
		switch ex.Status {
		case domain.StatusRequested, domain.StatusDelayed:
			n.system.Root.Send(n.pid(protocol.ExecutionsActor), &protocol.StartExecution{ExecutionId: ex.ID[:]})
			restarted++
		case domain.StatusScheduled, domain.StatusRunning, domain.StatusCanceling:
			if ex.Worker == n.cfg.NodeName {
				if err := n.abandon(ex); err != nil {
					return err
				}
				abandoned++
				continue
			}
			n.system.Root.Send(n.pid(protocol.ExecutionsActor), &protocol.StartExecution{ExecutionId: ex.ID[:]})
			restarted++
		}
	}
	if len(active) > 0 {
		n.log.Info("recovered executions", "requeued", restarted, "abandoned", abandoned)
	}
	return nil
}

func (n *node) abandon(ex *domain.Execution) error {
	done, applied, err := n.store.Apply(ex.ID, storage.Transition{Attempt: ex.Attempt, To: domain.StatusAbandoned, At: time.Now(),
		Error: fmt.Sprintf("node %s stopped while the execution was %s; it may have run in part", n.cfg.NodeName, ex.Status)})
	if err != nil {
		return fmt.Errorf("recover execution %s: %w", ex.ID, err)
	}
	if applied {
		n.done.Completed(done)
	}
	return nil
}

func (n *node) serveHTTP() error {
	cfg := api.DefaultConfig()
	cfg.MaxBody, cfg.Logger, cfg.NotServed = n.cfg.MaxBody, n.log, n.apiGate()
	cfg.Metrics = promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{Registry: n.registry})
	srv, err := api.NewServer(cfg, &backend{n: n}, n.registry)
	if err != nil {
		return err
	}
	n.http = &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := n.http.Serve(n.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	}()
	return nil
}

// stop shuts the node down in dependency order: no new requests, no new
// events, running actions stopped and their ends recorded, then storage.
func (n *node) stop(timeout time.Duration) {
	stopping := errors.New("shutting down")
	n.ready.Store(&stopping)
	deadline := time.Now().Add(timeout)
	// In-flight requests get a moment to finish; long polls (?wait=) are
	// then cut, since they could hold the shutdown for minutes.
	ctx, cancel := context.WithTimeout(context.Background(), min(timeout/4, 2*time.Second))
	defer cancel()
	if err := n.http.Shutdown(ctx); err != nil {
		n.http.Close()
	}
	if n.keeper != nil {
		n.keeper.Stop()
	}
	close(n.quit)
	n.unwatch()
	if n.cfg.hasRole(cluster.RoleWorker) {
		drain := max(time.Until(deadline), time.Second) // a non-positive timeout would mean no timeout at all
		if _, err := n.system.Root.RequestFuture(n.pid(protocol.WorkerActor), &worker.Drain{}, drain).Result(); err != nil {
			n.log.Warn("running actions were not all recorded before the deadline; they will be abandoned at next start", "err", err)
		}
	}
	n.proto.Shutdown(true) // leaves the gossip and stops the actor system; the others see "left" at once
	n.stopDone()
	<-n.finished
	// After the actor system, so that what this kills is not recorded as
	// failed: like process runs left over, it is abandoned at next start.
	if err := n.runtimes.Close(); err != nil {
		n.log.Error("stop runtimes", "err", err)
	}
	if err := n.store.Close(); err != nil {
		n.log.Error("close storage", "err", err)
	}
	n.log.Info("node stopped")
}

const webhookTrigger = "core.webhook"
