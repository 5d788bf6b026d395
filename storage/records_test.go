package storage

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/troupehq/troupe/domain"
)

// TestRecordCounts: the counts follow creations, not duplicates, failed
// batches or transitions, and a reopened store counts the same again.
func TestRecordCounts(t *testing.T) {
	check := func(db *DB, when string, events, enforcements, executions float64) {
		t.Helper()
		mfs := scrape(t, db.Collector())
		for kind, want := range map[string]float64{"events": events, "enforcements": enforcements, "executions": executions} {
			if got := value(t, mfs, "troupe_storage_records", "kind", kind); got != want {
				t.Errorf("%s: troupe_storage_records{kind=%q} = %v, want %v", when, kind, got, want)
			}
		}
	}
	fs := vfs.NewMem()
	db := openDB(t, fs)
	check(db, "new store", 0, 0, 0)

	for i := range 3 { // an event matching two rules, three times
		ev, enfs, exs := fixture(base.Add(time.Duration(i)*time.Millisecond), "core.webhook", "r1", "r2")
		if err := db.AcceptEvent(ev, enfs, exs); err != nil {
			t.Fatal(err)
		}
	}
	ev, enfs, exs := fixture(base.Add(time.Minute), "core.webhook")
	if err := db.AcceptEvent(ev, enfs, exs); err != nil { // matched no rule
		t.Fatal(err)
	}
	_, _, adhoc := fixture(base.Add(2*time.Minute), "t", "run")
	if err := db.CreateExecution(adhoc[0]); err != nil {
		t.Fatal(err)
	}
	check(db, "after writes", 4, 6, 7)

	ev, enfs, exs = fixture(base, "core.webhook", "r1", "r2")
	if err := db.AcceptEvent(ev, enfs, exs); !errors.Is(err, domain.ErrDuplicate) {
		t.Fatalf("re-accepting an event: %v, want a duplicate", err)
	}
	if err := db.AcceptEvent(ev, append(enfs, &domain.Enforcement{ID: domain.NewID(base), Event: domain.NewID(base)}), nil); err == nil {
		t.Fatal("a batch with a foreign enforcement was accepted")
	}
	if _, _, err := db.Apply(adhoc[0].ID, to(domain.StatusScheduled, 1), to(domain.StatusRunning, 1), to(domain.StatusSucceeded, 1)); err != nil {
		t.Fatal(err)
	}
	check(db, "after a duplicate, a refused batch and transitions", 4, 6, 7)

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, fs)
	defer db.Close()
	check(db, "after reopening", 4, 6, 7)
	ev, enfs, exs = fixture(base.Add(3*time.Minute), "core.webhook", "r1")
	if err := db.AcceptEvent(ev, enfs, exs); err != nil {
		t.Fatal(err)
	}
	check(db, "after a write to the reopened store", 5, 7, 8)
}
