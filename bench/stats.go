package bench

import (
	"slices"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// Latency summarizes acceptance-to-terminal durations, in milliseconds.
type Latency struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
}

// summarize sorts ds and returns their percentiles (nearest rank).
func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return Latency{N: len(ds), Mean: ms(sum / time.Duration(len(ds))), P50: ms(percentile(ds, 50)),
		P95: ms(percentile(ds, 95)), P99: ms(percentile(ds, 99)), Max: ms(ds[len(ds)-1])}
}

// percentile is the nearest-rank p-th percentile of sorted ds: the smallest
// value with at least p % of the values at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100+0.999999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Tally is what became of the expected units of work: one unit is one
// (event, rule) pair for rule-driven workloads, one tick of one rule for
// timers, one execution for direct.
type Tally struct {
	// Expected is how many units the accepted requests (or the ticks in
	// the measured window) call for.
	Expected int `json:"expected"`
	// Finished units have an execution in a terminal status.
	Finished int `json:"finished"`
	// Failed units finished in a status other than succeeded.
	Failed int `json:"failed"`
	// Lost units have no terminal execution after the drain.
	Lost int `json:"lost"`
	// Duplicates counts executions beyond the first of a unit.
	Duplicates int `json:"duplicates"`
	// Unexpected counts executions of the workload's rules or action that
	// no expected unit accounts for (a request that failed client-side after
	// the node accepted it, say).
	Unexpected int `json:"unexpected"`
}

// tally matches executions to expected unit keys; keyOf gives an
// execution's unit key.
func tally(expected []string, exs []*api.ExecutionView, keyOf func(*api.ExecutionView) string) Tally {
	byKey := make(map[string][]*api.ExecutionView, len(exs))
	for _, ex := range exs {
		k := keyOf(ex)
		byKey[k] = append(byKey[k], ex)
	}
	t := Tally{Expected: len(expected)}
	seen := make(map[string]bool, len(expected))
	for _, k := range expected {
		if seen[k] {
			continue // the same unit expected twice is still one unit
		}
		seen[k] = true
		got := byKey[k]
		if len(got) > 1 {
			t.Duplicates += len(got) - 1
		}
		var done *api.ExecutionView
		for _, ex := range got {
			if ex.Status.Terminal() {
				done = ex
				break
			}
		}
		switch {
		case done == nil:
			t.Lost++
		case done.Status != domain.StatusSucceeded:
			t.Finished++
			t.Failed++
		default:
			t.Finished++
		}
	}
	for k, got := range byKey {
		if !seen[k] {
			t.Unexpected += len(got)
		}
	}
	return t
}

// eventRuleKey is the unit key of a rule-driven execution.
func eventRuleKey(ex *api.ExecutionView) string { return ex.Event.String() + "/" + ex.Rule }

// tickKey is the unit key of a timer execution: its rule and tick second
// (a timer event's ID carries the tick's time).
func tickKey(ex *api.ExecutionView) string {
	return ex.Rule + "@" + ex.Event.Time().UTC().Format(time.RFC3339)
}

func tickUnit(rule string, tick time.Time) string {
	return rule + "@" + tick.UTC().Format(time.RFC3339)
}

func idKey(ex *api.ExecutionView) string { return ex.ID.String() }

// window is the measured interval [from, to).
type window struct{ from, to time.Time }

func (w window) has(t time.Time) bool { return !t.Before(w.from) && t.Before(w.to) }

// latencies returns finished − start(ex) for the terminal executions whose
// start lies in w.
func latencies(exs []*api.ExecutionView, w window, start func(*api.ExecutionView) time.Time) []time.Duration {
	var ds []time.Duration
	for _, ex := range exs {
		if ex.FinishedAt == nil || !ex.Status.Terminal() {
			continue
		}
		if s := start(ex); w.has(s) {
			ds = append(ds, ex.FinishedAt.Sub(s))
		}
	}
	return ds
}

// finishedIn counts the executions that reached a terminal status in w.
func finishedIn(exs []*api.ExecutionView, w window) int {
	n := 0
	for _, ex := range exs {
		if ex.FinishedAt != nil && ex.Status.Terminal() && w.has(*ex.FinishedAt) {
			n++
		}
	}
	return n
}
