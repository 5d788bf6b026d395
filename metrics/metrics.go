package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is every metric of one node.
type Metrics struct {
	EventsIngested     *prometheus.CounterVec   // trigger
	RuleEvaluations    *prometheus.CounterVec   // rule, result: matched|unmatched|error
	Enforcements       *prometheus.CounterVec   // rule, result: succeeded|failed
	ExecutionsFinished *prometheus.CounterVec   // action, runtime, status
	RunSeconds         *prometheus.HistogramVec // runtime
	ScheduleToStart    *prometheus.HistogramVec // runtime
	EventToCompletion  *prometheus.HistogramVec // runtime
	TimerLag           *prometheus.HistogramVec // trigger
	WorkerSlots        *prometheus.GaugeVec     // state: used|free
	WorkerQueued       prometheus.Gauge
	Duplicates         *prometheus.CounterVec // kind: event|slot_request|assignment|transition
	Retries            *prometheus.CounterVec // action
	SensorUp           *prometheus.GaugeVec   // sensor
	SensorRestarts     *prometheus.CounterVec // sensor
	PlacementFailures  *prometheus.CounterVec // runtime
	ClusterMembers     *prometheus.GaugeVec   // status: alive|suspect|dead|left
	MembershipChanges  *prometheus.CounterVec // kind: joined|updated|restarted|suspect|recovered|dead|left|resync
	AdmissionRefused   *prometheus.CounterVec // kind: webhook|run
}

// Latency buckets from 250µs to ~4 minutes: the fast path of a builtin
// action is sub-millisecond, a shell action a few milliseconds, and slow
// actions run for minutes.
var latencyBuckets = prometheus.ExponentialBuckets(0.00025, 2.5, 16)

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	f := factory{reg}
	return &Metrics{
		EventsIngested: f.counter("events", "ingested_total",
			"Events durably accepted, by trigger type (duplicates excluded).", "trigger"),
		RuleEvaluations: f.counter("rule", "evaluations_total",
			"Rule evaluations, by rule and result (matched, unmatched, error).", "rule", "result"),
		Enforcements: f.counter("rule", "enforcements_total",
			"Enforcements created, by rule and result (succeeded: an execution was created; failed: e.g. invalid parameters).", "rule", "result"),
		ExecutionsFinished: f.counter("execution", "finished_total",
			"Executions that reached a terminal status, announced exactly once each, by action, runtime and status.", "action", "runtime", "status"),
		RunSeconds: f.histogram("execution", "run_seconds",
			"Time from running to the terminal status, by runtime.", "runtime"),
		ScheduleToStart: f.histogram("execution", "schedule_to_start_seconds",
			"Time from requested to running, by runtime: queueing for a slot plus placement.", "runtime"),
		EventToCompletion: f.histogram("execution", "event_to_completion_seconds",
			"Time from the event's acceptance (or an ad-hoc request) to the terminal status, by runtime.", "runtime"),
		TimerLag: f.histogram("sensor", "timer_lag_seconds",
			"How late a timer fired: actual fire time minus the scheduled tick, by trigger type.", "trigger"),
		WorkerSlots: f.gauge("worker", "slots",
			"Worker slots, by state (used, free).", "state"),
		WorkerQueued: f.plainGauge("worker", "queued",
			"Slot requests waiting for a free slot; their executions are requested."),
		Duplicates: f.counter("delivery", "duplicates_total",
			"Deliveries recognised as duplicates and absorbed (the idempotency doing its job), by kind.", "kind"),
		Retries: f.counter("execution", "retries_total",
			"Executions requested again as a new attempt by a retry policy, by action.", "action"),
		SensorUp: f.gauge("sensor", "up",
			"1 while a script sensor's process is running, else 0, by sensor.", "sensor"),
		SensorRestarts: f.counter("sensor", "restarts_total",
			"Times a script sensor's process was restarted after it exited, by sensor.", "sensor"),
		PlacementFailures: f.counter("placement", "failures_total",
			"Executions that could not be placed on any worker, by runtime.", "runtime"),
		ClusterMembers: f.gauge("cluster", "members",
			"Members this node knows of, by status (alive, suspect, dead, left).", "status"),
		MembershipChanges: f.counter("cluster", "membership_changes_total",
			"Membership changes this node observed, by kind.", "kind"),
		AdmissionRefused: f.counter("admission", "refused_total",
			"Webhooks and runs refused with 503 overloaded because the node held max_in_flight unfinished executions, by kind (webhook, run).", "kind"),
	}
}

// Discard returns metrics registered nowhere, for components built without
// a registry (tests, tools).
func Discard() *Metrics { return New(prometheus.NewRegistry()) }

type factory struct{ reg prometheus.Registerer }

func name(subsystem, n string) prometheus.Opts {
	return prometheus.Opts{Namespace: "troupe", Subsystem: subsystem, Name: n}
}

func (f factory) counter(sub, n, help string, labels ...string) *prometheus.CounterVec {
	o := name(sub, n)
	o.Help = help
	c := prometheus.NewCounterVec(prometheus.CounterOpts(o), labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(sub, n, help string, labels ...string) *prometheus.GaugeVec {
	o := name(sub, n)
	o.Help = help
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts(o), labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) plainGauge(sub, n, help string) prometheus.Gauge {
	o := name(sub, n)
	o.Help = help
	g := prometheus.NewGauge(prometheus.GaugeOpts(o))
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(sub, n, help string, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "troupe", Subsystem: sub, Name: n,
		Help: help, Buckets: latencyBuckets}, labels)
	f.reg.MustRegister(h)
	return h
}
