package bench

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/internal/procstat"
)

// usage is what a node had used when it was read. A run reads each node
// before its load and after the drain, and reports the difference, so
// that nodes bench started and running nodes it was given (--addr) are
// measured alike.
type usage struct {
	procstat.Stats       // since the node started
	storage        int64 // bytes of its store now
}

// usage reads a node bench started from /proc and its data dir.
func (n *node) usage() (usage, error) {
	s, err := procstat.Read(strconv.Itoa(n.cmd.Process.Pid))
	if err != nil {
		return usage{}, fmt.Errorf("usage of node %s: %w", n.name, err)
	}
	size, err := dirSize(n.dataDir)
	if err != nil {
		return usage{}, fmt.Errorf("size of node %s data: %w", n.name, err)
	}
	return usage{s, size}, nil
}

// remoteMetrics are the series of a node's /metrics a usage is read from.
var remoteMetrics = [...]string{"process_cpu_seconds_total", "troupe_process_children_cpu_seconds_total",
	"troupe_process_peak_resident_memory_bytes", "troupe_storage_disk_usage_bytes"}

// remoteUsage reads a running node's usage from its /metrics.
func remoteUsage(ctx context.Context, c *api.Client) (usage, error) {
	url := c.Addr + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return usage{}, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return usage{}, fmt.Errorf("usage of node %s: %w", c.Addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return usage{}, fmt.Errorf("usage of node %s: GET %s: %s", c.Addr, url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return usage{}, fmt.Errorf("usage of node %s: GET %s: %w", c.Addr, url, err)
	}
	var v [len(remoteMetrics)]float64
	for i, name := range remoteMetrics {
		mf := mfs[name]
		if mf == nil || len(mf.GetMetric()) != 1 {
			return usage{}, fmt.Errorf("usage of node %s: GET %s has no %s (a troupe older than this bench?)", c.Addr, url, name)
		}
		v[i] = value(mf.GetMetric()[0])
	}
	return usage{procstat.Stats{CPU: v[0], ChildCPU: v[1], PeakRSS: int64(v[2])}, int64(v[3])}, nil
}

func value(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}
