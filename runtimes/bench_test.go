package runtimes

import (
	"os/exec"
	"testing"
	"time"

	"github.com/troupehq/troupe/domain"
)

// BenchmarkShellTrue is the cost of one shell action through the runtime;
// compare it with BenchmarkRawSpawn, the floor set by fork and exec.
func BenchmarkShellTrue(b *testing.B) {
	rt, err := NewShell(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	req := Request{ExecutionID: "bench", Action: "core.true", Cmd: "true"}
	for b.Loop() {
		if out := rt.Run(b.Context(), req); out.Status != domain.StatusSucceeded {
			b.Fatalf("run: %s %s", out.Status, out.Error)
		}
	}
}

func BenchmarkRawSpawn(b *testing.B) {
	for b.Loop() {
		if err := exec.Command("/bin/sh", "-c", "true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkShellVsRaw alternates the two, so that load from elsewhere on the
// machine weighs on both alike, and reports the runtime's spawn rate as a
// fraction of the raw rate.
func BenchmarkShellVsRaw(b *testing.B) {
	rt, err := NewShell(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	req := Request{ExecutionID: "bench", Action: "core.true", Cmd: "true"}
	var raw, shell time.Duration
	for b.Loop() {
		start := time.Now()
		if err := exec.Command("/bin/sh", "-c", "true").Run(); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		if out := rt.Run(b.Context(), req); out.Status != domain.StatusSucceeded {
			b.Fatalf("run: %s %s", out.Status, out.Error)
		}
		raw, shell = raw+mid.Sub(start), shell+time.Since(mid)
	}
	b.ReportMetric(float64(raw)/float64(shell), "rate/raw")
}
