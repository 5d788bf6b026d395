package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troupehq/troupe/internal/procstat"
)

// RegisterProcess registers what Prometheus's process collector leaves out
// and a benchmark of a running node reads (troupe bench --addr): the
// node's peak resident set and the CPU time of the action processes it
// ran. Both are read from /proc when scraped; where that fails they are
// absent from the scrape rather than zero.
func RegisterProcess(reg prometheus.Registerer) {
	reg.MustRegister(processCollector{})
}

var (
	peakRSSDesc = prometheus.NewDesc("troupe_process_peak_resident_memory_bytes",
		"Peak resident set size of the node process since it started (VmHWM), in bytes.", nil, nil)
	childCPUDesc = prometheus.NewDesc("troupe_process_children_cpu_seconds_total",
		"User and system CPU time of the action processes the node ran and waited for, in seconds.", nil, nil)
)

type processCollector struct{}

func (processCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- peakRSSDesc
	ch <- childCPUDesc
}

func (processCollector) Collect(ch chan<- prometheus.Metric) {
	s, err := procstat.Read("self")
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(peakRSSDesc, prometheus.GaugeValue, float64(s.PeakRSS))
	ch <- prometheus.MustNewConstMetric(childCPUDesc, prometheus.CounterValue, s.ChildCPU)
}
