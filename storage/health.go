package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/troupehq/troupe/internal/bytesize"
)

// ErrUnhealthy is wrapped by the error Healthy returns.
var ErrUnhealthy = errors.New("storage unhealthy")

const (
	// diskSlowThreshold is Pebble's own (Options.WithFSDefaults): one write
	// or sync of the WAL or of a table that takes this long is reported.
	diskSlowThreshold = 5 * time.Second
	// diskSlowHold keeps the store unhealthy after the last slow operation:
	// a stuck write is reported again every few seconds while it lasts, so
	// the hold only has to outlast those reports and the next few writes.
	diskSlowHold = 30 * time.Second
	// backgroundErrorHold does the same for a failed flush or compaction.
	// Pebble retries them, so a lasting fault keeps reporting and keeps the
	// store unhealthy, while a one-off does not fence the node for good.
	// Waiting instead for a flush to succeed could wait very long: an
	// unready node refuses most of the writes that would fill a memtable.
	backgroundErrorHold = time.Minute
)

// health watches what makes Pebble unable to take writes, so that the node
// stops accepting work before it happens, and says why. Pebble panics when
// a WAL write fails (the process dies, nothing to report), so what is
// watched are the signs that come before: the free space of the data dir's
// filesystem, failed flushes and compactions, write stalls and slow disk
// operations. What was already accepted carries on: health only answers
// Healthy.
type health struct {
	log      *slog.Logger
	fs       vfs.FS
	dir      string
	min      int64
	interval time.Duration
	// events is the listener installed in Pebble's options, kept so that
	// tests can deliver events through it.
	events *pebble.EventListener

	free atomic.Int64 // bytes free at the last check; -1 when the filesystem cannot tell
	// misuses counts single deletes that met a key set twice (apiMisuse).
	misuses atomic.Int64

	// mu guards the state below; Pebble's callbacks take it while holding
	// Pebble's own locks, so nothing holds it across I/O.
	mu      sync.Mutex
	now     func() time.Time // time.Now, but for tests
	diskErr error            // the free space problem found by the last check
	bgErr   error
	bgAt    time.Time
	stalls  int // write stalls begun and not ended
	stall   string
	slow    vfs.DiskSlowInfo
	slowAt  time.Time

	poke chan struct{} // an event happened: report a change of health now
	stop chan struct{}
	done chan struct{}
}

func newHealth(cfg Config, log *slog.Logger) *health {
	h := &health{log: log, fs: cfg.FS, dir: cfg.Dir, min: cfg.MinFreeDisk, interval: cfg.DiskCheckInterval,
		now: time.Now, poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	h.free.Store(-1)
	h.events = &pebble.EventListener{
		BackgroundError:   h.backgroundError,
		WriteStallBegin:   h.writeStallBegin,
		WriteStallEnd:     h.writeStallEnd,
		PossibleAPIMisuse: h.apiMisuse,
	}
	return h
}

// wrap returns fs with Pebble's disk health checks, which report slow
// operations to h, and the closer that stops them.
func (h *health) wrap(fs vfs.FS) (vfs.FS, func() error) {
	wrapped, closer := vfs.WithDiskHealthChecks(fs, diskSlowThreshold, nil, h.diskSlow)
	return wrapped, closer.Close
}

// start checks the free space once, so that Healthy is right from the
// first call, then watches in the background until close.
func (h *health) start() {
	h.checkDisk()
	go h.run(h.report(""))
}

func (h *health) close() {
	close(h.stop)
	<-h.done
}

func (h *health) run(reported string) {
	defer close(h.done)
	tick := time.NewTicker(h.interval)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-tick.C:
			h.checkDisk()
		case <-h.poke:
		}
		reported = h.report(reported)
	}
}

// report logs a change between healthy and unhealthy, once, rather than
// on every check: the reasons change all the time (free bytes, ages).
func (h *health) report(was string) string {
	problem := h.problem()
	switch {
	case problem != "" && was == "":
		h.log.Warn("storage unhealthy: the node is not ready until it recovers", "problem", problem)
	case problem == "" && was != "":
		h.log.Info("storage healthy again", "was", was)
	}
	return problem
}

func (h *health) checkDisk() {
	var problem error
	usage, err := h.fs.GetDiskUsage(h.dir)
	switch {
	case errors.Is(err, vfs.ErrUnsupported): // an in-memory store: nothing to watch
		h.free.Store(-1)
	case err != nil:
		h.free.Store(-1)
		problem = fmt.Errorf("read the free space of data dir %s: %w", h.dir, err)
	default:
		free := int64(min(usage.AvailBytes, 1<<63-1))
		h.free.Store(free)
		if free < h.min {
			problem = fmt.Errorf("data dir %s has %s free (%d bytes), less than the minimum of %s",
				h.dir, bytesize.Size(free), free, bytesize.Size(h.min))
		}
	}
	h.mu.Lock()
	h.diskErr = problem
	h.mu.Unlock()
}

// problem names every current problem; it is empty when there is none.
func (h *health) problem() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	var problems []string
	if h.diskErr != nil {
		problems = append(problems, h.diskErr.Error())
	}
	if h.stalls > 0 {
		problems = append(problems, "writes stalled: "+h.stall)
	}
	if age := now.Sub(h.bgAt); h.bgErr != nil && age < backgroundErrorHold {
		problems = append(problems, fmt.Sprintf("flush or compaction failed %s ago: %v", age.Round(time.Second), h.bgErr))
	}
	if age := now.Sub(h.slowAt); !h.slowAt.IsZero() && age < diskSlowHold {
		problems = append(problems, fmt.Sprintf("%s (%s ago)", h.slow, age.Round(time.Second)))
	}
	return strings.Join(problems, "; ")
}

// The callbacks below run on Pebble's goroutines, some holding Pebble's
// mutex and the disk health one forbidden any I/O: they record and poke.

func (h *health) backgroundError(err error) {
	// Pebble logs background errors when no listener takes them; keep that.
	h.log.Error("pebble background error", "err", err)
	h.mu.Lock()
	h.bgErr, h.bgAt = err, h.now()
	h.mu.Unlock()
	h.wake()
}

func (h *health) writeStallBegin(info pebble.WriteStallBeginInfo) {
	h.mu.Lock()
	h.stalls++
	h.stall = info.Reason
	h.mu.Unlock()
	h.wake()
}

func (h *health) writeStallEnd() {
	h.mu.Lock()
	h.stalls = max(h.stalls-1, 0)
	h.mu.Unlock()
	h.wake()
}

func (h *health) diskSlow(info vfs.DiskSlowInfo) {
	h.mu.Lock()
	h.slow, h.slowAt = info, h.now()
	h.mu.Unlock()
	h.wake()
}

// apiMisuse hears of a single delete that met a key set more than once: the
// invariant storage's single deletes rely on broke, and an older version of
// that index or outbox entry may come back. Pebble cannot undo it; it is
// logged as the bug it is. A single delete meeting another is not one (an
// outbox entry acked twice).
func (h *health) apiMisuse(info pebble.PossibleAPIMisuseInfo) {
	if info.Kind != pebble.NondeterministicSingleDelete {
		return
	}
	h.misuses.Add(1)
	h.log.Error("pebble: a single delete met a key set more than once", "key", string(info.UserKey))
}

func (h *health) wake() {
	select {
	case h.poke <- struct{}{}:
	default: // a report is pending already
	}
}

// Healthy returns nil when the store can take writes, else an error
// wrapping ErrUnhealthy that says why: the free space of the data dir's
// filesystem is below Config.MinFreeDisk, a flush or compaction failed in
// the last minute, writes are stalled, or a disk operation was slow in the
// last 30 seconds. The node is ready only while its store is healthy.
func (db *DB) Healthy() error {
	if problem := db.health.problem(); problem != "" {
		return fmt.Errorf("%w: %s", ErrUnhealthy, problem)
	}
	return nil
}
