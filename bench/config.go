package bench

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Workload names what the benchmark sends and what the nodes run.
type Workload string

const (
	// WebhookNoop posts webhook events that one rule turns into core.noop.
	WebhookNoop Workload = "webhook-noop"
	// WebhookShell posts webhook events that one rule turns into a shell `echo`.
	WebhookShell Workload = "webhook-shell"
	// WebhookPython posts webhook events that one rule turns into a python script.
	WebhookPython Workload = "webhook-python"
	// WebhookPythonWarm is WebhookPython with the script forked from the
	// python-warm runtime's started interpreter.
	WebhookPythonWarm Workload = "webhook-python-warm"
	// Direct creates core.noop executions with POST /api/v1/executions.
	Direct Workload = "direct"
	// Fanout posts webhook events that Config.Rules rules all match (core.noop).
	Fanout Workload = "fanout"
	// Timers loads Config.Rules rules on the 1 s interval timer (core.noop)
	// and measures tick to completion; nothing is sent.
	Timers Workload = "timers"
)

// Workloads lists every workload, in the order help texts show them.
var Workloads = []Workload{WebhookNoop, WebhookShell, WebhookPython, WebhookPythonWarm, Direct, Fanout, Timers}

// ParseWorkload returns the workload called name, or an error listing them.
func ParseWorkload(name string) (Workload, error) {
	w := Workload(name)
	if !slices.Contains(Workloads, w) {
		names := make([]string, len(Workloads))
		for i, w := range Workloads {
			names[i] = string(w)
		}
		return "", fmt.Errorf("unknown workload %q (known: %s)", name, strings.Join(names, ", "))
	}
	return w, nil
}

// Config is one benchmark run.
type Config struct {
	// Workload is what to send and run. Default webhook-noop.
	Workload Workload
	// Addrs are the HTTP API addresses of running nodes to drive, requests
	// spread round robin. They must already have the bench pack loaded
	// (WritePack). When empty, Run starts Nodes nodes itself.
	Addrs []string
	// Nodes is how many `troupe agent` processes Run starts on 127.0.0.1,
	// each with its own temporary data dir, when Addrs is empty. Default 1.
	Nodes int
	// Binary is the troupe executable used to start nodes.
	Binary string
	// AgentArgs are extra flags given to every node Run starts (e.g. --slots 8).
	AgentArgs []string
	// Rate is the open-loop request rate, per second; 0 selects the closed
	// loop of Concurrency.
	Rate float64
	// Concurrency is the number of closed-loop clients, each submitting one
	// request and waiting for its executions to finish before the next. In
	// the open loop it bounds the requests in flight. Default 128: each
	// execution waits out three fsyncs in turn, and with 64 clients all of
	// them at once too often left the cores idle (webhook-noop 9,070/s at
	// 64, 9,830/s at 96, 10,270/s at 128, at the same node CPU per
	// execution); the queues behind 128 stay short enough for a p99 of ~20 ms.
	Concurrency int
	// ClientProcs is the GOMAXPROCS of this process while it drives the
	// load and reads the results back (the ceilings are measured with
	// every core). Default 1: the clients mostly wait on their sockets, and
	// with two processors the Go scheduler handed their wakeups across
	// cores, CPU that the nodes sharing those cores went without
	// (webhook-noop, 5 interleaved pairs: +0.2 to +8.8 % executions/s, and
	// client CPU 33 -> 29-31 µs per request). Raise it when driving nodes
	// on other machines from a larger one.
	ClientProcs int
	// Duration is how long load is measured, after Warmup. Default 10 s.
	Duration time.Duration
	// Warmup is how long load runs before measuring starts. Default 1 s.
	Warmup time.Duration
	// Drain is how long Run waits after the load for accepted work to
	// finish; what has not finished by then is lost. Default 30 s.
	Drain time.Duration
	// Rules is the number of rules of the fanout and timers workloads. Default 8.
	Rules int
	// CeilingDuration is how long each ceiling is measured; 0 skips them.
	// Default 2 s.
	CeilingDuration time.Duration
	// Progress receives a live progress line (\r-terminated); nil for none.
	Progress io.Writer
}

// DefaultConfig is webhook-noop against one node, 128 closed-loop clients, 10 s.
func DefaultConfig() Config {
	return Config{
		Workload:        WebhookNoop,
		Nodes:           1,
		Concurrency:     128,
		ClientProcs:     1,
		Duration:        10 * time.Second,
		Warmup:          time.Second,
		Drain:           30 * time.Second,
		Rules:           8,
		CeilingDuration: 2 * time.Second,
	}
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if _, err := ParseWorkload(string(c.Workload)); err != nil {
		errs = append(errs, err)
	}
	if len(c.Addrs) == 0 {
		if c.Nodes < 1 {
			errs = append(errs, fmt.Errorf("nodes: %d, must be at least 1 (or give addresses)", c.Nodes))
		}
		if c.Binary == "" {
			errs = append(errs, errors.New("binary: the troupe executable is needed to start nodes"))
		}
	}
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate: %g, must not be negative", c.Rate))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency: %d, must be at least 1", c.Concurrency))
	}
	if c.ClientProcs < 1 {
		errs = append(errs, fmt.Errorf("client procs: %d, must be at least 1", c.ClientProcs))
	}
	if c.Duration <= 0 {
		errs = append(errs, fmt.Errorf("duration: %s, must be positive", c.Duration))
	}
	if c.Warmup < 0 || c.Drain < 0 || c.CeilingDuration < 0 {
		errs = append(errs, errors.New("warmup, drain and ceiling duration must not be negative"))
	}
	if (c.Workload == Fanout || c.Workload == Timers) && c.Rules < 1 {
		errs = append(errs, fmt.Errorf("rules: %d, must be at least 1 for %s", c.Rules, c.Workload))
	}
	return errors.Join(errs...)
}
