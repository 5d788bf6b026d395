package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/internal/troupetest"
)

// base is the time of the first fixture; fixtures step a millisecond each so
// their IDs, and therefore list order, are deterministic.
var base = time.UnixMilli(1_700_000_000_000).UTC()

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func openDB(t testing.TB, fs vfs.FS) *DB {
	t.Helper()
	db, err := Open(Config{Dir: "db", FS: fs, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// newTestDB opens an in-memory store closed at the end of the test.
func newTestDB(t testing.TB) *DB {
	db := openDB(t, vfs.NewMem())
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

// fixture builds an event of trigger at time at and, for each rule, the
// enforcement and execution that rule produces. IDs are derived as for timer
// ticks, so the same arguments always build the same records.
func fixture(at time.Time, trigger string, rules ...string) (*domain.Event, []*domain.Enforcement, []*domain.Execution) {
	ev := &domain.Event{ID: domain.DeriveID(at, "event", trigger), Trigger: trigger, Payload: map[string]any{"n": 1.0}, Node: "n1", CreatedAt: at}
	var enfs []*domain.Enforcement
	var exs []*domain.Execution
	for _, r := range rules {
		en := &domain.Enforcement{ID: domain.EnforcementID(ev.ID, r), Event: ev.ID, Rule: r, Action: "act." + r,
			Status: domain.EnforcementSucceeded, Node: "n1", CreatedAt: at}
		en.Execution = domain.ExecutionIDFor(en.ID)
		enfs = append(enfs, en)
		exs = append(exs, &domain.Execution{ID: en.Execution, Action: en.Action, Runtime: "shell", Rule: r,
			Event: ev.ID, Enforcement: en.ID, Node: "n1", CreatedAt: at, Parameters: map[string]any{"x": "y"}})
	}
	return ev, enfs, exs
}

func to(s domain.Status, attempt int) Transition {
	return Transition{Attempt: attempt, To: s, At: base.Add(time.Minute), Node: "w1"}
}

// checkConsistent verifies the invariants every committed batch keeps: the
// history has one entry per seq ending in the current status, exactly the
// non-terminal executions are in the index, and every terminal execution has
// one outbox entry at its final seq (nothing is acked in the tests using it).
func checkConsistent(t *testing.T, db *DB) {
	t.Helper()
	var all []*domain.Execution
	for cursor := (domain.ID{}); ; {
		page, next, err := db.Executions(ExecutionFilter{}, MaxPageSize, cursor)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if cursor = next; next.IsZero() {
			break
		}
	}
	active, err := db.Active()
	if err != nil {
		t.Fatal(err)
	}
	comps, err := db.Completions(MaxPageSize)
	if err != nil {
		t.Fatal(err)
	}
	var wantActive []domain.ID
	var wantComps []Completion
	for _, ex := range slices.Backward(all) {
		hs, err := db.History(ex.ID)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(hs)) != ex.Seq || hs[len(hs)-1].Status != ex.Status {
			t.Errorf("execution %s: %s seq %d, history %v", ex.ID, ex.Status, ex.Seq, hs)
		}
		for i, h := range hs {
			if h.Seq != uint64(i+1) {
				t.Errorf("execution %s: history entry %d has seq %d", ex.ID, i, h.Seq)
			}
		}
		if ex.Status.Terminal() {
			wantComps = append(wantComps, Completion{ex.ID, ex.Seq})
		} else {
			wantActive = append(wantActive, ex.ID)
		}
	}
	if got := ids(active); !slices.Equal(got, wantActive) {
		t.Errorf("active: got %v, want %v", got, wantActive)
	}
	if !slices.Equal(comps, wantComps) {
		t.Errorf("completions: got %v, want %v", comps, wantComps)
	}
}

// contents is every record of a store, as read from Pebble.
type contents struct {
	Events       []*domain.Event
	Enforcements []*domain.Enforcement
	Executions   []*domain.Execution
	Histories    [][]domain.HistoryEntry
	Counts       [countedKinds]int64
}

func contentsOf(t *testing.T, db *DB) contents {
	t.Helper()
	var s contents
	var err error
	if s.Events, _, err = db.Events(EventFilter{}, MaxPageSize, domain.ID{}); err != nil {
		t.Fatal(err)
	}
	if s.Enforcements, _, err = db.Enforcements(EnforcementFilter{}, MaxPageSize, domain.ID{}); err != nil {
		t.Fatal(err)
	}
	if s.Executions, _, err = db.Executions(ExecutionFilter{}, MaxPageSize, domain.ID{}); err != nil {
		t.Fatal(err)
	}
	for _, ex := range s.Executions {
		h, err := db.History(ex.ID)
		if err != nil {
			t.Fatal(err)
		}
		s.Histories = append(s.Histories, h)
	}
	for i := range s.Counts {
		s.Counts[i] = db.records[i].Load()
	}
	return s
}

func ids(exs []*domain.Execution) []domain.ID {
	out := make([]domain.ID, len(exs))
	for i, ex := range exs {
		out[i] = ex.ID
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"default needs a dir", DefaultConfig(), "dir is required"},
		{"dir is enough", Config{Dir: "x"}, ""},
		{"every problem at once", Config{CacheSize: -1}, "dir is required\nstorage: cache size -1 bytes is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
	if _, err := Open(Config{}); err == nil {
		t.Fatal("Open without a dir succeeded")
	}
}

func TestPebbleLogsThroughSlog(t *testing.T) {
	var buf troupetest.Buffer
	db, err := Open(Config{Dir: "db", FS: vfs.NewMem(), Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "component=storage source=pebble") {
		t.Fatalf("no Pebble line reached the injected logger:\n%s", out)
	}
}

func TestAcceptEvent(t *testing.T) {
	t.Run("writes everything", func(t *testing.T) {
		db := newTestDB(t)
		ev, enfs, exs := fixture(base, "core.webhook", "r1", "r2")
		if err := db.AcceptEvent(ev, enfs, exs); err != nil {
			t.Fatal(err)
		}
		if got, err := db.Event(ev.ID); err != nil || got.Trigger != ev.Trigger || got.Payload["n"] != 1.0 {
			t.Fatalf("Event = %+v, %v", got, err)
		}
		for i, en := range enfs {
			if got, err := db.Enforcement(en.ID); err != nil || got.Execution != exs[i].ID {
				t.Fatalf("Enforcement = %+v, %v", got, err)
			}
			ex, err := db.Execution(exs[i].ID)
			if err != nil {
				t.Fatal(err)
			}
			if ex.Status != domain.StatusRequested || ex.Seq != 1 || ex.Attempt != 1 || ex.Rule != en.Rule {
				t.Fatalf("execution stored as %+v", ex)
			}
			hs, err := db.History(ex.ID)
			if err != nil || len(hs) != 1 || hs[0].Status != domain.StatusRequested || hs[0].Seq != 1 || hs[0].Node != "n1" {
				t.Fatalf("History = %+v, %v", hs, err)
			}
		}
		if exs[0].Status != "" || exs[0].Seq != 0 {
			t.Fatalf("caller's execution was modified: %+v", exs[0])
		}
		checkConsistent(t, db)
	})
	t.Run("a duplicate writes nothing", func(t *testing.T) {
		db := newTestDB(t)
		ev, enfs, exs := fixture(base, "core.webhook", "r1")
		if err := db.AcceptEvent(ev, enfs, exs); err != nil {
			t.Fatal(err)
		}
		again, enfs2, exs2 := fixture(base, "core.webhook", "r1", "r9")
		again.Payload = map[string]any{"n": 2.0}
		err := db.AcceptEvent(again, enfs2, exs2)
		if !errors.Is(err, domain.ErrDuplicate) {
			t.Fatalf("second AcceptEvent: %v, want ErrDuplicate", err)
		}
		if got, _ := db.Event(ev.ID); got.Payload["n"] != 1.0 {
			t.Fatalf("duplicate overwrote the event: %+v", got)
		}
		if _, err := db.Enforcement(enfs2[1].ID); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("duplicate wrote an enforcement: %v", err)
		}
	})
	t.Run("an existing execution is a duplicate", func(t *testing.T) {
		db := newTestDB(t)
		_, _, exs := fixture(base, "t", "r1")
		if err := db.CreateExecution(exs[0]); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateExecution(exs[0]); !errors.Is(err, domain.ErrDuplicate) {
			t.Fatalf("second CreateExecution: %v, want ErrDuplicate", err)
		}
		ev, enfs, _ := fixture(base, "t", "r1")
		if err := db.AcceptEvent(ev, enfs, exs); !errors.Is(err, domain.ErrDuplicate) {
			t.Fatalf("AcceptEvent over an existing execution: %v, want ErrDuplicate", err)
		}
		if _, err := db.Event(ev.ID); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("event written despite the duplicate: %v", err)
		}
	})
	// Whether a record's ID is derived from the event (and so checked through
	// the event's lookup) or not (and so looked up itself), a batch with a
	// record that exists is a duplicate and writes nothing.
	t.Run("an existing record makes a duplicate", func(t *testing.T) {
		random := domain.NewID(base)
		for _, tc := range []struct {
			name  string
			store func(db *DB) error
			batch func() (*domain.Event, []*domain.Enforcement, []*domain.Execution)
		}{
			// Only the event's lookup guards the enforcements here.
			{"the same event, its enforcements failing this time", func(db *DB) error {
				return db.AcceptEvent(fixture(base, "t", "r1", "r2"))
			}, func() (*domain.Event, []*domain.Enforcement, []*domain.Execution) {
				ev, enfs, _ := fixture(base, "t", "r1", "r2")
				for _, en := range enfs {
					en.Status, en.Error, en.Execution = domain.EnforcementFailed, "invalid parameters", domain.ID{}
				}
				return ev, enfs, nil
			}},
			{"an enforcement ID not derived from its event", func(db *DB) error {
				ev, enfs, _ := fixture(base, "t", "r1")
				enfs[0].ID, enfs[0].Execution = random, domain.ID{}
				return db.AcceptEvent(ev, enfs, nil)
			}, func() (*domain.Event, []*domain.Enforcement, []*domain.Execution) {
				ev, enfs, exs := fixture(base.Add(time.Millisecond), "t", "r1")
				enfs[0].ID, exs[0].Enforcement = random, random
				return ev, enfs, exs
			}},
			{"an ad-hoc execution ID", func(db *DB) error {
				return db.CreateExecution(&domain.Execution{ID: random, Action: "a", Runtime: "shell", Node: "n1"})
			}, func() (*domain.Event, []*domain.Enforcement, []*domain.Execution) {
				ev, enfs, exs := fixture(base.Add(time.Millisecond), "t", "r1")
				enfs[0].Execution, exs[0].ID = random, random
				return ev, enfs, exs
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				db := newTestDB(t)
				if err := tc.store(db); err != nil {
					t.Fatal(err)
				}
				before, unfinished := contentsOf(t, db), db.Unfinished()
				ev, enfs, exs := tc.batch()
				if err := db.AcceptEvent(ev, enfs, exs); !errors.Is(err, domain.ErrDuplicate) {
					t.Fatalf("AcceptEvent: %v, want ErrDuplicate", err)
				}
				if after := contentsOf(t, db); !reflect.DeepEqual(after, before) {
					t.Errorf("the duplicate changed the store:\nbefore %+v\nafter  %+v", before, after)
				}
				if n := db.Unfinished(); n != unfinished {
					t.Errorf("%d unfinished executions after the duplicate, want %d", n, unfinished)
				}
				checkConsistent(t, db)
			})
		}
	})
	// Commit looks up only IDs not above the newest stored: the newest must
	// survive a restart, and an older ID must still be looked up.
	t.Run("a duplicate after a restart, newest or not", func(t *testing.T) {
		fs := vfs.NewMem()
		db := openDB(t, fs)
		for i := range 2 {
			if err := db.AcceptEvent(fixture(base.Add(time.Duration(i)*time.Millisecond), "t", "r1")); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		db = openDB(t, fs)
		defer db.Close()
		for i := range 2 {
			if err := db.AcceptEvent(fixture(base.Add(time.Duration(i)*time.Millisecond), "t", "r1")); !errors.Is(err, domain.ErrDuplicate) {
				t.Errorf("event %d again after a restart: %v, want ErrDuplicate", i, err)
			}
			_, _, exs := fixture(base.Add(time.Duration(i)*time.Millisecond), "t", "r1")
			if err := db.CreateExecution(exs[0]); !errors.Is(err, domain.ErrDuplicate) {
				t.Errorf("execution %d again after a restart: %v, want ErrDuplicate", i, err)
			}
		}
	})
	t.Run("racing the same event writes once", func(t *testing.T) {
		db := newTestDB(t)
		const n = 64
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				// Each caller builds its own records, as a re-fired tick would.
				errs[i] = db.AcceptEvent(fixture(base, "core.intervaltimer", "r1", "r2"))
			})
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, domain.ErrDuplicate):
				t.Errorf("unexpected error: %v", err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d calls succeeded, want 1", ok)
		}
		evs, _, _ := db.Events(EventFilter{}, 0, domain.ID{})
		enfs, _, _ := db.Enforcements(EnforcementFilter{}, 0, domain.ID{})
		exs, _, _ := db.Executions(ExecutionFilter{}, 0, domain.ID{})
		if len(evs) != 1 || len(enfs) != 2 || len(exs) != 2 {
			t.Fatalf("stored %d events, %d enforcements, %d executions; want 1, 2, 2", len(evs), len(enfs), len(exs))
		}
		checkConsistent(t, db)
	})
	t.Run("rejects malformed input", func(t *testing.T) {
		db := newTestDB(t)
		ev, enfs, exs := fixture(base, "t", "r1")
		enfs[0].Event = domain.NewID(base)
		for name, err := range map[string]error{
			"nil event":           db.AcceptEvent(nil, nil, nil),
			"zero id":             db.AcceptEvent(&domain.Event{}, nil, nil),
			"foreign enforcement": db.AcceptEvent(ev, enfs, exs),
			"nil execution":       db.CreateExecution(nil),
		} {
			if err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
	})
}

func TestNotFound(t *testing.T) {
	db := newTestDB(t)
	id := domain.NewID(base)
	for name, get := range map[string]func() error{
		"event":       func() error { _, err := db.Event(id); return err },
		"enforcement": func() error { _, err := db.Enforcement(id); return err },
		"execution":   func() error { _, err := db.Execution(id); return err },
		"history":     func() error { _, err := db.History(id); return err },
	} {
		t.Run(name, func(t *testing.T) {
			if err := get(); !errors.Is(err, domain.ErrNotFound) || !strings.Contains(err.Error(), id.String()) {
				t.Fatalf("got %v, want ErrNotFound naming %s", err, id)
			}
		})
	}
}

func TestApplyLifecycle(t *testing.T) {
	db := newTestDB(t)
	_, _, exs := fixture(base, "t", "r1")
	id := exs[0].ID
	if err := db.CreateExecution(exs[0]); err != nil {
		t.Fatal(err)
	}
	result := &domain.Result{ExitCode: 0, Stdout: "hi\n"}
	for i, step := range []struct {
		t       Transition
		started bool
		done    bool
	}{
		{Transition{Attempt: 1, To: domain.StatusScheduled, At: base.Add(1 * time.Second), Node: "w1"}, false, false},
		{Transition{Attempt: 1, To: domain.StatusRunning, At: base.Add(2 * time.Second), Node: "w1"}, true, false},
		{Transition{Attempt: 1, To: domain.StatusSucceeded, At: base.Add(3 * time.Second), Node: "w1", Result: result}, true, true},
	} {
		t.Run(string(step.t.To), func(t *testing.T) {
			ex, changed, err := db.Apply(id, step.t)
			if err != nil || !changed {
				t.Fatalf("Apply = %v, %v", changed, err)
			}
			stored, err := db.Execution(id)
			if err != nil {
				t.Fatal(err)
			}
			for _, got := range []*domain.Execution{ex, stored} {
				if got.Status != step.t.To || got.Seq != uint64(i+2) || got.Worker != "w1" {
					t.Fatalf("got %s seq %d worker %q, want %s seq %d worker w1", got.Status, got.Seq, got.Worker, step.t.To, i+2)
				}
				if (got.StartedAt != nil) != step.started || (got.FinishedAt != nil) != step.done {
					t.Fatalf("started %v finished %v, want started=%v finished=%v", got.StartedAt, got.FinishedAt, step.started, step.done)
				}
			}
			if step.done && (!stored.FinishedAt.Equal(step.t.At) || stored.Result == nil || stored.Result.Stdout != "hi\n") {
				t.Fatalf("finished at %v with %+v", stored.FinishedAt, stored.Result)
			}
			hs, err := db.History(id)
			if err != nil {
				t.Fatal(err)
			}
			if last := hs[len(hs)-1]; len(hs) != i+2 || last.Status != step.t.To || !last.At.Equal(step.t.At) || last.Node != "w1" {
				t.Fatalf("history %+v", hs)
			}
			inIndex, _, err := db.Executions(ExecutionFilter{Status: step.t.To}, 0, domain.ID{})
			if err != nil {
				t.Fatal(err)
			}
			if len(inIndex) != 1 || inIndex[0].ID != id {
				t.Fatalf("listing by status %s found %v", step.t.To, ids(inIndex))
			}
			comps, _ := db.Completions(0)
			if want := step.done; (len(comps) == 1) != want || (want && comps[0] != (Completion{id, 4})) {
				t.Fatalf("completions %v, want one at seq 4: %v", comps, want)
			}
			checkConsistent(t, db)
		})
	}
}

func TestApplyRules(t *testing.T) {
	retry := Transition{Attempt: 1, To: domain.StatusRequested, NextAttempt: true, Error: "worker lost"}
	lifecycle := []Transition{to(domain.StatusScheduled, 1), to(domain.StatusRunning, 1), to(domain.StatusSucceeded, 1)}
	for _, tc := range []struct {
		name        string
		setup       []Transition
		apply       []Transition
		unknown     bool
		wantErr     error    // errors.Is target
		wantMsg     []string // substrings of the error
		wantChanged bool
		want        domain.Status
		wantSeq     uint64
		wantAttempt int
	}{
		{name: "re-delivery is a no-op", setup: lifecycle[:1], apply: lifecycle[:1],
			want: domain.StatusScheduled, wantSeq: 2, wantAttempt: 1},
		{name: "re-delivered completion is a no-op", setup: lifecycle, apply: lifecycle[2:],
			want: domain.StatusSucceeded, wantSeq: 4, wantAttempt: 1},
		{name: "late report after the end is rejected", setup: lifecycle, apply: lifecycle[1:2],
			wantErr: domain.ErrTransition, wantMsg: []string{"succeeded (terminal)", "running"},
			want: domain.StatusSucceeded, wantSeq: 4, wantAttempt: 1},
		{name: "stale attempt is ignored", setup: []Transition{lifecycle[0], lifecycle[1], retry}, apply: []Transition{to(domain.StatusRunning, 1)},
			want: domain.StatusRequested, wantSeq: 4, wantAttempt: 2},
		{name: "second completion is absorbed", setup: lifecycle, apply: []Transition{to(domain.StatusFailed, 1)},
			wantErr: domain.ErrTransition, wantMsg: []string{"succeeded", "failed", "terminal"},
			want: domain.StatusSucceeded, wantSeq: 4, wantAttempt: 1},
		{name: "invalid transition names both statuses", apply: []Transition{to(domain.StatusSucceeded, 1)},
			wantErr: domain.ErrTransition, wantMsg: []string{"from requested to succeeded"},
			want: domain.StatusRequested, wantSeq: 1, wantAttempt: 1},
		{name: "a failing batch writes nothing", apply: []Transition{to(domain.StatusScheduled, 1), to(domain.StatusSucceeded, 1)},
			wantErr: domain.ErrTransition, wantMsg: []string{"from scheduled to succeeded"},
			want: domain.StatusRequested, wantSeq: 1, wantAttempt: 1},
		{name: "report from a future attempt", apply: []Transition{to(domain.StatusScheduled, 2)},
			wantErr: domain.ErrTransition, wantMsg: []string{"attempt 2", "attempt 1"},
			want: domain.StatusRequested, wantSeq: 1, wantAttempt: 1},
		{name: "next attempt must be requested", setup: lifecycle[:1], apply: []Transition{{Attempt: 1, To: domain.StatusFailed, NextAttempt: true}},
			wantErr: domain.ErrTransition, want: domain.StatusScheduled, wantSeq: 2, wantAttempt: 1},
		{name: "batch applies in order", apply: lifecycle, wantChanged: true,
			want: domain.StatusSucceeded, wantSeq: 4, wantAttempt: 1},
		{name: "retry starts the next attempt", setup: lifecycle[:2], apply: []Transition{retry}, wantChanged: true,
			want: domain.StatusRequested, wantSeq: 4, wantAttempt: 2},
		{name: "retry then runs", setup: append(lifecycle[:2:2], retry),
			apply:       []Transition{to(domain.StatusScheduled, 2), to(domain.StatusRunning, 2), to(domain.StatusFailed, 2)},
			wantChanged: true, want: domain.StatusFailed, wantSeq: 7, wantAttempt: 2},
		{name: "unknown execution", unknown: true, apply: lifecycle[:1], wantErr: domain.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := newTestDB(t)
			_, _, exs := fixture(base, "t", "r1")
			id := exs[0].ID
			if err := db.CreateExecution(exs[0]); err != nil {
				t.Fatal(err)
			}
			if _, _, err := db.Apply(id, tc.setup...); err != nil {
				t.Fatal(err)
			}
			if tc.unknown {
				id = domain.NewID(base)
			}
			ex, changed, err := db.Apply(id, tc.apply...)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Apply error %v, want %v", err, tc.wantErr)
			}
			for _, m := range tc.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
			if tc.unknown {
				return
			}
			if changed != tc.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tc.wantChanged)
			}
			stored, _ := db.Execution(id)
			for _, got := range []*domain.Execution{ex, stored} {
				if got.Status != tc.want || got.Seq != tc.wantSeq || got.Attempt != tc.wantAttempt {
					t.Errorf("got %s seq %d attempt %d, want %s seq %d attempt %d",
						got.Status, got.Seq, got.Attempt, tc.want, tc.wantSeq, tc.wantAttempt)
				}
			}
			checkConsistent(t, db)
		})
	}
}

// A record that fails to encode, after others of its batch were encoded
// into it, fails the whole write: protobuf refuses strings that are not
// UTF-8.
func TestUnencodableWritesNothing(t *testing.T) {
	db := newTestDB(t)
	ev, enfs, exs := fixture(base, "t", "r1")
	enfs[0].Error = "a\xffb"
	if err := db.AcceptEvent(ev, enfs, exs); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("AcceptEvent with an enforcement error that is not UTF-8: %v", err)
	}
	if got := contentsOf(t, db); !reflect.DeepEqual(got, contents{}) {
		t.Fatalf("the refused event left %+v", got)
	}
	id := exs[0].ID
	if err := db.CreateExecution(exs[0]); err != nil {
		t.Fatal(err)
	}
	before := contentsOf(t, db)
	bad := Transition{Attempt: 1, To: domain.StatusRunning, Node: "w1", Error: "a\xffb"}
	if _, _, err := db.Apply(id, to(domain.StatusScheduled, 1), bad); err == nil {
		t.Fatal("Apply with an error that is not UTF-8 succeeded")
	}
	if after := contentsOf(t, db); !reflect.DeepEqual(after, before) {
		t.Fatalf("the refused transitions changed the store:\nbefore %+v\nafter  %+v", before, after)
	}
	if ex, _ := db.Execution(id); ex.Status != domain.StatusRequested || ex.Seq != 1 {
		t.Fatalf("the refused transitions left the execution %s seq %d in memory", ex.Status, ex.Seq)
	}
	if _, _, err := db.Apply(id, to(domain.StatusScheduled, 1), to(domain.StatusRunning, 1)); err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, db)
}

func TestRetryClearsThePreviousAttempt(t *testing.T) {
	db := newTestDB(t)
	_, _, exs := fixture(base, "t", "r1")
	id := exs[0].ID
	if err := db.CreateExecution(exs[0]); err != nil {
		t.Fatal(err)
	}
	ex, _, err := db.Apply(id, to(domain.StatusScheduled, 1), to(domain.StatusRunning, 1),
		Transition{Attempt: 1, To: domain.StatusRequested, NextAttempt: true, Error: "worker w1 lost"})
	if err != nil {
		t.Fatal(err)
	}
	if ex.Worker != "" || ex.StartedAt != nil || ex.Error != "worker w1 lost" {
		t.Fatalf("retried execution keeps the old attempt: %+v", ex)
	}
	hs, _ := db.History(id)
	if last := hs[len(hs)-1]; last.Attempt != 2 || last.Error != "worker w1 lost" {
		t.Fatalf("retry history entry %+v", last)
	}
	active, _ := db.Active()
	if len(active) != 1 || active[0].Status != domain.StatusRequested {
		t.Fatalf("active after retry: %+v", active)
	}
}

func TestLists(t *testing.T) {
	db := newTestDB(t)
	var evs []*domain.Event
	var enfs []*domain.Enforcement
	var exs []*domain.Execution
	for i := range 60 {
		trigger := []string{"a", "b", "c"}[i%3]
		ev, en, ex := fixture(base.Add(time.Duration(i)*time.Millisecond), trigger, "r1", "r2")
		if err := db.AcceptEvent(ev, en, ex); err != nil {
			t.Fatal(err)
		}
		// Move some executions along so the status filters have work.
		for j, x := range ex {
			var ts []Transition
			switch (i + j) % 4 {
			case 1:
				ts = []Transition{to(domain.StatusScheduled, 1)}
			case 2:
				ts = []Transition{to(domain.StatusScheduled, 1), to(domain.StatusRunning, 1), to(domain.StatusSucceeded, 1)}
			}
			stored, _, err := db.Apply(x.ID, ts...)
			if err != nil {
				t.Fatal(err)
			}
			exs = append(exs, stored)
		}
		evs, enfs = append(evs, ev), append(enfs, en...)
	}
	evID := func(e *domain.Event) domain.ID { return e.ID }
	enID := func(e *domain.Enforcement) domain.ID { return e.ID }
	exID := func(e *domain.Execution) domain.ID { return e.ID }
	ev7 := evs[7].ID
	for _, tc := range []struct {
		name string
		list pageFunc
		want []domain.ID
	}{
		{"events", pager(db.Events, EventFilter{}, evID), want(evs, evID, everything[*domain.Event])},
		{"events by trigger", pager(db.Events, EventFilter{Trigger: "b"}, evID), want(evs, evID, func(e *domain.Event) bool { return e.Trigger == "b" })},
		{"enforcements", pager(db.Enforcements, EnforcementFilter{}, enID), want(enfs, enID, everything[*domain.Enforcement])},
		{"enforcements by rule", pager(db.Enforcements, EnforcementFilter{Rule: "r2"}, enID), want(enfs, enID, func(e *domain.Enforcement) bool { return e.Rule == "r2" })},
		{"enforcements by event", pager(db.Enforcements, EnforcementFilter{Event: ev7}, enID), want(enfs, enID, func(e *domain.Enforcement) bool { return e.Event == ev7 })},
		{"executions", pager(db.Executions, ExecutionFilter{}, exID), want(exs, exID, everything[*domain.Execution])},
		{"executions by action", pager(db.Executions, ExecutionFilter{Action: "act.r1"}, exID), want(exs, exID, func(e *domain.Execution) bool { return e.Action == "act.r1" })},
		{"executions by rule", pager(db.Executions, ExecutionFilter{Rule: "r2"}, exID), want(exs, exID, func(e *domain.Execution) bool { return e.Rule == "r2" })},
		{"executions by event", pager(db.Executions, ExecutionFilter{Event: ev7}, exID), want(exs, exID, func(e *domain.Execution) bool { return e.Event == ev7 })},
		{"executions by active status (index)", pager(db.Executions, ExecutionFilter{Status: domain.StatusScheduled}, exID),
			want(exs, exID, func(e *domain.Execution) bool { return e.Status == domain.StatusScheduled })},
		{"executions by terminal status (scan)", pager(db.Executions, ExecutionFilter{Status: domain.StatusSucceeded}, exID),
			want(exs, exID, func(e *domain.Execution) bool { return e.Status == domain.StatusSucceeded })},
		{"index combined with action", pager(db.Executions, ExecutionFilter{Status: domain.StatusRequested, Action: "act.r2"}, exID),
			want(exs, exID, func(e *domain.Execution) bool { return e.Status == domain.StatusRequested && e.Action == "act.r2" })},
		{"nothing matches", pager(db.Executions, ExecutionFilter{Action: "nope"}, exID), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const limit = 7
			var got []domain.ID
			pages := 0
			for cursor := (domain.ID{}); ; pages++ {
				page, next, err := tc.list(limit, cursor)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > limit || (!next.IsZero() && len(page) < limit) {
					t.Fatalf("page %d has %d items with next %v", pages, len(page), next)
				}
				got = append(got, page...)
				if cursor = next; next.IsZero() {
					break
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %d items %v\nwant %d items %v", len(got), got, len(tc.want), tc.want)
			}
			if len(tc.want) > 2*limit && pages < 2 {
				t.Fatalf("%d items came in %d pages", len(got), pages+1)
			}
		})
	}
	t.Run("default page size", func(t *testing.T) {
		page, next, err := db.Executions(ExecutionFilter{}, 0, domain.ID{})
		if err != nil || len(page) != DefaultPageSize || next != page[len(page)-1].ID {
			t.Fatalf("got %d items, next %v, err %v", len(page), next, err)
		}
		if got := pageSize(1 << 20); got != MaxPageSize {
			t.Fatalf("page size is capped at %d, want %d", got, MaxPageSize)
		}
	})
	t.Run("unknown status", func(t *testing.T) {
		if _, _, err := db.Executions(ExecutionFilter{Status: "bogus"}, 0, domain.ID{}); err == nil {
			t.Fatal("listing by an unknown status succeeded")
		}
	})
}

// pageFunc fetches one page of IDs.
type pageFunc func(limit int, cursor domain.ID) ([]domain.ID, domain.ID, error)

// pager adapts a list method with filter f to a pageFunc.
func pager[T, F any](list func(F, int, domain.ID) ([]T, domain.ID, error), f F, id func(T) domain.ID) pageFunc {
	return func(limit int, cursor domain.ID) ([]domain.ID, domain.ID, error) {
		page, next, err := list(f, limit, cursor)
		out := make([]domain.ID, len(page))
		for i, item := range page {
			out[i] = id(item)
		}
		return out, next, err
	}
}

// want is the expected listing: the IDs of the kept items, newest first.
func want[T any](items []T, id func(T) domain.ID, keep func(T) bool) []domain.ID {
	var out []domain.ID
	for _, item := range items {
		if keep(item) {
			out = append(out, id(item))
		}
	}
	slices.SortFunc(out, func(a, b domain.ID) int { return -strings.Compare(string(a[:]), string(b[:])) })
	return out
}

func TestActiveAfterReopen(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	var want []domain.ID
	for i, ts := range [][]Transition{
		nil,
		{to(domain.StatusScheduled, 1), to(domain.StatusRunning, 1)},
		{to(domain.StatusCanceled, 1)},
		{to(domain.StatusScheduled, 1)},
		{to(domain.StatusScheduled, 1), to(domain.StatusAbandoned, 1)},
	} {
		_, _, exs := fixture(base.Add(time.Duration(i)*time.Millisecond), "t", "r")
		if err := db.CreateExecution(exs[0]); err != nil {
			t.Fatal(err)
		}
		ex, _, err := db.Apply(exs[0].ID, ts...)
		if err != nil {
			t.Fatal(err)
		}
		if !ex.Status.Terminal() {
			want = append(want, ex.ID)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, fs)
	defer db.Close()
	active, err := db.Active()
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(active); !slices.Equal(got, want) {
		t.Fatalf("active after reopen: %v, want oldest first %v", got, want)
	}
	if active[1].Status != domain.StatusRunning || active[1].StartedAt == nil {
		t.Fatalf("recovered record %+v", active[1])
	}
}

func TestCompletions(t *testing.T) {
	db := newTestDB(t)
	var want []Completion
	for i := range 5 {
		_, _, exs := fixture(base.Add(time.Duration(i)*time.Millisecond), "t", "r")
		if err := db.CreateExecution(exs[0]); err != nil {
			t.Fatal(err)
		}
		ex, _, err := db.Apply(exs[0].ID, to(domain.StatusScheduled, 1), to(domain.StatusFailed, 1))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, Completion{ex.ID, ex.Seq})
		// A duplicate completion report must not add a second entry.
		if _, changed, err := db.Apply(ex.ID, to(domain.StatusFailed, 1)); err != nil || changed {
			t.Fatalf("re-delivered completion: changed %v, %v", changed, err)
		}
	}
	got, err := db.Completions(3)
	if err != nil || !slices.Equal(got, want[:3]) {
		t.Fatalf("Completions(3) = %v, %v; want %v", got, err, want[:3])
	}
	for _, c := range got {
		if err := db.AckCompletions(c); err != nil {
			t.Fatal(err)
		}
	}
	got, err = db.Completions(0)
	if err != nil || !slices.Equal(got, want[3:]) {
		t.Fatalf("after acks: %v, %v; want %v", got, err, want[3:])
	}
}

// TestSingleDeletesMeetOneSet drives index and outbox entries through every
// way they are set and deleted (a run, a retry that leaves and re-enters
// requested, a retry back to requested in one batch, a completion acked
// twice), then flushes and compacts everything: Pebble must never see a
// single delete meet a key set twice, and nothing deleted may come back.
// It also checks that the tripwire works, with a key set twice on purpose.
func TestSingleDeletesMeetOneSet(t *testing.T) {
	db := newTestDB(t)
	retry := Transition{Attempt: 1, To: domain.StatusRequested, NextAttempt: true, Error: "worker lost"}
	paths := [][]Transition{
		{to(domain.StatusScheduled, 1), to(domain.StatusRunning, 1), to(domain.StatusSucceeded, 1)},
		{to(domain.StatusScheduled, 1), retry, to(domain.StatusScheduled, 2), to(domain.StatusFailed, 2)},
		{to(domain.StatusScheduled, 1), retry},
		{to(domain.StatusScheduled, 1)},
	}
	var ids []domain.ID
	for i, path := range paths {
		ev, enfs, exs := fixture(base.Add(time.Duration(i)*time.Millisecond), "t", "r")
		if err := db.AcceptEvent(ev, enfs, exs); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, exs[0].ID)
		if i == 2 { // scheduled and retried in one batch: requested → requested
			if _, _, err := db.Apply(exs[0].ID, path...); err != nil {
				t.Fatal(err)
			}
			continue
		}
		for _, tr := range path {
			if _, _, err := db.Apply(exs[0].ID, tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	cs, err := db.Completions(0)
	if err != nil || len(cs) != 2 {
		t.Fatalf("completions %v, %v; want those of the two finished executions", cs, err)
	}
	for range 2 {
		if err := db.AckCompletions(cs...); err != nil {
			t.Fatal(err)
		}
	}
	compactAll := func() {
		t.Helper()
		if err := db.pdb.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := db.pdb.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
			t.Fatal(err)
		}
	}
	compactAll()
	if n := db.health.misuses.Load(); n != 0 {
		t.Fatalf("%d single deletes met a key set twice", n)
	}
	if cs, err := db.Completions(0); err != nil || len(cs) != 0 {
		t.Fatalf("acked completions came back: %v, %v", cs, err)
	}
	active, err := db.Active()
	if err != nil {
		t.Fatal(err)
	}
	var got []domain.ID
	for _, ex := range active {
		got = append(got, ex.ID)
	}
	if want := []domain.ID{ids[2], ids[3]}; !slices.Equal(got, want) {
		t.Fatalf("index lists %v; want the requested and the scheduled one %v", got, want)
	}
	if n, err := countKeys(db.pdb, pfxActive); err != nil || n != 2 {
		t.Fatalf("%d index keys, %v; want 2", n, err)
	}

	k := key(pfxActive, ids[0])
	for _, op := range []func() error{
		func() error { return db.pdb.Set(k, nil, pebble.Sync) },
		func() error { return db.pdb.Set(k, nil, pebble.Sync) },
		func() error { return db.pdb.SingleDelete(k, pebble.Sync) },
	} {
		if err := op(); err != nil {
			t.Fatal(err)
		}
	}
	compactAll()
	if n := db.health.misuses.Load(); n != 1 {
		t.Fatalf("a key set twice and single deleted: %d misuses seen; want 1", n)
	}
}

// TestTablesEndAtTheirPrefix flushes and compacts records of every kind:
// no table may hold keys of two prefixes, or compacting it would rewrite
// all older keys of the second (see endAtPrefix).
func TestTablesEndAtTheirPrefix(t *testing.T) {
	db := newTestDB(t)
	for i := range 50 {
		ev, enfs, exs := fixture(base.Add(time.Duration(i)*time.Millisecond), "t", "r1", "r2")
		if err := db.AcceptEvent(ev, enfs, exs); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.Apply(exs[0].ID, to(domain.StatusScheduled, 1)); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []func() error{db.pdb.Flush, func() error {
		return db.pdb.Compact(context.Background(), []byte{0}, []byte{0xff}, false)
	}} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
		levels, err := db.pdb.SSTables()
		if err != nil {
			t.Fatal(err)
		}
		for l, tables := range levels {
			for _, tb := range tables {
				if lo, hi := tb.Smallest.UserKey, tb.Largest.UserKey; string(lo[:3]) != string(hi[:3]) {
					t.Errorf("L%d table %s spans %q to %q", l, tb.FileNum, lo, hi)
				}
			}
		}
		if n := len(levels[0]) + len(levels[len(levels)-1]); n < 4 {
			t.Errorf("%d tables in L0 and L6; want one per prefix at least (ev, en, ex, ea)", n)
		}
	}
}

// TestCrashSafety crashes the filesystem under concurrent load and checks
// that everything acknowledged before the crash is there after recovery and
// that every batch landed whole or not at all.
func TestCrashSafety(t *testing.T) {
	for _, unsynced := range []int{0, 50, 100} {
		t.Run(fmt.Sprintf("unsynced data kept %d%%", unsynced), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			db := openDB(t, fs)

			var mu sync.Mutex
			var events []domain.ID
			seqs := map[domain.ID]uint64{} // execution → highest acknowledged seq
			acks, enough := 0, make(chan struct{})
			ack := func(ev domain.ID, ex domain.ID, seq uint64) {
				mu.Lock()
				defer mu.Unlock()
				if !ev.IsZero() {
					events = append(events, ev)
				}
				seqs[ex] = max(seqs[ex], seq)
				if acks++; acks == 300 {
					close(enough)
				}
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := range 16 {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						ev, enfs, exs := fixture(base.Add(time.Duration(w*100_000+i)*time.Millisecond), "t", "r")
						if err := db.AcceptEvent(ev, enfs, exs); err != nil {
							t.Error(err)
							return
						}
						ack(ev.ID, exs[0].ID, 1)
						for _, st := range []domain.Status{domain.StatusScheduled, domain.StatusRunning, domain.StatusSucceeded} {
							ex, _, err := db.Apply(exs[0].ID, to(st, 1))
							if err != nil {
								t.Error(err)
								return
							}
							ack(domain.ID{}, ex.ID, ex.Seq)
						}
					}
				})
			}
			workersDone := make(chan struct{})
			go func() { wg.Wait(); close(workersDone) }()
			select {
			case <-enough:
			case <-workersDone:
				t.Fatal("every writer stopped before 300 acknowledgements")
			}
			// Copy what was acknowledged before cloning: all of it was synced
			// before the clone began, so all of it must survive.
			mu.Lock()
			wantEvents, wantSeqs := slices.Clone(events), make(map[domain.ID]uint64, len(seqs))
			for id, s := range seqs {
				wantSeqs[id] = s
			}
			mu.Unlock()
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsynced, RNG: rand.New(rand.NewPCG(1, uint64(unsynced)))})
			close(stop)
			wg.Wait()
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			db = openDB(t, crashed)
			defer db.Close()
			for _, id := range wantEvents {
				if _, err := db.Event(id); err != nil {
					t.Errorf("acknowledged event lost: %v", err)
				}
			}
			for id, seq := range wantSeqs {
				ex, err := db.Execution(id)
				if err != nil {
					t.Errorf("acknowledged execution lost: %v", err)
				} else if ex.Seq < seq {
					t.Errorf("execution %s recovered at seq %d, but seq %d was acknowledged", id, ex.Seq, seq)
				}
			}
			t.Logf("%d events and %d executions acknowledged before the crash", len(wantEvents), len(wantSeqs))
			checkConsistent(t, db)
		})
	}
}
