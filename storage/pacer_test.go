package storage

import (
	"testing"
	"time"
)

// TestSyncPacerWaitsOnlyWhileSyncsAreBusy: a handful of syncs in a burst
// (one execution's commits at light load) are not held back; a steady
// stream of syncs is, and stops being once it thins out.
func TestSyncPacerWaitsOnlyWhileSyncsAreBusy(t *testing.T) {
	var p syncPacer
	now := time.Unix(1_000_000, 0)
	// Light load: 10 executions a second, three syncs 300 µs apart each.
	for i := range 50 {
		for range 3 {
			if d := p.after(now); d != 0 {
				t.Fatalf("execution %d at 10/s: next sync held back %s, want 0", i, d)
			}
			now = now.Add(300 * time.Microsecond)
		}
		now = now.Add(100 * time.Millisecond)
	}
	// Busy: a sync every 500 µs (2,000 a second).
	var held int
	for range 200 {
		if p.after(now) == walMinSyncInterval {
			held++
		}
		now = now.Add(500 * time.Microsecond)
	}
	if held < 180 {
		t.Fatalf("at 2,000 syncs a second %d of 200 were followed by a pause, want nearly all", held)
	}
	// Quiet again: after a second without syncs, the next is not held back.
	now = now.Add(time.Second)
	if d := p.after(now); d != 0 {
		t.Fatalf("first sync after a quiet second: held back %s, want 0", d)
	}
}
