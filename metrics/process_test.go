package metrics

import (
	"os/exec"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestProcessMetricsReadThisProcess(t *testing.T) {
	if err := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done").Run(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	RegisterProcess(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	if v := got["troupe_process_peak_resident_memory_bytes"]; v < 1<<20 {
		t.Errorf("peak RSS %g bytes, want this test process's (MiBs)", v)
	}
	if v, ok := got["troupe_process_children_cpu_seconds_total"]; !ok || v <= 0 {
		t.Errorf("children's CPU %g s (present %v) after a busy child", v, ok)
	}
}
