package bench

import (
	"strings"
	"testing"
	"time"
)

func TestCompareOfTakesRatiosPairByPair(t *testing.T) {
	run := func(execs, cpu, p99 float64) Result {
		return Result{ExecutionsPerSec: execs, NodeCPUPerExecution: cpu, Latency: Latency{P99: p99}}
	}
	// The host slows down from pair to pair; within each pair B does 10 %
	// more work for 10 % less CPU.
	as := []Result{run(10000, 150, 20), run(8000, 190, 30), run(9000, 170, 25)}
	bs := []Result{run(11000, 135, 18), run(8800, 171, 27), run(9900, 153, 25)}
	c, err := CompareOf(as, bs)
	if err != nil {
		t.Fatal(err)
	}
	if c.ExecutionsPerSec.Median != 1.1 || c.NodeCPUPerExecution.Median != 0.9 || c.P99.Median != 0.9 {
		t.Errorf("ratios %v, %v, %v; want 1.1, 0.9, 0.9", c.ExecutionsPerSec, c.NodeCPUPerExecution, c.P99)
	}
	if c.A.ExecutionsPerSec.Median != 9000 || c.B.ExecutionsPerSec.Median != 9900 || len(c.ARuns) != 3 {
		t.Errorf("medians %v and %v of %d runs", c.A.ExecutionsPerSec, c.B.ExecutionsPerSec, len(c.ARuns))
	}
	var table strings.Builder
	if err := c.WriteTable(&table, "old", "new"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"A: old", "B: new", "B ÷ A, median of 3 pairs", "executions/s", "1.100  (1.100 / 1.100 / 1.100)"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if _, err := CompareOf(as, bs[:2]); err == nil {
		t.Error("compared 3 runs with 2")
	}
}

// TestCompareRunsPairsInTurn compares a node with itself: A and B
// alternate which goes first, so that a drifting host weighs on both.
func TestCompareRunsPairsInTurn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts troupe nodes")
	}
	cfg := DefaultConfig()
	cfg.Binary, cfg.Concurrency = troupeBinary, 4
	cfg.Duration, cfg.Warmup, cfg.Drain, cfg.CeilingDuration = 300*time.Millisecond, 100*time.Millisecond, 20*time.Second, 0
	b := cfg
	b.AgentArgs = []string{"--slots=4"}
	var order []string
	c, err := Compare(t.Context(), cfg, b, 2, func(side string, pair int, r Result) error {
		order = append(order, side)
		if r.Accepted == 0 || r.Tally.Lost != 0 || r.NodeCPUPerExecution <= 0 {
			t.Errorf("pair %d, %s: accepted %d, tally %+v, node cpu/execution %g", pair, side, r.Accepted, r.Tally, r.NodeCPUPerExecution)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, " "); got != "A B B A" {
		t.Errorf("ran %s, want A B B A", got)
	}
	if len(c.ExecutionsPerSec.Values) != 2 || c.ExecutionsPerSec.Median <= 0 {
		t.Errorf("ratios %+v", c.ExecutionsPerSec)
	}
}
