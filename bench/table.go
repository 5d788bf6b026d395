package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable prints r for people.
func (r Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{name}, args...)...)
	}
	load := fmt.Sprintf("closed loop, %d clients", r.Concurrency)
	switch {
	case r.Workload == Timers:
		load = "the 1 s interval timer, no requests"
	case r.Mode == "open":
		load = fmt.Sprintf("open loop, %g/s (≤ %d in flight)", r.Rate, r.Concurrency)
	}
	p("workload", "%s (%s; %d node(s); %gs after %gs warmup)", r.Workload, load, r.Nodes, r.Duration, r.Warmup)
	if r.Rules > 0 {
		p("rules", "%d", r.Rules)
	}
	if r.Waits != "" {
		p("waits", "%s", r.Waits)
	}
	p("requests", "%d sent, %d accepted, %d refused as overloaded, %d errors", r.Sent, r.Accepted, r.Refused, r.Errors)
	p("events/s accepted", "%.0f", r.EventsPerSec)
	execs := fmt.Sprintf("%.0f", r.ExecutionsPerSec)
	if r.Ceiling != "" {
		execs += fmt.Sprintf("  (%.2f × %s)", r.CeilingRatio, r.Ceiling)
	}
	p("executions/s done", "%s", execs)
	l := r.Latency
	p("latency ms", "p50 %.2f  p95 %.2f  p99 %.2f  max %.2f  (mean %.2f, n %d)", l.P50, l.P95, l.P99, l.Max, l.Mean, l.N)
	t := r.Tally
	p("units", "%d expected, %d finished, %d failed", t.Expected, t.Finished, t.Failed)
	p("lost", "%d", t.Lost)
	p("duplicates", "%d", t.Duplicates)
	if t.Unexpected > 0 {
		p("unexpected", "%d", t.Unexpected)
	}
	p("drain", "%.1fs", r.DrainSeconds)
	if r.Accepted > 0 {
		p("bench client", "cpu %.1fs during the load (%.0f µs per request)", r.ClientCPUSeconds, r.ClientCPUSeconds*1e6/float64(r.Accepted))
	}
	for _, n := range r.NodeStats {
		p("node "+n.Name, "cpu %.1fs (actions %.1fs)  peak rss %.0f MiB  storage %.1f MiB",
			n.CPUSeconds, n.ChildCPUSeconds, float64(n.PeakRSSBytes)/(1<<20), float64(n.StorageBytes)/(1<<20))
	}
	if r.NodeCPUPerExecution > 0 {
		p("node cpu/execution", "%.0f µs (the nodes together)", r.NodeCPUPerExecution)
	}
	if r.StorageBytesPerExecution > 0 {
		p("storage/execution", "%.0f bytes", r.StorageBytesPerExecution)
	}
	if c := r.Ceilings; c != nil {
		p("ceiling sh spawn", "%.0f/s (%d spawners)", c.ShSpawnPerSec, c.SpawnWorkers)
		if c.Python != "" {
			p("ceiling python spawn", "%.0f/s (%s)", c.PythonSpawnPerSec, c.Python)
		}
		p("ceiling pebble sync", "%.0f commits/s (%d writers)", c.PebbleSyncCommitsPerSec, c.PebbleWriters)
	}
	for _, msg := range sortedSamples(r.ErrorSamples) {
		p("error", "%d × %s", r.ErrorSamples[msg], msg)
	}
	return tw.Flush()
}
