package bench

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/internal/troupetest"
)

// troupeBinary is the troupe binary built once for the package's tests.
var troupeBinary string

func TestMain(m *testing.M) { troupetest.Main(m, &troupeBinary) }

// TestRunWebhookNoop drives one node it starts for two seconds: every
// accepted event ran exactly once, and the figures are filled in.
func TestRunWebhookNoop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a troupe node")
	}
	cfg := DefaultConfig()
	cfg.Binary = troupeBinary
	cfg.Concurrency = 16
	cfg.Duration, cfg.Warmup, cfg.Drain = 2*time.Second, 500*time.Millisecond, 20*time.Second
	cfg.CeilingDuration = 300 * time.Millisecond
	procs := runtime.GOMAXPROCS(0)
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS %d after the run, want %d again (the load ran at --client-procs)", got, procs)
	}
	var table strings.Builder
	res.WriteTable(&table)
	t.Log("\n" + table.String())
	if res.Tally.Lost != 0 || res.Tally.Duplicates != 0 || res.Tally.Unexpected != 0 {
		t.Errorf("tally %+v, want nothing lost, duplicated or unexpected", res.Tally)
	}
	if res.Accepted == 0 || res.Tally.Expected != int(res.Accepted) || res.Errors != 0 {
		t.Errorf("accepted %d, expected units %d, errors %d (%v)", res.Accepted, res.Tally.Expected, res.Errors, res.ErrorSamples)
	}
	if res.Waits != "stream" {
		t.Errorf("the closed loop waited by %q, want the nodes' streams", res.Waits)
	}
	if res.ExecutionsPerSec <= 0 || res.Latency.N == 0 || res.Latency.P99 < res.Latency.P50 {
		t.Errorf("executions/s %g, latency %+v", res.ExecutionsPerSec, res.Latency)
	}
	if res.ClientCPUSeconds <= 0 {
		t.Errorf("bench client cpu %g s", res.ClientCPUSeconds)
	}
	if len(res.NodeStats) != 1 || res.NodeStats[0].CPUSeconds <= 0 || res.NodeStats[0].PeakRSSBytes <= 0 || res.StorageBytesPerExecution <= 0 {
		t.Errorf("node stats %+v, storage/execution %g", res.NodeStats, res.StorageBytesPerExecution)
	}
	if c := res.Ceilings; c == nil || c.ShSpawnPerSec <= 0 || c.PebbleSyncCommitsPerSec <= 0 || res.CeilingRatio <= 0 {
		t.Errorf("ceilings %+v, ratio %g", c, res.CeilingRatio)
	}
}

// TestRunDirect runs ad-hoc executions (POST /api/v1/executions) for a
// second: each was accepted, ran once, and was waited for.
func TestRunDirect(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a troupe node")
	}
	cfg := DefaultConfig()
	cfg.Binary, cfg.Workload, cfg.Concurrency = troupeBinary, Direct, 8
	cfg.Duration, cfg.Warmup, cfg.Drain, cfg.CeilingDuration = time.Second, 200*time.Millisecond, 20*time.Second, 0
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted == 0 || res.Errors != 0 || res.Tally.Expected != int(res.Accepted) || res.Tally.Lost != 0 ||
		res.Tally.Duplicates != 0 || res.Tally.Unexpected != 0 {
		t.Errorf("accepted %d, errors %d (%v), tally %+v", res.Accepted, res.Errors, res.ErrorSamples, res.Tally)
	}
}

// TestRunAgainstARunningNode drives a node bench did not start (--addr):
// what the node used is read from its /metrics, as the run's share.
func TestRunAgainstARunningNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a troupe node")
	}
	cfg := DefaultConfig()
	cfg.Binary, cfg.Workload, cfg.Concurrency = troupeBinary, WebhookShell, 8
	cfg.Duration, cfg.Warmup, cfg.Drain, cfg.CeilingDuration = time.Second, 200*time.Millisecond, 20*time.Second, 0
	dir := t.TempDir()
	pack, err := WritePack(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := startNodes(t.Context(), cfg, dir, pack)
	if err != nil {
		t.Fatal(err)
	}
	defer stopNodes(nodes)
	started, err := nodes[0].usage()
	if err != nil {
		t.Fatal(err)
	}

	cfg.Addrs = []string{nodes[0].addr}
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted == 0 || res.Errors != 0 || res.Tally.Lost != 0 || res.Tally.Duplicates != 0 {
		t.Errorf("accepted %d, errors %d (%v), tally %+v", res.Accepted, res.Errors, res.ErrorSamples, res.Tally)
	}
	ended, err := nodes[0].usage()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.NodeStats) != 1 {
		t.Fatalf("node stats %+v, want the one node", res.NodeStats)
	}
	got := res.NodeStats[0]
	if got.Name != nodes[0].addr {
		t.Errorf("node named %q, want its address %q", got.Name, nodes[0].addr)
	}
	// The run's share: more than nothing, less than the node's whole life.
	if life := ended.CPU - started.CPU; got.CPUSeconds <= 0 || got.CPUSeconds > life+0.05 {
		t.Errorf("cpu %g s during the run; /proc says %g s from before it to after it", got.CPUSeconds, life)
	}
	if life := ended.ChildCPU - started.ChildCPU; got.ChildCPUSeconds <= 0 || got.ChildCPUSeconds > life+0.05 {
		t.Errorf("actions' cpu %g s during the run of shell actions; /proc says %g s", got.ChildCPUSeconds, life)
	}
	if got.PeakRSSBytes <= 0 || got.PeakRSSBytes > ended.PeakRSS {
		t.Errorf("peak rss %d, /proc says %d after the run", got.PeakRSSBytes, ended.PeakRSS)
	}
	if got.StorageBytes <= 0 {
		t.Errorf("storage %d bytes", got.StorageBytes)
	}
	if res.StorageBytesPerExecution != 0 {
		t.Errorf("storage per execution %g for a store that holds more than the run", res.StorageBytesPerExecution)
	}
}
