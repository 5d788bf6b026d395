package bench

import (
	"strings"
	"testing"
)

func TestMediansOf(t *testing.T) {
	run := func(execs, p99, ratio float64, lost, errs int) Result {
		return Result{ExecutionsPerSec: execs, Latency: Latency{P99: p99}, Ceiling: "sh spawn", CeilingRatio: ratio,
			Tally: Tally{Lost: lost}, Errors: int64(errs)}
	}
	m := MediansOf([]Result{run(8445, 25, 0.72, 0, 0), run(7577, 27, 0.78, 1, 0), run(8539, 24.3, 0.70, 0, 2)})
	if m.Runs != 3 || m.ExecutionsPerSec.Median != 8445 || m.P99.Median != 25 || m.CeilingRatio.Median != 0.72 {
		t.Errorf("medians %+v", m)
	}
	if got := m.ExecutionsPerSec.Values; len(got) != 3 || got[1] != 7577 {
		t.Errorf("values %v, want the runs' in order", got)
	}
	if m.Lost != 1 || m.Errors != 2 {
		t.Errorf("lost %d, errors %d; want every run's summed", m.Lost, m.Errors)
	}
	if even := MediansOf([]Result{run(1, 0, 0, 0, 0), run(2, 0, 0, 0, 0)}); even.ExecutionsPerSec.Median != 1 {
		t.Errorf("median of two runs %v, want the lower one", even.ExecutionsPerSec.Median)
	}
	var table strings.Builder
	if err := m.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"medians of 3 runs", "8445  (8445 / 7577 / 8539)", "× sh spawn", "lost 1, duplicates 0"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}
