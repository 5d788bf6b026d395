package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// Medians summarises repeated runs of one configuration, figure by figure:
// each figure's median over the runs and its value in every run, in order.
// What must be zero in every run (lost, duplicated, unexpected work, errors)
// is summed instead.
type Medians struct {
	Runs             int    `json:"runs"`
	ExecutionsPerSec Figure `json:"executions_per_sec"`
	EventsPerSec     Figure `json:"events_per_sec"`
	P50              Figure `json:"p50_ms"`
	P99              Figure `json:"p99_ms"`
	// NodeCPUPerExecution is in µs (Result.NodeCPUPerExecution).
	NodeCPUPerExecution Figure `json:"node_cpu_us_per_execution"`
	// CeilingRatio is empty when the runs measured no ceilings.
	CeilingRatio Figure `json:"ceiling_ratio"`
	Ceiling      string `json:"ceiling,omitempty"`
	Lost         int    `json:"lost"`
	Duplicates   int    `json:"duplicates"`
	Unexpected   int    `json:"unexpected"`
	Refused      int64  `json:"refused"`
	Errors       int64  `json:"errors"`
}

// Figure is one figure of repeated runs.
type Figure struct {
	Median float64   `json:"median"`
	Values []float64 `json:"values"`
}

// MediansOf summarises rs, which must be runs of the same configuration.
func MediansOf(rs []Result) Medians {
	m := Medians{Runs: len(rs)}
	figure := func(of func(Result) float64) Figure {
		values := make([]float64, len(rs))
		for i, r := range rs {
			values[i] = of(r)
		}
		return figureOf(values)
	}
	m.ExecutionsPerSec = figure(func(r Result) float64 { return r.ExecutionsPerSec })
	m.EventsPerSec = figure(func(r Result) float64 { return r.EventsPerSec })
	m.P50 = figure(func(r Result) float64 { return r.Latency.P50 })
	m.P99 = figure(func(r Result) float64 { return r.Latency.P99 })
	m.NodeCPUPerExecution = figure(func(r Result) float64 { return r.NodeCPUPerExecution })
	if len(rs) > 0 && rs[0].Ceiling != "" {
		m.Ceiling = rs[0].Ceiling
		m.CeilingRatio = figure(func(r Result) float64 { return r.CeilingRatio })
	}
	for _, r := range rs {
		m.Lost += r.Tally.Lost
		m.Duplicates += r.Tally.Duplicates
		m.Unexpected += r.Tally.Unexpected
		m.Refused += r.Refused
		m.Errors += r.Errors
	}
	return m
}

// figureOf is values, in order, with their median: the lower middle for an
// even count, so that it is a figure one run had.
func figureOf(values []float64) Figure {
	f := Figure{Values: values}
	if n := len(values); n > 0 {
		f.Median = slices.Sorted(slices.Values(values))[(n-1)/2]
	}
	return f
}

// write prints f as a table row: name, the median, and every value.
func (f Figure) write(w io.Writer, name, format string) {
	vals := make([]string, len(f.Values))
	for i, v := range f.Values {
		vals[i] = fmt.Sprintf(format, v)
	}
	fmt.Fprintf(w, "%s\t"+format+"  (%s)\n", name, f.Median, strings.Join(vals, " / "))
}

// WriteTable prints m for people.
func (m Medians) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "medians of %d runs\t\n", m.Runs)
	m.ExecutionsPerSec.write(tw, "executions/s done", "%.0f")
	m.EventsPerSec.write(tw, "events/s accepted", "%.0f")
	m.P50.write(tw, "latency p50 ms", "%.2f")
	m.P99.write(tw, "latency p99 ms", "%.2f")
	m.NodeCPUPerExecution.write(tw, "node cpu/execution µs", "%.0f")
	if m.Ceiling != "" {
		m.CeilingRatio.write(tw, "× "+m.Ceiling, "%.2f")
	}
	fmt.Fprintf(tw, "in all runs\tlost %d, duplicates %d, unexpected %d, refused %d, errors %d\n",
		m.Lost, m.Duplicates, m.Unexpected, m.Refused, m.Errors)
	return tw.Flush()
}
