package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var ds []time.Duration
		for _, n := range ns {
			ds = append(ds, time.Duration(n)*time.Millisecond)
		}
		return ds
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p95 of 1..100", ms(hundred...), 95, 95 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100 of 1..100", ms(hundred...), 100, 100 * time.Millisecond},
		{"p50 of 1..4 is the 2nd", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 1..4 is the max", ms(1, 2, 3, 4), 99, 4 * time.Millisecond},
		{"p0 is the min", ms(1, 2, 3), 0, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %g) = %v, want %v", tt.in, tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarizeSorts(t *testing.T) {
	l := summarize([]time.Duration{4 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond})
	want := Latency{N: 4, Mean: 2.5, P50: 2, P95: 4, P99: 4, Max: 4}
	if l != want {
		t.Errorf("summarize = %+v, want %+v", l, want)
	}
}

func TestTally(t *testing.T) {
	ev1, ev2, ev3 := domain.NewID(time.Now()), domain.NewID(time.Now()), domain.NewID(time.Now())
	ex := func(ev domain.ID, rule string, st domain.Status) *api.ExecutionView {
		return &api.ExecutionView{ID: domain.NewID(time.Now()), Event: ev, Rule: rule, Status: st}
	}
	key := func(ev domain.ID, rule string) string { return ev.String() + "/" + rule }
	tests := []struct {
		name     string
		expected []string
		exs      []*api.ExecutionView
		want     Tally
	}{
		{"all once", []string{key(ev1, "b.r"), key(ev2, "b.r")},
			[]*api.ExecutionView{ex(ev1, "b.r", domain.StatusSucceeded), ex(ev2, "b.r", domain.StatusSucceeded)},
			Tally{Expected: 2, Finished: 2}},
		{"missing is lost", []string{key(ev1, "b.r"), key(ev2, "b.r")},
			[]*api.ExecutionView{ex(ev1, "b.r", domain.StatusSucceeded)},
			Tally{Expected: 2, Finished: 1, Lost: 1}},
		{"unfinished is lost", []string{key(ev1, "b.r")},
			[]*api.ExecutionView{ex(ev1, "b.r", domain.StatusRunning)},
			Tally{Expected: 1, Lost: 1}},
		{"second execution of an event is a duplicate", []string{key(ev1, "b.r")},
			[]*api.ExecutionView{ex(ev1, "b.r", domain.StatusSucceeded), ex(ev1, "b.r", domain.StatusSucceeded), ex(ev1, "b.r", domain.StatusRequested)},
			Tally{Expected: 1, Finished: 1, Duplicates: 2}},
		{"fanout: one per rule is no duplicate", []string{key(ev1, "b.a"), key(ev1, "b.b")},
			[]*api.ExecutionView{ex(ev1, "b.a", domain.StatusSucceeded), ex(ev1, "b.b", domain.StatusSucceeded)},
			Tally{Expected: 2, Finished: 2}},
		{"failed is finished and counted", []string{key(ev1, "b.r")},
			[]*api.ExecutionView{ex(ev1, "b.r", domain.StatusFailed)},
			Tally{Expected: 1, Finished: 1, Failed: 1}},
		{"execution of no accepted request is unexpected", []string{key(ev1, "b.r")},
			[]*api.ExecutionView{ex(ev1, "b.r", domain.StatusSucceeded), ex(ev3, "b.r", domain.StatusSucceeded)},
			Tally{Expected: 1, Finished: 1, Unexpected: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tally(tt.expected, tt.exs, eventRuleKey); got != tt.want {
				t.Errorf("tally = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTimerUnitsAndKeys(t *testing.T) {
	from := time.Date(2026, 1, 2, 3, 4, 5, 500e6, time.UTC)
	w := window{from, from.Add(3 * time.Second)} // ticks at :06, :07, :08
	units := timerUnits([]string{"bench.timer_000", "bench.timer_001"}, w)
	if len(units) != 6 {
		t.Fatalf("units %v, want 3 ticks × 2 rules", units)
	}
	tick := time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC)
	ev := domain.DeriveID(tick, "core.intervaltimer", "x")
	got := tickKey(&api.ExecutionView{Rule: "bench.timer_000", Event: ev})
	if got != units[0] {
		t.Errorf("tick key %q, want %q", got, units[0])
	}
	exs := []*api.ExecutionView{{Rule: "bench.timer_000", Event: ev, Status: domain.StatusSucceeded},
		{Rule: "bench.timer_000", Event: domain.DeriveID(tick, "core.intervaltimer", "y"), Status: domain.StatusSucceeded}}
	if ta := tally(units, exs, tickKey); ta.Duplicates != 1 || ta.Lost != 5 {
		t.Errorf("two events for one tick: tally %+v, want 1 duplicate and 5 lost", ta)
	}
}

func TestLatenciesAndFinishedIn(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) *time.Time { v := t0.Add(time.Duration(ms) * time.Millisecond); return &v }
	exs := []*api.ExecutionView{
		{CreatedAt: *at(100), FinishedAt: at(105), Status: domain.StatusSucceeded},  // in
		{CreatedAt: *at(50), FinishedAt: at(120), Status: domain.StatusSucceeded},   // created before
		{CreatedAt: *at(900), FinishedAt: at(1100), Status: domain.StatusSucceeded}, // finished after
		{CreatedAt: *at(200), Status: domain.StatusRunning},                         // not finished
	}
	w := window{*at(100), *at(1000)}
	ds := latencies(exs, w, func(ex *api.ExecutionView) time.Time { return ex.CreatedAt })
	if len(ds) != 2 || ds[0] != 5*time.Millisecond || ds[1] != 200*time.Millisecond {
		t.Errorf("latencies %v, want [5ms 200ms]", ds)
	}
	if n := finishedIn(exs, w); n != 2 {
		t.Errorf("finishedIn = %d, want 2", n)
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Binary = "troupe"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	cfg.Workload, cfg.Concurrency, cfg.Binary, cfg.ClientProcs = "nope", 0, "", 0
	err := cfg.Validate()
	for _, want := range []string{`unknown workload "nope"`, "concurrency: 0", "binary:", "client procs: 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}
