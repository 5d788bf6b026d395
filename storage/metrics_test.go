package storage

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/internal/troupetest"
)

// openDiskDB opens a store on the real disk, so that WAL fsyncs, flushes
// and file sizes are real.
func openDiskDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(Config{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

// gather collects c through a pedantic registry, which also checks that
// every collected metric was described and is consistent.
func gather(t *testing.T, c prometheus.Collector) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return mfs
}

// scrape gathers c by family name.
func scrape(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	mfs := gather(t, c)
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// sample returns the metric of family name whose labels include want
// (name=value pairs); it fails the test when there is none.
func sample(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want ...string) *dto.Metric {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("metric %s not collected", name)
	}
	for _, m := range mf.GetMetric() {
		if troupetest.HasLabels(m, want...) {
			return m
		}
	}
	t.Fatalf("metric %s has no series with labels %v", name, want)
	return nil
}

// value is the value of a gauge or counter series.
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	m := sample(t, mfs, name, labels...)
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	}
	t.Fatalf("metric %s is neither a gauge nor a counter", name)
	return 0
}

// sum adds every series of a gauge or counter family.
func sum(t *testing.T, mfs map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	var total float64
	for _, m := range mfs[name].GetMetric() {
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return total
}

func TestCollectorLint(t *testing.T) {
	db := openDiskDB(t)
	// testutil.CollectAndLint without testutil, whose comparison helpers
	// need a module this one does not require.
	problems, err := promlint.NewWithMetricFamilies(gather(t, db.Collector())).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// Every series is there from the first scrape, zeros included, so that
	// dashboards and alerts never see the series appear late.
	mfs := scrape(t, db.Collector())
	for _, s := range stats {
		name := strings.Split(strings.TrimPrefix(s.desc.String(), `Desc{fqName: "`), `"`)[0]
		if _, ok := mfs[name]; !ok {
			t.Errorf("%s not collected", name)
		}
	}
	for _, name := range []string{"troupe_storage_compactions_total", "troupe_storage_level_files", "troupe_storage_level_bytes",
		"troupe_storage_wal_fsync_seconds", "troupe_storage_records_bytes", "troupe_storage_records", "troupe_storage_healthy",
		"troupe_storage_disk_free_bytes", "troupe_storage_disk_free_min_bytes", "troupe_executions_in_flight"} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("%s not collected", name)
		}
	}
	if _, ok := mfs["troupe_storage_scrape_error"]; ok {
		t.Error("a clean store reported a scrape error")
	}
	if n := len(mfs["troupe_executions_in_flight"].GetMetric()); n != len(nonTerminal) {
		t.Errorf("troupe_executions_in_flight has %d series, want one per non-terminal status (%d)", n, len(nonTerminal))
	}
	if n := len(mfs["troupe_storage_records_bytes"].GetMetric()); n != len(recordKinds) {
		t.Errorf("troupe_storage_records_bytes has %d series, want %d", n, len(recordKinds))
	}
}

// TestCollectorMoves writes executions and checks that the in-flight
// counts, fsyncs, WAL, flushes, record sizes and compactions follow.
func TestCollectorMoves(t *testing.T) {
	db := openDiskDB(t)
	c := db.Collector()
	before := scrape(t, c)
	fsyncsBefore := sample(t, before, "troupe_storage_wal_fsync_seconds").GetHistogram().GetSampleCount()

	const n = 40
	var exs []*domain.Execution
	for i := range n {
		ev, enfs, created := fixture(base.Add(time.Duration(i)*time.Millisecond), "core.webhook", "r")
		if err := db.AcceptEvent(ev, enfs, created); err != nil {
			t.Fatal(err)
		}
		exs = append(exs, created...)
	}
	// 10 scheduled, 10 running, 5 succeeded, 5 failed, 10 still requested.
	for i, ex := range exs[:30] {
		ts := []Transition{to(domain.StatusScheduled, 1)}
		switch {
		case i >= 10 && i < 20:
			ts = append(ts, to(domain.StatusRunning, 1))
		case i >= 20 && i < 25:
			ts = append(ts, to(domain.StatusRunning, 1), to(domain.StatusSucceeded, 1))
		case i >= 25:
			ts = append(ts, to(domain.StatusRunning, 1), to(domain.StatusFailed, 1))
		}
		if _, _, err := db.Apply(ex.ID, ts...); err != nil {
			t.Fatal(err)
		}
	}
	// Every AcceptEvent and Apply commits with Sync: 70 commits, and
	// serial commits cannot share an fsync. Pebble observes an fsync's
	// latency just after it releases the commit waiting for it, so the
	// last one may be counted a moment after Apply returned.
	var after map[string]*dto.MetricFamily
	troupetest.WaitFor(t, 5*time.Second, func() error {
		after = scrape(t, c)
		if got := sample(t, after, "troupe_storage_wal_fsync_seconds").GetHistogram().GetSampleCount() - fsyncsBefore; got < 2*n-10 {
			return fmt.Errorf("wal fsyncs grew by %d over %d synced commits", got, 2*n-10)
		}
		return nil
	})
	for status, want := range map[domain.Status]float64{
		domain.StatusRequested: 10, domain.StatusScheduled: 10, domain.StatusRunning: 10,
		domain.StatusDelayed: 0, domain.StatusCanceling: 0,
	} {
		if got := value(t, after, "troupe_executions_in_flight", "status", string(status)); got != want {
			t.Errorf("troupe_executions_in_flight{status=%q} = %v, want %v", status, got, want)
		}
	}
	h := sample(t, after, "troupe_storage_wal_fsync_seconds").GetHistogram()
	if h.GetSampleSum() <= 0 || h.GetSampleSum() > float64(h.GetSampleCount())*10 {
		t.Errorf("wal fsync seconds sum %v over %d fsyncs: not in seconds?", h.GetSampleSum(), h.GetSampleCount())
	}
	if got := value(t, after, "troupe_storage_wal_bytes"); got <= value(t, before, "troupe_storage_wal_bytes") {
		t.Errorf("troupe_storage_wal_bytes %v did not grow after writes", got)
	}
	if got := value(t, after, "troupe_storage_wal_written_bytes_total"); got <= 0 {
		t.Errorf("troupe_storage_wal_written_bytes_total %v after writes", got)
	}
	if got := value(t, after, "troupe_storage_memtable_bytes"); got <= 0 {
		t.Errorf("troupe_storage_memtable_bytes %v after writes", got)
	}

	// Records reach tables at a flush; only then can their size be estimated.
	if err := db.Pebble().Flush(); err != nil {
		t.Fatal(err)
	}
	flushed := scrape(t, c)
	if got, was := value(t, flushed, "troupe_storage_flushes_total"), value(t, before, "troupe_storage_flushes_total"); got <= was {
		t.Errorf("troupe_storage_flushes_total %v after a flush, was %v", got, was)
	}
	if got := value(t, flushed, "troupe_storage_l0_files"); got < 1 {
		t.Errorf("troupe_storage_l0_files %v after a flush", got)
	}
	if got := value(t, flushed, "troupe_storage_level_files", "level", "0"); got < 1 {
		t.Errorf("troupe_storage_level_files{level=0} %v after a flush", got)
	}
	if got := value(t, flushed, "troupe_storage_read_amplification"); got < 1 {
		t.Errorf("troupe_storage_read_amplification %v with a table in L0", got)
	}
	if got, was := value(t, flushed, "troupe_storage_disk_usage_bytes"), value(t, before, "troupe_storage_disk_usage_bytes"); got <= was {
		t.Errorf("troupe_storage_disk_usage_bytes %v after writes and a flush, was %v", got, was)
	}
	// Outbox entries of the 10 finished executions are empty keys; every
	// other kind carries values, but for history, which holds only what
	// left the records of executions retried many times.
	for _, k := range recordKinds {
		if k.prefix == pfxHistory {
			continue
		}
		if got := value(t, flushed, "troupe_storage_records_bytes", "kind", k.kind); got <= 0 {
			t.Errorf("troupe_storage_records_bytes{kind=%q} = %v after a flush", k.kind, got)
		}
	}
	if e, ev := value(t, flushed, "troupe_storage_records_bytes", "kind", "executions"),
		value(t, flushed, "troupe_storage_records_bytes", "kind", "outbox"); e < ev {
		t.Errorf("executions take %v bytes, less than the outbox's %v", e, ev)
	}

	// A manual compaction of everything moves the flushed table down.
	if err := db.Pebble().Compact(t.Context(), []byte{0}, []byte{0xff}, false); err != nil {
		t.Fatal(err)
	}
	compacted := scrape(t, c)
	if got, was := sum(t, compacted, "troupe_storage_compactions_total"), sum(t, before, "troupe_storage_compactions_total"); got <= was {
		t.Errorf("troupe_storage_compactions_total sums to %v after a manual compaction, was %v", got, was)
	}
	if got := value(t, compacted, "troupe_storage_level_files", "level", "0"); got != 0 {
		t.Errorf("troupe_storage_level_files{level=0} = %v after compacting everything", got)
	}
}

func TestInFlightCountsTheIndex(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	if counts := db.InFlight(); len(counts) != 0 {
		t.Fatalf("empty store: %v", counts)
	}
	var exs []*domain.Execution
	for i := range 5 {
		_, _, created := fixture(base.Add(time.Duration(i)*time.Millisecond), "core.webhook", "a", "b")
		for _, ex := range created {
			if err := db.CreateExecution(ex); err != nil {
				t.Fatal(err)
			}
		}
		exs = append(exs, created...)
	}
	steps := []struct {
		ex   int
		ts   []Transition
		want map[domain.Status]int
	}{
		{0, []Transition{to(domain.StatusDelayed, 1)}, map[domain.Status]int{domain.StatusRequested: 9, domain.StatusDelayed: 1}},
		{1, []Transition{to(domain.StatusScheduled, 1), to(domain.StatusRunning, 1)},
			map[domain.Status]int{domain.StatusRequested: 8, domain.StatusDelayed: 1, domain.StatusRunning: 1}},
		{1, []Transition{to(domain.StatusCanceling, 1)},
			map[domain.Status]int{domain.StatusRequested: 8, domain.StatusDelayed: 1, domain.StatusCanceling: 1}},
		{1, []Transition{to(domain.StatusCanceled, 1)}, map[domain.Status]int{domain.StatusRequested: 8, domain.StatusDelayed: 1}},
		{2, []Transition{to(domain.StatusScheduled, 1), to(domain.StatusRunning, 1), to(domain.StatusTimeout, 1)},
			map[domain.Status]int{domain.StatusRequested: 7, domain.StatusDelayed: 1}},
		{3, []Transition{to(domain.StatusScheduled, 1), to(domain.StatusRunning, 1)},
			map[domain.Status]int{domain.StatusRequested: 6, domain.StatusDelayed: 1, domain.StatusRunning: 1}},
		// A retry takes a running attempt back to requested as the next one.
		{3, []Transition{{Attempt: 1, To: domain.StatusRequested, At: base.Add(time.Minute), NextAttempt: true}},
			map[domain.Status]int{domain.StatusRequested: 7, domain.StatusDelayed: 1}},
	}
	for i, s := range steps {
		if _, _, err := db.Apply(exs[s.ex].ID, s.ts...); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := db.InFlight(); fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Errorf("step %d: in flight %v, want %v", i, got, s.want)
		}
		// Admission reads the count the write path keeps; it must agree
		// with the index it stands for.
		total := 0
		for _, n := range s.want {
			total += n
		}
		if u := db.Unfinished(); u != int64(total) {
			t.Errorf("step %d: Unfinished() = %d, the index holds %d", i, u, total)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, fs)
	defer db.Close()
	last := steps[len(steps)-1].want
	if got := db.InFlight(); fmt.Sprint(got) != fmt.Sprint(last) {
		t.Errorf("reopened: in flight %v, want %v", got, last)
	}
	if u := db.Unfinished(); u != 8 {
		t.Errorf("reopened: Unfinished() = %d, want the 8 left in the index", u)
	}
}

// The exported fsync buckets are a subset of Pebble's, converted to
// seconds, ascending and spanning 100µs to 10s.
func TestFsyncBuckets(t *testing.T) {
	var bounds []float64
	for pebbleNanos, b := range fsyncBounds() {
		if math.Abs(b-pebbleNanos/1e9) > 0.0005*b {
			t.Errorf("bound %vs is not Pebble's %vns", b, pebbleNanos)
		}
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	if len(bounds) < 10 || len(bounds) > len(fsyncTargets) {
		t.Fatalf("%d buckets: %v", len(bounds), bounds)
	}
	if bounds[0] != 0.0001 || bounds[len(bounds)-1] != 10 {
		t.Errorf("buckets span %v to %v, want 100µs to 10s", bounds[0], bounds[len(bounds)-1])
	}
	for _, b := range bounds {
		i := slices.IndexFunc(fsyncTargets, func(t float64) bool { return math.Abs(math.Log(b/t)) < 0.1 })
		if i < 0 {
			t.Errorf("bucket %vs is not within 10%% of any wanted bound", b)
		}
	}
}
