package storage

import (
	"reflect"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/troupehq/troupe/domain"
)

// The records of executions in flight are served from memory; what callers
// get must still be what Pebble holds, and theirs to change.
func TestLiveRecordsFollowTheDisk(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	ev, enfs, exs := fixture(base, "core.webhook", "a", "b")
	exs[0].Parameters = map[string]any{"n": 1} // an int, as a schema default can be
	if err := db.AcceptEvent(ev, enfs, exs); err != nil {
		t.Fatal(err)
	}
	a, b := exs[0].ID, exs[1].ID
	got, err := db.Execution(a)
	if err != nil {
		t.Fatal(err)
	}
	if n := got.Parameters["n"]; n != float64(1) {
		t.Errorf("parameter n is %T %v, want float64 1 as decoding the stored record gives", n, n)
	}
	got.Status, got.Seq = domain.StatusFailed, 99
	if again, _ := db.Execution(a); again.Status != domain.StatusRequested || again.Seq != 1 {
		t.Fatalf("changing a returned record changed the store: %s seq %d", again.Status, again.Seq)
	}
	if _, _, err := db.Apply(a, to(domain.StatusScheduled, 1), to(domain.StatusRunning, 1)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Apply(b, to(domain.StatusScheduled, 1), to(domain.StatusRunning, 1), to(domain.StatusSucceeded, 1)); err != nil {
		t.Fatal(err)
	}
	check := func(db *DB, when string) {
		t.Helper()
		type state struct {
			status domain.Status
			seq    uint64
		}
		for id, want := range map[domain.ID]state{a: {domain.StatusRunning, 3}, b: {domain.StatusSucceeded, 4}} {
			ex, err := db.Execution(id)
			if err != nil {
				t.Fatal(err)
			}
			if got := (state{ex.Status, ex.Seq}); got != want {
				t.Errorf("%s: execution %s is %+v, want %+v", when, id, got, want)
			}
		}
	}
	check(db, "before reopening")
	cached := map[domain.ID][]domain.HistoryEntry{}
	for _, id := range []domain.ID{a, b} {
		if cached[id], err = db.History(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, fs)
	defer db.Close()
	check(db, "after reopening")
	for id, want := range cached {
		if got, err := db.History(id); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("history of %s from memory:\n%+v\nfrom disk (%v):\n%+v", id, want, err, got)
		}
	}
	// A record the new process never cached is read, then moved on, from disk.
	if _, _, err := db.Apply(a, to(domain.StatusSucceeded, 1)); err != nil {
		t.Fatal(err)
	}
	if ex, _ := db.Execution(a); ex.Status != domain.StatusSucceeded || ex.Seq != 4 {
		t.Errorf("after the last transition: %s seq %d, want succeeded seq 4", ex.Status, ex.Seq)
	}
}

// Finished executions stay in memory for the clients waiting on them, but
// only so many.
func TestLiveKeepsBoundedFinished(t *testing.T) {
	db := newTestDB(t)
	var ids []domain.ID
	for i := range finishedKept + 10 {
		ev, enfs, exs := fixture(base.Add(time.Duration(i)*time.Millisecond), "core.webhook", "r")
		if err := db.AcceptEvent(ev, enfs, exs); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.Apply(exs[0].ID, to(domain.StatusScheduled, 1), to(domain.StatusRunning, 1), to(domain.StatusSucceeded, 1)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, exs[0].ID)
	}
	n := 0
	db.live.m.Range(func(any, any) bool { n++; return true })
	if n != finishedKept {
		t.Errorf("%d executions in memory, want the last %d finished", n, finishedKept)
	}
	if db.live.get(ids[0]) != nil {
		t.Error("the first execution to finish is still in memory")
	}
	for _, id := range []domain.ID{ids[0], ids[len(ids)-1]} {
		ex, err := db.Execution(id)
		if err != nil || ex.Status != domain.StatusSucceeded {
			t.Errorf("execution %s: %v, %v", id, ex, err)
		}
		if h, err := db.History(id); err != nil || len(h) != 4 {
			t.Errorf("history of %s: %d entries (%v), want 4", id, len(h), err)
		}
	}
}
