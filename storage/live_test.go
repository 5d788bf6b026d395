package storage

import (
	"encoding/json"
	"errors"
	"reflect"
	"sync"
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

// A cache hit must return exactly what a read from Pebble would, whatever
// the shape of the record, the status it reached, and whatever its writer
// does with its own values afterwards. Every record here is read from
// memory, then from the disk of a reopened store, and compared whole.
func TestLiveMatchesTheDisk(t *testing.T) {
	zone := time.FixedZone("UTC+1", 3600)
	at := func(ns int) time.Time { return base.Add(time.Minute + time.Duration(ns)).In(zone) }
	step := func(s domain.Status, attempt int, when time.Time) Transition {
		return Transition{Attempt: attempt, To: s, At: when, Node: "w1"}
	}
	started := at(7)
	for i, tc := range []struct {
		name   string
		params map[string]any
		secret []string
		// created and started are the caller's CreatedAt and StartedAt.
		created time.Time
		started *time.Time
		// applies are the Apply calls made, each with its transitions.
		applies [][]Transition
	}{
		{name: "requested, no parameters, unset times"},
		{name: "delayed, empty parameters and secrets", params: map[string]any{}, secret: []string{},
			created: time.Now(), started: &time.Time{},
			applies: [][]Transition{{step(domain.StatusDelayed, 1, time.Time{})}}},
		{name: "running, parameters JSON changes", params: map[string]any{
			"int": 1, "number": json.Number("2.50"), "raw": json.RawMessage(` {"a" : 1}`), "strings": []string{"a"},
			"nested":        map[string]any{"nil slice": []any(nil), "nil map": map[string]any(nil), "time": base},
			"invalid utf-8": "a\xffb", "html": "<a&b>",
		}, secret: []string{"int"}, created: at(1),
			applies: [][]Transition{{step(domain.StatusScheduled, 1, at(2))}, {step(domain.StatusRunning, 1, time.Now())}}},
		{name: "canceling, parameters as decoded", params: map[string]any{
			"s": "x", "f": -1.5e300, "b": true, "nil": nil, "list": []any{"a", 1.0, false, nil, []any{}},
			"map": map[string]any{"empty": map[string]any{}, "z": 0.0},
		}, created: at(3), started: &started, applies: [][]Transition{
			{step(domain.StatusScheduled, 1, at(4)), step(domain.StatusRunning, 1, at(5))},
			{step(domain.StatusCanceling, 1, at(6))},
		}},
		{name: "succeeded, empty output", applies: [][]Transition{{
			step(domain.StatusScheduled, 1, at(8)), step(domain.StatusRunning, 1, at(9)),
			{Attempt: 1, To: domain.StatusSucceeded, At: at(10), Node: "w1",
				Result: &domain.Result{Stdout: "ok\n", Output: json.RawMessage{}}},
		}}},
		{name: "failed, with error and output", applies: [][]Transition{
			{step(domain.StatusScheduled, 1, at(11))},
			{{Attempt: 1, To: domain.StatusFailed, At: at(12), Error: "exit 3",
				Result: &domain.Result{ExitCode: 3, Stderr: "no", Output: json.RawMessage(`{"a":[1,2]}`)}}},
		}},
		{name: "timeout", applies: [][]Transition{{step(domain.StatusScheduled, 1, at(13)),
			step(domain.StatusRunning, 1, at(14)), step(domain.StatusTimeout, 1, time.Time{})}}},
		{name: "canceled", applies: [][]Transition{{step(domain.StatusCanceled, 1, at(15))}}},
		{name: "abandoned", applies: [][]Transition{{step(domain.StatusScheduled, 1, at(16))},
			{step(domain.StatusAbandoned, 1, at(17))}}},
		{name: "retried", params: map[string]any{"n": 1.0}, applies: [][]Transition{
			{step(domain.StatusScheduled, 1, at(18)), step(domain.StatusRunning, 1, at(19))},
			{{Attempt: 1, To: domain.StatusRequested, At: at(20), NextAttempt: true, Error: "worker lost",
				Result: &domain.Result{ExitCode: -1}}},
			{step(domain.StatusScheduled, 2, at(21))},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			db := openDB(t, fs)
			ev, enfs, exs := fixture(base.Add(time.Duration(i)*time.Millisecond), "core.webhook", "r1")
			ex := exs[0]
			ex.Parameters, ex.Secret, ex.CreatedAt, ex.StartedAt = tc.params, tc.secret, tc.created, tc.started
			if err := db.AcceptEvent(ev, enfs, exs); err != nil {
				t.Fatal(err)
			}
			adhoc := *ex
			adhoc.ID = domain.NewID(base)
			if err := db.CreateExecution(&adhoc); err != nil {
				t.Fatal(err)
			}
			var results []*domain.Result
			for _, ts := range tc.applies {
				for _, id := range []domain.ID{ex.ID, adhoc.ID} {
					if _, _, err := db.Apply(id, ts...); err != nil {
						t.Fatal(err)
					}
				}
				for _, tr := range ts {
					if tr.Result != nil {
						results = append(results, tr.Result)
					}
				}
			}
			// What the writer gave is its own again once the write returned.
			for k := range ex.Parameters {
				ex.Parameters[k] = "changed"
			}
			for i := range ex.Secret {
				ex.Secret[i] = "changed"
			}
			if ex.StartedAt != nil {
				*ex.StartedAt = base
			}
			for _, r := range results {
				r.ExitCode, r.Stdout = 99, "changed"
				for i := range r.Output {
					r.Output[i] = ' '
				}
			}
			compare := func(db *DB, fs vfs.FS) *DB {
				t.Helper()
				memory := map[domain.ID]*domain.Execution{}
				histories := map[domain.ID][]domain.HistoryEntry{}
				for _, id := range []domain.ID{ex.ID, adhoc.ID} {
					if db.live.get(id) == nil {
						t.Fatalf("execution %s is not in memory", id)
					}
					var err error
					if memory[id], err = db.Execution(id); err != nil {
						t.Fatal(err)
					}
					if histories[id], err = db.History(id); err != nil {
						t.Fatal(err)
					}
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				db = openDB(t, fs)
				for id, want := range memory {
					if got, err := db.Execution(id); err != nil || !reflect.DeepEqual(got, want) {
						t.Errorf("execution %s from memory:\n%#v\nfrom disk (%v):\n%#v", id, want, err, got)
					}
					if got, err := db.History(id); err != nil || !reflect.DeepEqual(got, histories[id]) {
						t.Errorf("history of %s from memory:\n%#v\nfrom disk (%v):\n%#v", id, histories[id], err, got)
					}
				}
				return db
			}
			db = compare(db, fs)
			// A record read from disk and moved on is cached too, without
			// its history (read from disk when asked for).
			cur, err := db.Execution(ex.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !cur.Status.Terminal() {
				next := step(domain.StatusCanceled, cur.Attempt, time.Now())
				if cur.Status == domain.StatusRunning {
					next.To = domain.StatusCanceling
				}
				for _, id := range []domain.ID{ex.ID, adhoc.ID} {
					if _, _, err := db.Apply(id, next); err != nil {
						t.Fatal(err)
					}
				}
				db = compare(db, fs)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Apply appends to the cached history in place; readers of the shorter
// history it replaces must never see the entries appended, whether their
// Apply commits or fails.
func TestLiveHistoryGrowsUnderReaders(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	_, _, exs := fixture(base, "t", "r1")
	id := exs[0].ID
	if err := db.CreateExecution(exs[0]); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			seen := map[uint64]domain.HistoryEntry{}
			for {
				select {
				case <-done:
					return
				default:
				}
				hs, err := db.History(id)
				if err != nil {
					t.Error(err)
					return
				}
				for i, h := range hs {
					if h.Seq != uint64(i+1) {
						t.Errorf("history entry %d has seq %d", i, h.Seq)
						return
					}
					if first, ok := seen[h.Seq]; ok && first != h {
						t.Errorf("history entry %d changed from %+v to %+v", i, first, h)
						return
					}
					seen[h.Seq] = h
				}
			}
		})
	}
	for attempt := 1; attempt <= 200; attempt++ {
		if _, _, err := db.Apply(id, to(domain.StatusScheduled, attempt)); err != nil {
			t.Fatal(err)
		}
		// The first transition is appended before the second is refused.
		if _, _, err := db.Apply(id, to(domain.StatusRunning, attempt), to(domain.StatusDelayed, attempt)); !errors.Is(err, domain.ErrTransition) {
			t.Fatalf("running then delayed: %v, want a refused transition", err)
		}
		retry := Transition{Attempt: attempt, To: domain.StatusRequested, At: base.Add(time.Duration(attempt)), Node: "w2", NextAttempt: true}
		if _, _, err := db.Apply(id, to(domain.StatusRunning, attempt), retry); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	memory, err := db.History(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, fs)
	defer db.Close()
	if disk, err := db.History(id); err != nil || !reflect.DeepEqual(disk, memory) {
		t.Errorf("history from memory:\n%+v\nfrom disk (%v):\n%+v", memory, err, disk)
	}
}
