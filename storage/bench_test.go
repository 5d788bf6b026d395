package storage

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/troupehq/troupe/domain"
)

// Concurrency levels the parallel benchmarks run at; DESIGN §4 measured raw
// Pebble sync commits at 1, 64 and 256 writers.
var writers = []int{1, 16, 64, 256}

func openBenchDB(b *testing.B) *DB {
	db, err := Open(Config{Dir: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := db.Close(); err != nil {
			b.Error(err)
		}
	})
	return db
}

// runParallel runs body on n goroutines in total (RunParallel starts
// parallelism × GOMAXPROCS of them) and reports throughput per second and
// the CPU time of the process per op: ns/op is mostly the wait for fsync,
// so what the write path costs the node shows only in the CPU time.
func runParallel(b *testing.B, n int, unit string, body func(pb *testing.PB)) {
	b.SetParallelism(max(1, n/runtime.GOMAXPROCS(0)))
	cpu := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(body)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit+"/s")
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the user and system time the process used so far, Pebble's
// flushes and compactions and the garbage collector included.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAcceptEventParallel accepts events of one matching rule each (an
// event, an enforcement, an execution: 5 keys per synced batch).
func BenchmarkAcceptEventParallel(b *testing.B) {
	for _, n := range writers {
		b.Run(fmt.Sprintf("writers=%d", n), func(b *testing.B) {
			db := openBenchDB(b)
			var seq atomic.Int64
			runParallel(b, n, "events", func(pb *testing.PB) {
				for pb.Next() {
					ev, enfs, exs := fixture(base.Add(time.Duration(seq.Add(1))*time.Millisecond), "bench", "r")
					if err := db.AcceptEvent(ev, enfs, exs); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkApplyParallel applies one transition per op, each goroutine
// cycling its own execution through scheduled → running → requested (a
// retry, next attempt) forever: 3 keys per synced batch.
func BenchmarkApplyParallel(b *testing.B) {
	for _, n := range writers {
		b.Run(fmt.Sprintf("writers=%d", n), func(b *testing.B) {
			db := openBenchDB(b)
			// RunParallel may start up to one goroutine more per proc than asked.
			pool := make([]domain.ID, n+runtime.GOMAXPROCS(0))
			for i := range pool {
				_, _, exs := fixture(base.Add(time.Duration(i)*time.Millisecond), "bench", "r")
				if err := db.CreateExecution(exs[0]); err != nil {
					b.Fatal(err)
				}
				pool[i] = exs[0].ID
			}
			var next atomic.Int64
			runParallel(b, n, "transitions", func(pb *testing.PB) {
				id := pool[next.Add(1)-1]
				cycle := []domain.Status{domain.StatusScheduled, domain.StatusRunning, domain.StatusRequested}
				for i, attempt := 0, 1; pb.Next(); i++ {
					t := Transition{Attempt: attempt, To: cycle[i%3], Node: "w1", NextAttempt: cycle[i%3] == domain.StatusRequested}
					if _, changed, err := db.Apply(id, t); err != nil || !changed {
						b.Errorf("apply %s: changed %v, %v", t.To, changed, err)
						return
					}
					if t.NextAttempt {
						attempt++
					}
				}
			})
		})
	}
}
