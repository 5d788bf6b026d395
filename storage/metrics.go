package storage

import (
	"fmt"
	"math"
	"strconv"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/troupehq/troupe/domain"
)

// Collector returns a Prometheus collector of the store: Pebble's own
// metrics (disk usage, WAL, fsync latency, compactions, flushes, read
// amplification, memtables, block cache), the non-terminal executions by
// status, the records stored and their estimated on-disk bytes by kind, the
// store's health and the free space under it. It reads everything at scrape
// time; a scrape costs one db.Metrics() call and a few range estimates. Register
// it on the node's registry; it must not be collected after Close.
func (db *DB) Collector() prometheus.Collector { return &collector{db: db} }

// recordKinds are the key prefixes whose size troupe_storage_records_bytes
// reports, by kind label. A new record prefix belongs here.
var recordKinds = []struct{ kind, prefix string }{
	{"events", pfxEvent},
	{"enforcements", pfxEnforcement},
	{"executions", pfxExecution},
	{"history", pfxHistory},
	{"index", pfxActive},
	{"outbox", pfxOutbox},
}

func storageDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("troupe_storage_"+name, help, labels, nil)
}

// stat is one unlabelled value read from pebble.Metrics.
type stat struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(*pebble.Metrics) float64
}

var stats = []stat{
	{storageDesc("disk_usage_bytes", "Disk space used by the store: WAL, tables, manifest and options, live and obsolete."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.DiskSpaceUsage()) }},
	{storageDesc("wal_bytes", "Live data in the write-ahead log (not yet flushed to tables)."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.WAL.Size) }},
	{storageDesc("wal_files", "Live WAL files."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.WAL.Files) }},
	{storageDesc("wal_written_bytes_total", "Bytes written to the WAL since the store was opened."),
		prometheus.CounterValue, func(m *pebble.Metrics) float64 { return float64(m.WAL.BytesWritten) }},
	{storageDesc("flushes_total", "Memtable flushes to L0 since the store was opened."),
		prometheus.CounterValue, func(m *pebble.Metrics) float64 { return float64(m.Flush.Count) }},
	{storageDesc("compaction_failures_total", "Compactions that failed with an error (cancelled ones excluded) since the store was opened."),
		prometheus.CounterValue, func(m *pebble.Metrics) float64 { return float64(m.Compact.FailedCount) }},
	{storageDesc("compaction_seconds_total", "Time spent compacting since the store was opened, running compactions included."),
		prometheus.CounterValue, func(m *pebble.Metrics) float64 { return m.Compact.Duration.Seconds() }},
	{storageDesc("compactions_in_progress", "Compactions running now."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.Compact.NumInProgress) }},
	{storageDesc("compaction_debt_bytes", "Estimated bytes still to compact for the LSM to reach a stable shape; growing means compactions are falling behind."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.Compact.EstimatedDebt) }},
	{storageDesc("read_amplification", "Tables a point read may consult: L0 sublevels plus non-empty lower levels."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.ReadAmp()) }},
	{storageDesc("l0_sublevels", "Sublevels in L0; above ~20 Pebble slows writes down."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.Levels[0].Sublevels) }},
	{storageDesc("l0_files", "Tables in L0."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.Levels[0].TablesCount) }},
	{storageDesc("memtable_bytes", "Memory allocated by memtables (and large batches) not yet flushed."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.MemTable.Size) }},
	{storageDesc("memtables", "Memtables, the mutable one and those waiting to be flushed."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.MemTable.Count) }},
	{storageDesc("block_cache_bytes", "Bytes in use by the block cache."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.BlockCache.Size) }},
	{storageDesc("block_cache_blocks", "Blocks held by the block cache."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.BlockCache.Count) }},
	{storageDesc("block_cache_hits_total", "Block cache hits since the store was opened."),
		prometheus.CounterValue, func(m *pebble.Metrics) float64 { return float64(m.BlockCache.Hits) }},
	{storageDesc("block_cache_misses_total", "Block cache misses (reads from disk) since the store was opened."),
		prometheus.CounterValue, func(m *pebble.Metrics) float64 { return float64(m.BlockCache.Misses) }},
	{storageDesc("tombstones", "Approximate deletion tombstones not yet compacted away."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.Keys.TombstoneCount) }},
	{storageDesc("snapshots_open", "Open snapshots; one that stays open pins deleted data on disk."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.Snapshots.Count) }},
	{storageDesc("table_iterators_open", "Open table iterators; a number that only grows is an iterator leak."),
		prometheus.GaugeValue, func(m *pebble.Metrics) float64 { return float64(m.TableIters) }},
}

var (
	compactionsDesc = storageDesc("compactions_total",
		"Compactions since the store was opened, by kind (default, move, delete_only, elision_only, read, tombstone_density, rewrite, copy, blob_file_rewrite); flushes are troupe_storage_flushes_total.", "kind")
	levelFilesDesc = storageDesc("level_files", "Tables in each LSM level (0–6).", "level")
	levelBytesDesc = storageDesc("level_bytes", "Bytes of the tables in each LSM level (0–6).", "level")
	fsyncDesc      = storageDesc("wal_fsync_seconds",
		"Latency of WAL fsyncs since the store was opened; every acknowledged transition waits for one (shared by concurrent commits).")
	recordsDesc = storageDesc("records_bytes",
		"Estimated on-disk bytes of each kind of record (events, enforcements, executions, history, index, outbox), from the tables overlapping its key range; records still only in the memtable and WAL are not counted.", "kind")
	recordCountDesc = storageDesc("records",
		"Records stored, by kind (events, enforcements, executions): counted by a key scan when the store opens, then as they are written.", "kind")
	healthyDesc = storageDesc("healthy",
		"1 while the store can take writes; 0 while it cannot (low free disk, failed flush or compaction, write stall, slow disk) and the node is not ready: /readyz and the log say why.")
	diskFreeDesc = storageDesc("disk_free_bytes",
		"Free space available to the agent on the filesystem of the data dir, at the last check; absent when the filesystem cannot tell.")
	diskFreeMinDesc = storageDesc("disk_free_min_bytes",
		"The configured min_free_disk: below this free space the store is unhealthy.")
	inFlightDesc = prometheus.NewDesc("troupe_executions_in_flight",
		"Executions this node owns that are not finished yet, by status (requested, delayed, scheduled, running, canceling): counted from the index of non-terminal executions when the store opens, then kept by each commit.",
		[]string{"status"}, nil)
	// scrapeErrorDesc carries a failure to read part of the store: the
	// scrape then fails loudly instead of silently missing series.
	scrapeErrorDesc = storageDesc("scrape_error", "A failure reading the store's metrics.")
)

// compactionKinds are the compaction counts by kind label; they sum to
// Compact.Count.
var compactionKinds = []struct {
	kind  string
	count func(*pebble.Metrics) int64
}{
	{"default", func(m *pebble.Metrics) int64 { return m.Compact.DefaultCount }},
	{"move", func(m *pebble.Metrics) int64 { return m.Compact.MoveCount }},
	{"delete_only", func(m *pebble.Metrics) int64 { return m.Compact.DeleteOnlyCount }},
	{"elision_only", func(m *pebble.Metrics) int64 { return m.Compact.ElisionOnlyCount }},
	{"read", func(m *pebble.Metrics) int64 { return m.Compact.ReadCount }},
	{"tombstone_density", func(m *pebble.Metrics) int64 { return m.Compact.TombstoneDensityCount }},
	{"rewrite", func(m *pebble.Metrics) int64 { return m.Compact.RewriteCount }},
	{"copy", func(m *pebble.Metrics) int64 { return m.Compact.CopyCount }},
	{"blob_file_rewrite", func(m *pebble.Metrics) int64 { return m.Compact.BlobFileRewriteCount }},
}

// nonTerminal are the statuses an execution in flight can have, in
// domain.Statuses order.
var nonTerminal = func() []domain.Status {
	var out []domain.Status
	for _, s := range domain.Statuses {
		if !s.Terminal() {
			out = append(out, s)
		}
	}
	return out
}()

type collector struct{ db *DB }

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range stats {
		ch <- s.desc
	}
	for _, d := range []*prometheus.Desc{compactionsDesc, levelFilesDesc, levelBytesDesc, fsyncDesc, recordsDesc,
		recordCountDesc, healthyDesc, diskFreeDesc, diskFreeMinDesc, inFlightDesc, scrapeErrorDesc} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	pdb := c.db.pdb
	m := pdb.Metrics()
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(s.desc, s.typ, s.value(m))
	}
	for _, k := range compactionKinds {
		ch <- prometheus.MustNewConstMetric(compactionsDesc, prometheus.CounterValue, float64(k.count(m)), k.kind)
	}
	for i := range m.Levels {
		l := strconv.Itoa(i)
		ch <- prometheus.MustNewConstMetric(levelFilesDesc, prometheus.GaugeValue, float64(m.Levels[i].TablesCount), l)
		ch <- prometheus.MustNewConstMetric(levelBytesDesc, prometheus.GaugeValue, float64(m.Levels[i].AggregateSize()), l)
	}
	if h := m.LogWriter.FsyncLatency; h != nil {
		metric, err := fsyncSeconds(h)
		if err != nil {
			metric = prometheus.NewInvalidMetric(scrapeErrorDesc, err)
		}
		ch <- metric
	}
	for _, k := range recordKinds {
		n, err := pdb.EstimateDiskUsage([]byte(k.prefix), prefixEnd(k.prefix))
		if err != nil {
			ch <- prometheus.NewInvalidMetric(scrapeErrorDesc, fmt.Errorf("estimate disk usage of %s: %w", k.kind, err))
			continue
		}
		ch <- prometheus.MustNewConstMetric(recordsDesc, prometheus.GaugeValue, float64(n), k.kind)
	}
	for i, k := range counted {
		ch <- prometheus.MustNewConstMetric(recordCountDesc, prometheus.GaugeValue, float64(c.db.records[i].Load()), k.kind)
	}
	healthy := 1.0
	if c.db.health.problem() != "" {
		healthy = 0
	}
	ch <- prometheus.MustNewConstMetric(healthyDesc, prometheus.GaugeValue, healthy)
	if free := c.db.health.free.Load(); free >= 0 {
		ch <- prometheus.MustNewConstMetric(diskFreeDesc, prometheus.GaugeValue, float64(free))
	}
	ch <- prometheus.MustNewConstMetric(diskFreeMinDesc, prometheus.GaugeValue, float64(c.db.health.min))
	counts := c.db.InFlight()
	for _, s := range nonTerminal {
		ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}

// InFlight counts the non-terminal executions by status. Statuses with no
// execution are absent from the map.
func (db *DB) InFlight() map[domain.Status]int {
	counts := map[domain.Status]int{}
	for s, c := range db.inFlight {
		if n := c.Load(); n != 0 {
			counts[s] = int(n)
		}
	}
	return counts
}

// fsyncTargets are the bucket bounds, in seconds, wanted for the fsync
// histogram: Pebble's has 100 buckets, too many series to keep per node.
var fsyncTargets = []float64{.0001, .0002, .0005, .001, .002, .003, .005, .0075, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}

// fsyncBounds maps Pebble's bucket bounds (nanoseconds) nearest to each of
// fsyncTargets to the bound exported, in seconds. Keeping a subset of a
// cumulative histogram's buckets is exact; the exported bounds are Pebble's
// rounded to four significant digits (an error under 0.05%), so that they
// read 0.007963 rather than 0.00796294803548532.
var fsyncBounds = sync.OnceValue(func() map[float64]float64 {
	keep := map[float64]float64{}
	for _, t := range fsyncTargets {
		best, dist := 0.0, math.Inf(1)
		for _, b := range pebble.FsyncLatencyBuckets {
			if b <= 0 {
				continue
			}
			if d := math.Abs(math.Log(b / 1e9 / t)); d < dist {
				best, dist = b, d
			}
		}
		keep[best], _ = strconv.ParseFloat(strconv.FormatFloat(best/1e9, 'g', 4, 64), 64)
	}
	return keep
})

// fsyncSeconds re-exports Pebble's WAL fsync histogram, observed in
// nanoseconds, as a histogram in seconds over a subset of its buckets.
func fsyncSeconds(h prometheus.Histogram) (prometheus.Metric, error) {
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		return nil, fmt.Errorf("read wal fsync histogram: %w", err)
	}
	hist := m.GetHistogram()
	keep := fsyncBounds()
	buckets := map[float64]uint64{}
	for _, b := range hist.GetBucket() {
		if bound, ok := keep[b.GetUpperBound()]; ok {
			buckets[bound] = b.GetCumulativeCount()
		}
	}
	return prometheus.NewConstHistogram(fsyncDesc, hist.GetSampleCount(), hist.GetSampleSum()/1e9, buckets)
}
