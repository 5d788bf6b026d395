package storage

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/troupehq/troupe/internal/troupetest"
)

// advance moves the monitor's clock forward by d, as if d had passed since
// every event it recorded.
func advance(h *health, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now
	h.now = func() time.Time { return now().Add(d) }
}

// wantUnhealthy fails unless err wraps ErrUnhealthy and names every part.
func wantUnhealthy(t *testing.T, err error, parts ...string) {
	t.Helper()
	if !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("Healthy() = %v, want an error wrapping ErrUnhealthy", err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("Healthy() = %q, want it to name %q", err, p)
		}
	}
}

// TestHealthyNamesTheDiskShortfall: a minimum larger than the real disk
// makes the store unhealthy from Open, naming the data dir, the free bytes
// and the minimum; the metrics say the same.
func TestHealthyNamesTheDiskShortfall(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Config{Dir: dir, MinFreeDisk: 1 << 62, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	free := db.health.free.Load()
	if free <= 0 {
		t.Fatalf("free bytes of %s read as %d", dir, free)
	}
	wantUnhealthy(t, db.Healthy(), "data dir "+dir, fmt.Sprintf("free (%d bytes)", free), "less than the minimum of 4EiB")

	mfs := scrape(t, db.Collector())
	if got := value(t, mfs, "troupe_storage_healthy"); got != 0 {
		t.Errorf("troupe_storage_healthy = %v, want 0", got)
	}
	if got := value(t, mfs, "troupe_storage_disk_free_bytes"); got <= 0 {
		t.Errorf("troupe_storage_disk_free_bytes = %v", got)
	}
	if got := value(t, mfs, "troupe_storage_disk_free_min_bytes"); got != 1<<62 {
		t.Errorf("troupe_storage_disk_free_min_bytes = %v, want %v", got, 1<<62)
	}

	// Writes still work: what is already accepted must be able to finish.
	ev, enfs, exs := fixture(base, "core.webhook", "r")
	if err := db.AcceptEvent(ev, enfs, exs); err != nil {
		t.Fatal(err)
	}
}

// TestHealthFollowsFreeSpace: free space is re-read every interval; the
// change to unhealthy is logged once however many checks see it, and the
// recovery once.
func TestHealthFollowsFreeSpace(t *testing.T) {
	fs := vfs.NewMem()
	fs.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 100 << 20, TotalBytes: 20 << 30})
	var logs troupetest.Buffer
	db, err := Open(Config{Dir: "db", FS: fs, MinFreeDisk: 1 << 30, DiskCheckInterval: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	wantUnhealthy(t, db.Healthy(), "data dir db has 100MiB free (104857600 bytes), less than the minimum of 1GiB")

	fs.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 200 << 20, TotalBytes: 20 << 30})
	troupetest.WaitFor(t, 5*time.Second, func() error {
		if err := db.Healthy(); err == nil || !strings.Contains(err.Error(), "200MiB free") {
			return fmt.Errorf("Healthy() = %v, want 200MiB free below the minimum", err)
		}
		return nil
	})
	fs.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 10 << 30, TotalBytes: 20 << 30})
	troupetest.WaitFor(t, 5*time.Second, func() error {
		if err := db.Healthy(); err != nil {
			return fmt.Errorf("Healthy() = %v with 10GiB free", err)
		}
		if !strings.Contains(logs.String(), "storage healthy again") {
			return errors.New("the recovery is not logged")
		}
		return nil
	})
	if got := value(t, scrape(t, db.Collector()), "troupe_storage_disk_free_bytes"); got != 10<<30 {
		t.Errorf("troupe_storage_disk_free_bytes = %v, want %v", got, 10<<30)
	}
	out := logs.String()
	if n := strings.Count(out, `msg="storage unhealthy`); n != 1 {
		t.Errorf("the change to unhealthy was logged %d times, want once:\n%s", n, out)
	}
	if !strings.Contains(out, "level=WARN msg=\"storage unhealthy") {
		t.Errorf("the change to unhealthy is not a warning:\n%s", out)
	}
}

// TestHealthFollowsPebbleEvents delivers Pebble's events through the
// listener the store installed.
func TestHealthFollowsPebbleEvents(t *testing.T) {
	db := newTestDB(t)
	h := db.health
	if err := db.Healthy(); err != nil {
		t.Fatalf("a new in-memory store: %v", err)
	}
	healthy := func(within string) {
		t.Helper()
		if err := db.Healthy(); err != nil {
			t.Fatalf("%s: Healthy() = %v", within, err)
		}
	}

	h.events.BackgroundError(errors.New("pebble: flush: no space left on device"))
	wantUnhealthy(t, db.Healthy(), "flush or compaction failed 0s ago: pebble: flush: no space left on device")
	advance(h, backgroundErrorHold-time.Second)
	wantUnhealthy(t, db.Healthy(), "flush or compaction failed 59s ago")
	advance(h, time.Second)
	healthy("a minute after the background error")

	h.events.WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "memtable count limit reached"})
	wantUnhealthy(t, db.Healthy(), "writes stalled: memtable count limit reached")
	h.events.WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "L0 file count limit exceeded"})
	h.events.WriteStallEnd()
	wantUnhealthy(t, db.Healthy(), "writes stalled: L0 file count limit exceeded")
	h.events.WriteStallEnd()
	healthy("after every stall ended")

	h.diskSlow(vfs.DiskSlowInfo{Path: "db/000004.log", OpType: vfs.OpTypeSync, Duration: 6 * time.Second})
	wantUnhealthy(t, db.Healthy(), "sync on file 000004.log has been ongoing for 6.0s (0s ago)")
	advance(h, diskSlowHold)
	healthy("30s after the slow sync")

	mfs := scrape(t, db.Collector())
	if got := value(t, mfs, "troupe_storage_healthy"); got != 1 {
		t.Errorf("troupe_storage_healthy = %v, want 1", got)
	}
	if _, ok := mfs["troupe_storage_disk_free_bytes"]; ok {
		t.Error("an in-memory store reported free disk bytes")
	}
}

// TestFailedFlushMakesUnhealthy: a flush that cannot create its table
// reaches Healthy through Pebble's own event listener.
func TestFailedFlushMakesUnhealthy(t *testing.T) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, ".sst") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	// Pebble retries the flush at once and logs each failure: keep them out
	// of the test log.
	db, err := Open(Config{Dir: "db", FS: fs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ev, enfs, exs := fixture(base, "core.webhook", "r")
	if err := db.AcceptEvent(ev, enfs, exs); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	if _, err := db.Pebble().AsyncFlush(); err != nil {
		t.Fatal(err)
	}
	troupetest.WaitFor(t, 10*time.Second, func() error {
		if err := db.Healthy(); !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), "injected error") {
			return fmt.Errorf("Healthy() = %v, want the injected flush error", err)
		}
		return nil
	})
	failing.Store(false)
	if err := db.Pebble().Flush(); err != nil {
		t.Fatal(err)
	}
	advance(db.health, backgroundErrorHold)
	if err := db.Healthy(); err != nil {
		t.Fatalf("a minute after the flush succeeded: %v", err)
	}
}
