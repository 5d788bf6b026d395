package runtimes

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
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

// BenchmarkShellVsRaw alternates the runtime and a bare exec of the same
// program, so that load from elsewhere on the machine weighs on both alike,
// and reports the runtime's spawn rate as a fraction of the raw rate: for a
// command line, and for entry points with and without a #! line (the
// runtime reads the first two bytes of those to choose how to start them).
func BenchmarkShellVsRaw(b *testing.B) {
	rt, err := NewShell(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			b.Fatal(err)
		}
		return p
	}
	plain, shebang := script("plain.sh", "true\n"), script("shebang.sh", "#!/bin/sh\ntrue\n")
	for _, bc := range []struct {
		name string
		req  Request
		raw  []string
	}{
		{"cmd", Request{Cmd: "true"}, []string{"/bin/sh", "-c", "true"}},
		{"entry point", Request{EntryPoint: plain}, []string{"/bin/sh", plain}},
		{"entry point with #!", Request{EntryPoint: shebang}, []string{shebang}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bc.req.ExecutionID, bc.req.Action = "bench", "core.true"
			var raw, shell time.Duration
			for b.Loop() {
				start := time.Now()
				if err := exec.Command(bc.raw[0], bc.raw[1:]...).Run(); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if out := rt.Run(b.Context(), bc.req); out.Status != domain.StatusSucceeded {
					b.Fatalf("run: %s %s", out.Status, out.Error)
				}
				raw, shell = raw+mid.Sub(start), shell+time.Since(mid)
			}
			b.ReportMetric(float64(raw)/float64(shell), "rate/raw")
		})
	}
}

// benchScript is a typical small python action: read the parameters, print
// a JSON result.
const benchScript = `import json, sys
params = json.load(sys.stdin)
json.dump({"hello": params["name"]}, sys.stdout)
`

// BenchmarkPython is the cost of one python action started as a new
// interpreter; compare it with BenchmarkPythonWarm.
func BenchmarkPython(b *testing.B) {
	rt, err := NewPython(DefaultConfig())
	if err != nil {
		b.Skip(err)
	}
	benchRuns(b, rt)
}

// BenchmarkPythonWarm is the cost of one python action forked from the
// python-warm runtime's server.
func BenchmarkPythonWarm(b *testing.B) {
	rt, err := NewPythonWarm(DefaultConfig())
	if err != nil {
		b.Skip(err)
	}
	defer rt.(io.Closer).Close()
	benchRuns(b, rt)
}

// benchRuns reports the runs per second of rt one at a time, and with two
// runs per CPU at once, as many as a worker's default slots.
func benchRuns(b *testing.B, rt Runtime) {
	path := filepath.Join(b.TempDir(), "hello.py")
	if err := os.WriteFile(path, []byte(benchScript), 0o644); err != nil {
		b.Fatal(err)
	}
	req := Request{ExecutionID: "bench", Action: "bench.hello", EntryPoint: path, Parameters: map[string]any{"name": "bench"}}
	run := func(b *testing.B) {
		if out := rt.Run(b.Context(), req); out.Status != domain.StatusSucceeded || string(out.Result.Output) != `{"hello": "bench"}` {
			b.Fatalf("run: %s %s %q", out.Status, out.Error, out.Result.Stderr)
		}
	}
	run(b) // a warm runtime starts its server here
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			run(b)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "runs/s")
	})
	b.Run("concurrent", func(b *testing.B) {
		b.SetParallelism(2)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				run(b)
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "runs/s")
	})
}
