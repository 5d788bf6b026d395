package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/troupehq/troupe/api"
)

// NodeResult is what one node, started by Run or given to it, used.
type NodeResult struct {
	Name string `json:"name"`
	// CPUSeconds is the node process's user+system time during the run:
	// from just before the warmup to the end of the drain.
	CPUSeconds float64 `json:"cpu_seconds"`
	// ChildCPUSeconds is the CPU time of the action processes it ran then.
	ChildCPUSeconds float64 `json:"child_cpu_seconds"`
	// PeakRSSBytes is the node process's peak resident set (VmHWM) since it
	// started, read at the end of the drain: for a node bench started, the
	// run's peak.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// StorageBytes is the size of its store after the run: the data dir of
	// a node bench started, troupe_storage_disk_usage_bytes of a running
	// one.
	StorageBytes int64 `json:"storage_bytes"`
}

// Result is one run's figures. Rates count what happened inside the measured
// window (after the warmup); the tally covers everything the run accepted.
type Result struct {
	Workload    Workload `json:"workload"`
	Mode        string   `json:"mode"` // "closed" or "open"
	Rate        float64  `json:"rate,omitempty"`
	Concurrency int      `json:"concurrency"`
	// Waits is how the closed loop's clients learned that their executions
	// finished: "stream" (each node's GET /api/v1/stream), or long polls
	// and why.
	Waits    string  `json:"waits,omitempty"`
	Nodes    int     `json:"nodes"`
	Rules    int     `json:"rules,omitempty"`
	Duration float64 `json:"duration_seconds"`
	Warmup   float64 `json:"warmup_seconds"`

	// Sent and Accepted count requests over the whole load; Errors are
	// failed requests and waits, with up to 20 distinct messages.
	Sent     int64 `json:"sent"`
	Accepted int64 `json:"accepted"`
	// Refused counts requests a node refused as overloaded (503 with
	// Retry-After); a closed-loop client waits that long before its next.
	Refused      int64          `json:"refused"`
	Errors       int64          `json:"errors"`
	ErrorSamples map[string]int `json:"error_samples,omitempty"`
	// EventsPerSec is requests accepted per second in the window (events
	// for webhooks, executions for direct, ticks for timers).
	EventsPerSec float64 `json:"events_per_sec"`
	// ExecutionsPerSec is executions that reached a terminal status per
	// second in the window.
	ExecutionsPerSec float64 `json:"executions_per_sec"`
	// Latency is acceptance (execution created_at; the tick's due time for
	// timers) to terminal status (finished_at), for work accepted in the window.
	Latency Latency `json:"latency"`
	Tally   Tally   `json:"tally"`
	// DrainSeconds is how long finishing the accepted work took after the load.
	DrainSeconds float64 `json:"drain_seconds"`

	// ClientCPUSeconds is the CPU time bench itself used during the load
	// (warmup included): it shares the machine with nodes it started.
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`

	NodeStats []NodeResult `json:"node_stats,omitempty"`
	// NodeCPUPerExecution is the nodes' CPU during the run, all together,
	// over the units the run accepted, in µs: what an execution costs,
	// which the host's load moves far less than the rates.
	NodeCPUPerExecution float64 `json:"node_cpu_us_per_execution,omitempty"`
	// StorageBytesPerExecution is the data dirs' size over the executions
	// they hold; 0 when Run did not start the nodes.
	StorageBytesPerExecution float64 `json:"storage_bytes_per_execution,omitempty"`

	Ceilings *Ceilings `json:"ceilings,omitempty"`
	// Ceiling names the ceiling ExecutionsPerSec is compared with and
	// CeilingRatio is the quotient.
	Ceiling      string  `json:"ceiling,omitempty"`
	CeilingRatio float64 `json:"ceiling_ratio,omitempty"`
}

// Run measures the ceilings, starts the nodes (unless cfg.Addrs), drives the
// workload, drains, fetches the execution records and computes the Result.
// Every process it starts is killed before it returns.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, fmt.Errorf("bench: %w", err)
	}
	res := Result{Workload: cfg.Workload, Mode: "closed", Concurrency: cfg.Concurrency,
		Duration: cfg.Duration.Seconds(), Warmup: cfg.Warmup.Seconds()}
	if cfg.Rate > 0 {
		res.Mode, res.Rate = "open", cfg.Rate
	}
	if cfg.Workload == Fanout || cfg.Workload == Timers {
		res.Rules = cfg.Rules
	}
	dir, err := os.MkdirTemp("", "troupe-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	say := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "\r\033[K"+format+"\n", args...)
		}
	}

	if cfg.CeilingDuration > 0 {
		say("measuring ceilings (%s each)…", cfg.CeilingDuration)
		c, err := measureCeilings(ctx, cfg.CeilingDuration, dir)
		if err != nil {
			return res, fmt.Errorf("bench: ceilings: %w", err)
		}
		res.Ceilings = &c
	}

	addrs := cfg.Addrs
	var nodes []*node
	if len(addrs) == 0 {
		pack, err := WritePack(dir, cfg)
		if err != nil {
			return res, err
		}
		say("starting %d node(s)…", cfg.Nodes)
		if nodes, err = startNodes(ctx, cfg, dir, pack); err != nil {
			return res, fmt.Errorf("bench: %w", err)
		}
		defer stopNodes(nodes)
		for _, n := range nodes {
			addrs = append(addrs, n.addr)
		}
	}
	res.Nodes = len(addrs)
	hc := newHTTPClient(cfg.Concurrency)
	clients, posters := make([]*api.Client, len(addrs)), make([]*poster, len(addrs))
	for i, a := range addrs {
		clients[i] = api.NewClient(a)
		clients[i].HTTP = hc
		// Ownership follows acceptance: each node holds the records of
		// what was sent to it, so each is asked for its own.
		clients[i].Local = cfg.Workload != Timers
		if posters[i], err = newPoster(clients[i].Addr, cfg.Concurrency); err != nil {
			return res, fmt.Errorf("bench: %w", err)
		}
	}
	if err := checkPack(ctx, clients[0], cfg); err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}

	usages := func() ([]usage, error) {
		us := make([]usage, len(clients))
		for i := range us {
			var err error
			if len(nodes) > 0 {
				us[i], err = nodes[i].usage()
			} else {
				us[i], err = remoteUsage(ctx, clients[i])
			}
			if err != nil {
				return nil, fmt.Errorf("bench: %w", err)
			}
		}
		return us, nil
	}
	before, err := usages()
	if err != nil {
		return res, err
	}

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(cfg.ClientProcs))
	start, clientCPU := time.Now(), selfCPU()
	since := start.Add(-time.Second)
	l := &load{clients: clients, posters: posters, submit: submitter(cfg.Workload, cfg.Rules), errSamples: map[string]int{},
		measure: window{start.Add(cfg.Warmup), start.Add(cfg.Warmup + cfg.Duration)}}
	loadCtx, cancel := context.WithDeadline(ctx, l.measure.to)
	progCtx, stopProgress := context.WithCancel(ctx)
	go l.progress(progCtx, cfg.Progress, start)
	switch {
	case cfg.Workload == Timers:
		<-loadCtx.Done()
	case cfg.Rate > 0:
		l.openLoop(loadCtx, cfg.Rate, cfg.Concurrency)
	default:
		res.Waits = l.closedLoop(loadCtx, cfg.Concurrency, cfg.Drain)
	}
	cancel()
	stopProgress()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	loadEnd := time.Now()
	res.ClientCPUSeconds = selfCPU() - clientCPU
	say("load done: %d accepted, %d errors; draining…", l.accepted.Load(), l.errs.Load())
	if cfg.Workload == Timers {
		time.Sleep(2 * time.Second) // let the last tick of the window fire
	}
	if err := drain(ctx, clients, loadEnd.Add(cfg.Drain)); err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	res.DrainSeconds = time.Since(loadEnd).Seconds()
	// Read before the executions are listed back: reading a whole run's
	// records through the API is bench's own check, not the load's, and
	// over 60 s of webhook-noop it filled the block cache and took a node's
	// peak RSS from ~186 to ~232 MiB.
	after, err := usages()
	if err != nil {
		return res, err
	}
	for i, u := range after {
		name := clients[i].Addr
		if len(nodes) > 0 {
			name = nodes[i].name
		}
		res.NodeStats = append(res.NodeStats, NodeResult{Name: name, CPUSeconds: u.CPU - before[i].CPU,
			ChildCPUSeconds: u.ChildCPU - before[i].ChildCPU, PeakRSSBytes: u.PeakRSS, StorageBytes: u.storage})
	}

	keep, keyOf, startOf := selectors(cfg)
	var exs []*api.ExecutionView
	total := 0
	fetchFrom := clients
	if cfg.Workload == Timers {
		fetchFrom = clients[:1] // a cluster-wide answer
	}
	for _, c := range fetchFrom {
		got, n, err := fetch(ctx, c, since, keep)
		if err != nil {
			return res, fmt.Errorf("bench: %w", err)
		}
		exs, total = append(exs, got...), total+n
	}
	if cfg.Workload == Timers {
		exs = slices.DeleteFunc(exs, func(ex *api.ExecutionView) bool { return !l.measure.has(ex.Event.Time()) })
		l.units = timerUnits(rules(Timers, cfg.Rules), l.measure)
		l.inWindow.Store(int64(len(l.units) / cfg.Rules))
		l.accepted.Store(l.inWindow.Load())
	}

	res.Sent, res.Accepted, res.Refused, res.Errors = l.sent.Load(), l.accepted.Load(), l.refused.Load(), l.errs.Load()
	if len(l.errSamples) > 0 {
		res.ErrorSamples = l.errSamples
	}
	secs := cfg.Duration.Seconds()
	res.EventsPerSec = float64(l.inWindow.Load()) / secs
	res.ExecutionsPerSec = float64(finishedIn(exs, l.measure)) / secs
	res.Latency = summarize(latencies(exs, l.measure, startOf))
	res.Tally = tally(l.units, exs, keyOf)
	if res.Tally.Expected > 0 {
		var cpu float64
		for _, n := range res.NodeStats {
			cpu += n.CPUSeconds
		}
		res.NodeCPUPerExecution = cpu * 1e6 / float64(res.Tally.Expected)
	}

	// A running node's store also holds what came before this run.
	if len(nodes) > 0 && total > 0 {
		var stored int64
		for _, n := range res.NodeStats {
			stored += n.StorageBytes
		}
		res.StorageBytesPerExecution = float64(stored) / float64(total)
	}
	if c := res.Ceilings; c != nil {
		switch cfg.Workload {
		case WebhookShell:
			res.Ceiling, res.CeilingRatio = "sh spawn", ratio(res.ExecutionsPerSec, c.ShSpawnPerSec)
		case WebhookPython, WebhookPythonWarm:
			// The warm runtime is measured against the cold spawn it avoids.
			res.Ceiling, res.CeilingRatio = "python spawn", ratio(res.ExecutionsPerSec, c.PythonSpawnPerSec)
		default:
			res.Ceiling, res.CeilingRatio = "pebble sync commits", ratio(res.ExecutionsPerSec, c.PebbleSyncCommitsPerSec)
		}
	}
	return res, nil
}

// selfCPU is the user and system time this process used so far, in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// selectors return which listed executions belong to the workload, the unit
// key of one, and the moment its latency is counted from.
func selectors(cfg Config) (keep func(*api.ExecutionView) bool, keyOf func(*api.ExecutionView) string, startOf func(*api.ExecutionView) time.Time) {
	created := func(ex *api.ExecutionView) time.Time { return ex.CreatedAt }
	switch cfg.Workload {
	case Direct:
		return func(ex *api.ExecutionView) bool { return ex.Rule == "" && ex.Action == "core.noop" }, idKey, created
	case Timers:
		return func(ex *api.ExecutionView) bool { return strings.HasPrefix(ex.Rule, "bench.timer_") }, tickKey,
			func(ex *api.ExecutionView) time.Time { return ex.Event.Time() }
	}
	rs := rules(cfg.Workload, cfg.Rules)
	return func(ex *api.ExecutionView) bool { return slices.Contains(rs, ex.Rule) }, eventRuleKey, created
}

// timerUnits are the ticks every rule should have run for in w: every whole
// second in it.
func timerUnits(rules []string, w window) []string {
	var units []string
	for t := w.from.Truncate(time.Second); t.Before(w.to); t = t.Add(time.Second) {
		if !w.has(t) {
			continue
		}
		for _, r := range rules {
			units = append(units, tickUnit(r, t))
		}
	}
	return units
}

// checkPack fails early, with advice, when the node lacks the bench pack.
func checkPack(ctx context.Context, c *api.Client, cfg Config) error {
	want := rules(cfg.Workload, cfg.Rules)
	if len(want) == 0 {
		return nil
	}
	for _, r := range []string{want[0], want[len(want)-1]} {
		if _, err := c.Rule(ctx, r); err != nil {
			return fmt.Errorf("node %s lacks rule %s of the bench pack (write it with `troupe bench --write-pack DIR`, with the same --rules, and start the node with --packs DIR/bench): %w", c.Addr, r, err)
		}
	}
	return nil
}

// sortedSamples returns error messages by count, most frequent first.
func sortedSamples(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	return keys
}
