package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Ceilings are the machine's raw rates that frame Troupe's figures, measured
// in the same run before the load starts.
type Ceilings struct {
	// ShSpawnPerSec is how many `/bin/sh -c true` processes SpawnWorkers
	// goroutines start and wait for per second.
	ShSpawnPerSec float64 `json:"sh_spawn_per_sec"`
	// PythonSpawnPerSec is the same for `python3 -c pass`, python3 resolved
	// to its real binary as the python runtime does; 0 when there is none.
	PythonSpawnPerSec float64 `json:"python_spawn_per_sec"`
	// Python is the interpreter measured.
	Python string `json:"python,omitempty"`
	// PebbleSyncCommitsPerSec is how many one-key batches PebbleWriters
	// goroutines commit with pebble.Sync per second, in a fresh store.
	PebbleSyncCommitsPerSec float64 `json:"pebble_sync_commits_per_sec"`
	SpawnWorkers            int     `json:"spawn_workers"`
	PebbleWriters           int     `json:"pebble_writers"`
	Seconds                 float64 `json:"seconds"`
}

const (
	spawnWorkers  = 4
	pebbleWriters = 64
)

// measureCeilings measures each ceiling for d; dir holds the scratch store.
func measureCeilings(ctx context.Context, d time.Duration, dir string) (Ceilings, error) {
	c := Ceilings{SpawnWorkers: spawnWorkers, PebbleWriters: pebbleWriters, Seconds: d.Seconds()}
	var err error
	if c.ShSpawnPerSec, err = spawnRate(ctx, d, "/bin/sh", "-c", "true"); err != nil {
		return c, err
	}
	if py, err := realPython(ctx); err == nil {
		c.Python = py
		if c.PythonSpawnPerSec, err = spawnRate(ctx, d, py, "-c", "pass"); err != nil {
			return c, err
		}
	}
	c.PebbleSyncCommitsPerSec, err = pebbleRate(ctx, d, dir)
	return c, err
}

// realPython resolves python3 to the binary a shim ends up running.
func realPython(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		return "", fmt.Errorf("resolve python3: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// spawnRate runs the command back to back from spawnWorkers goroutines for d.
func spawnRate(ctx context.Context, d time.Duration, path string, args ...string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for range spawnWorkers {
		wg.Go(func() {
			for ctx.Err() == nil {
				cmd := exec.Command(path, args...)
				cmd.Env = []string{"PATH=/usr/bin:/bin"}
				if err := cmd.Run(); err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("spawn %s: %w", path, err))
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

// pebbleRate commits one-key batches with pebble.Sync from pebbleWriters
// goroutines for d, in a fresh store under dir.
func pebbleRate(ctx context.Context, d time.Duration, dir string) (float64, error) {
	path, err := os.MkdirTemp(dir, "pebble-ceiling-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(path)
	db, err := pebble.Open(path, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		return 0, fmt.Errorf("open scratch pebble: %w", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n atomic.Int64
	var firstErr atomic.Value
	value := make([]byte, 256)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range pebbleWriters {
		wg.Go(func() {
			key := make([]byte, 12)
			binary.BigEndian.PutUint32(key, uint32(w))
			for i := uint64(0); ctx.Err() == nil; i++ {
				binary.BigEndian.PutUint64(key[4:], i)
				b := db.NewBatch()
				b.Set(key, value, nil)
				if err := b.Commit(pebble.Sync); err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("pebble commit: %w", err))
					return
				}
				b.Close()
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
