package storage

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/storage/internal/recordpb"
)

// A store written before an execution's history moved into its record and
// the index of unfinished executions lost its status (ea/<status>/<id>,
// eh/<id><seq>) opens and carries on: the index is rewritten on open, and
// an execution's next transition writes its latest history entries into
// its record.
func TestLegacyLayout(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	_, _, exs := fixture(base, "core.webhook", "done", "running", "waiting")
	statuses := []domain.Status{domain.StatusSucceeded, domain.StatusRunning, domain.StatusRequested}
	histories := map[domain.ID][]domain.HistoryEntry{}
	b := db.pdb.NewBatch()
	for i, ex := range exs {
		path := []domain.Status{domain.StatusRequested, domain.StatusScheduled, domain.StatusRunning, domain.StatusSucceeded}
		path = path[:map[domain.Status]int{domain.StatusRequested: 1, domain.StatusRunning: 3, domain.StatusSucceeded: 4}[statuses[i]]]
		ex.Status, ex.Attempt, ex.Seq, ex.CreatedAt = statuses[i], 1, uint64(len(path)), base
		for seq, s := range path {
			h := domain.HistoryEntry{Status: s, At: base.Add(time.Duration(seq) * time.Second), Attempt: 1, Seq: uint64(seq + 1), Node: "n1"}
			histories[ex.ID] = append(histories[ex.ID], h)
			put(t, b, key(pfxHistory, ex.ID, h.Seq), &recordpb.HistoryEntry{Status: string(h.Status), AtUnixNano: h.At.UnixNano(), Attempt: 1, Seq: h.Seq, Node: h.Node})
		}
		m, err := executionPB(ex, nil)
		if err != nil {
			t.Fatal(err)
		}
		put(t, b, key(pfxExecution, ex.ID), m)
		if !ex.Status.Terminal() {
			if err := b.Set(key(pfxActive+string(ex.Status)+"/", ex.ID), nil, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	done, running, waiting := exs[0].ID, exs[1].ID, exs[2].ID

	db = openDB(t, fs)
	checkIndex := func(want ...domain.ID) {
		t.Helper()
		var got []domain.ID
		it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte(pfxActive), UpperBound: prefixEnd(pfxActive)})
		if err != nil {
			t.Fatal(err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			if len(it.Key()) != len(pfxActive)+len(domain.ID{}) {
				t.Errorf("index key %q is not ea/<id>", it.Key())
			}
			got = append(got, tailID(it.Key()))
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(want, func(a, b domain.ID) int { return bytes.Compare(a[:], b[:]) })
		if !reflect.DeepEqual(got, want) {
			t.Errorf("index holds %v, want %v", got, want)
		}
	}
	checkIndex(running, waiting)
	if got := fmt.Sprint(db.InFlight()); got != fmt.Sprint(map[domain.Status]int{domain.StatusRequested: 1, domain.StatusRunning: 1}) {
		t.Errorf("in flight %s", got)
	}
	for _, id := range exs {
		if got, err := db.History(id.ID); err != nil || !reflect.DeepEqual(got, histories[id.ID]) {
			t.Errorf("history of %s: %v, %v; want %v", id.ID, got, err, histories[id.ID])
		}
	}
	if page, _, err := db.Executions(ExecutionFilter{Status: domain.StatusRunning}, 0, domain.ID{}); err != nil || len(page) != 1 || page[0].ID != running {
		t.Errorf("running executions: %v, %v", page, err)
	}

	if _, _, err := db.Apply(running, to(domain.StatusSucceeded, 1)); err != nil {
		t.Fatal(err)
	}
	checkIndex(waiting)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, fs)
	defer db.Close()
	// The running one's fourth entry is its success; the finished one's four
	// stay where they were.
	for id, want := range map[domain.ID]int{running: 4, done: 0} {
		h, err := db.History(id)
		if err != nil || len(h) != 4 || !reflect.DeepEqual(h[:len(histories[id])], histories[id]) || h[3].Status != domain.StatusSucceeded {
			t.Errorf("history of %s after reopening: %+v, %v", id, h, err)
		}
		v, closer, err := db.pdb.Get(key(pfxExecution, id))
		if err != nil {
			t.Fatal(err)
		}
		r, err := decodeExecution(v)
		closer.Close()
		if err != nil || len(r.history) != want {
			t.Errorf("the record of %s holds %d history entries, %v; want %d", id, len(r.history), err, want)
		}
	}
	if got := fmt.Sprint(db.InFlight()); got != fmt.Sprint(map[domain.Status]int{domain.StatusRequested: 1}) {
		t.Errorf("in flight after reopening %s", got)
	}
}

func put(t *testing.T, b *pebble.Batch, k []byte, m proto.Message) {
	t.Helper()
	v, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Set(k, v, nil); err != nil {
		t.Fatal(err)
	}
}

// An execution retried many times keeps only its latest history entries in
// its record, rewritten at every transition; the older ones go under eh/
// as they leave it, and a read from disk puts the whole history together,
// in the middle of the retries as at the end.
func TestLongHistoryLeavesTheRecord(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	defer func() { db.Close() }()
	_, _, exs := fixture(base, "t", "r1")
	id := exs[0].ID
	if err := db.CreateExecution(exs[0]); err != nil {
		t.Fatal(err)
	}
	const attempts = 6
	for a := 1; a <= attempts; a++ {
		last := Transition{Attempt: a, To: domain.StatusRequested, NextAttempt: true, Error: fmt.Sprintf("attempt %d failed", a)}
		if a == attempts {
			last = to(domain.StatusSucceeded, a)
		}
		for _, tr := range []Transition{to(domain.StatusScheduled, a), to(domain.StatusRunning, a), last} {
			if _, _, err := db.Apply(id, tr); err != nil {
				t.Fatal(err)
			}
			cached, err := db.History(id)
			if err != nil {
				t.Fatal(err)
			}
			if a%2 == 0 { // read back from disk, and go on from there
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				db = openDB(t, fs)
				if disk, err := db.History(id); err != nil || !reflect.DeepEqual(disk, cached) {
					t.Fatalf("attempt %d, %s: history read from disk %+v, %v; cached %+v", a, tr.To, disk, err, cached)
				}
			}
			for i, h := range cached {
				if h.Seq != uint64(i+1) {
					t.Fatalf("attempt %d, %s: entry %d has seq %d", a, tr.To, i, h.Seq)
				}
			}
			r, err := db.stored(id)
			if err != nil {
				t.Fatal(err)
			}
			v, closer, err := db.pdb.Get(key(pfxExecution, id))
			if err != nil {
				t.Fatal(err)
			}
			rec, err := decodeExecution(v)
			closer.Close()
			if err != nil {
				t.Fatal(err)
			}
			if n := min(len(r.history), recordHistory); len(rec.history) != n || !reflect.DeepEqual(rec.history, r.history[len(r.history)-n:]) {
				t.Fatalf("attempt %d, %s: the record holds %d entries; want the last %d of %d", a, tr.To, len(rec.history), n, len(r.history))
			}
			if n, err := countKeys(db.pdb, string(key(pfxHistory, id))); err != nil || int(n) != len(r.history)-len(rec.history) {
				t.Fatalf("attempt %d, %s: %d entries under eh/, %v; want the %d the record no longer holds", a, tr.To, n, err, len(r.history)-len(rec.history))
			}
		}
	}
	if h, err := db.History(id); err != nil || len(h) != 1+3*attempts || h[len(h)-1].Status != domain.StatusSucceeded {
		t.Fatalf("final history %+v, %v", h, err)
	}
}
