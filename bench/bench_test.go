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
