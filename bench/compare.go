package bench

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
)

// Comparison is two configurations, A and B, run in turn as pairs (A B,
// then B A, then A B, …) so that a host whose load drifts weighs on both
// alike, each summarised, with B's figures over A's pair by pair. On a
// shared host a rate moves by a tenth from one minute to the next; the
// ratio within a pair moves far less.
type Comparison struct {
	ARuns []Result `json:"a_runs"`
	BRuns []Result `json:"b_runs"`
	A     Medians  `json:"a"`
	B     Medians  `json:"b"`
	// Ratios are B's figure over A's in the same pair, with their median.
	ExecutionsPerSec    Figure `json:"executions_per_sec_ratio"`
	NodeCPUPerExecution Figure `json:"node_cpu_per_execution_ratio"`
	P99                 Figure `json:"p99_ratio"`
}

// Compare runs n pairs of a and b, in turn, calling done after each run
// with its side ("A" or "B") and pair (from 0), and summarises them. A
// failed run ends the comparison.
func Compare(ctx context.Context, a, b Config, n int, done func(side string, pair int, r Result) error) (Comparison, error) {
	if n < 1 {
		return Comparison{}, fmt.Errorf("compare: %d pairs, want at least 1", n)
	}
	var as, bs []Result
	for i := range n {
		sides := []string{"A", "B"}
		if i%2 == 1 {
			sides = []string{"B", "A"}
		}
		for _, side := range sides {
			cfg, out := a, &as
			if side == "B" {
				cfg, out = b, &bs
			}
			r, err := Run(ctx, cfg)
			if err != nil {
				return Comparison{}, fmt.Errorf("pair %d, %s: %w", i+1, side, err)
			}
			*out = append(*out, r)
			if err := done(side, i, r); err != nil {
				return Comparison{}, err
			}
		}
	}
	return CompareOf(as, bs)
}

// CompareOf summarises pairs of runs: as[i] and bs[i] are pair i.
func CompareOf(as, bs []Result) (Comparison, error) {
	if len(as) != len(bs) || len(as) == 0 {
		return Comparison{}, fmt.Errorf("compare %d runs of A with %d of B: want pairs", len(as), len(bs))
	}
	byPair := func(of func(Result) float64) Figure {
		values := make([]float64, len(as))
		for i := range as {
			values[i] = ratio(of(bs[i]), of(as[i]))
		}
		return figureOf(values)
	}
	return Comparison{ARuns: as, BRuns: bs, A: MediansOf(as), B: MediansOf(bs),
		ExecutionsPerSec:    byPair(func(r Result) float64 { return r.ExecutionsPerSec }),
		NodeCPUPerExecution: byPair(func(r Result) float64 { return r.NodeCPUPerExecution }),
		P99:                 byPair(func(r Result) float64 { return r.Latency.P99 }),
	}, nil
}

// WriteTable prints c for people: each side's medians, then the ratios.
func (c Comparison) WriteTable(w io.Writer, a, b string) error {
	for _, side := range []struct {
		name, what string
		m          Medians
	}{{"A", a, c.A}, {"B", b, c.B}} {
		if _, err := fmt.Fprintf(w, "%s: %s\n", side.name, side.what); err != nil {
			return err
		}
		if err := side.m.WriteTable(w); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "B ÷ A, median of %d pairs\t\n", len(c.ExecutionsPerSec.Values))
	c.ExecutionsPerSec.write(tw, "executions/s", "%.3f")
	c.NodeCPUPerExecution.write(tw, "node cpu/execution", "%.3f")
	c.P99.write(tw, "latency p99", "%.3f")
	return tw.Flush()
}
