package storage

import (
	"sync"

	"github.com/troupehq/troupe/domain"
)

// live holds executions as last committed, with their history: every one
// that is not terminal yet, and the last finishedKept that finished. Each
// transition is a read-modify-write of the record and the pipeline makes
// several per execution, and a client waiting on an execution reads it and
// its history just after it finished; serving them from memory spares a
// Pebble Get (or an iterator) and decoding each time. Entries are built
// as decoding the bytes stored would build them (see asStored and step),
// so a hit returns exactly what a read from Pebble would, and are written
// only under the execution's stripe lock after the batch storing them
// committed, so they never run ahead of the disk. A
// finished record never changes again (terminal is absorbing), so keeping
// it is safe; the bound keeps memory flat. What is not here (written by an
// earlier process, or finished long ago) is read from Pebble. Anything else
// that writes or deletes ex/ records must keep it in step.
type live struct {
	m        sync.Map // domain.ID → *liveEntry
	mu       sync.Mutex
	finished []domain.ID // ring of the last finishedKept terminal IDs
	next     int
}

// finishedKept is how many finished executions stay in memory: enough for
// the clients long-polling them under load, about a MiB.
const finishedKept = 1024

type liveEntry struct {
	ex *domain.Execution
	// history is the committed transitions, creation first. Apply appends
	// the next entries to it in place, under the stripe lock, and caches
	// the longer slice once they committed: readers of this entry never
	// look past its length, so they never see them, and a failed Apply's
	// leftovers are overwritten by the next.
	history []domain.HistoryEntry
}

// get returns the cached entry, or nil. Callers hand out copies of what
// they take from it (record, history), so that no caller can change the
// cache by assigning fields or appending; maps and pointers inside are
// shared, and records are never modified in place. Apply alone appends to
// the history it takes, as history explains.
func (l *live) get(id domain.ID) *liveEntry {
	v, ok := l.m.Load(id)
	if !ok {
		return nil
	}
	return v.(*liveEntry)
}

func (e *liveEntry) record() *domain.Execution {
	rec := *e.ex
	return &rec
}

// put caches a committed record, as a read returns it and shared with no
// writer, with its whole history.
func (l *live) put(ex *domain.Execution, history []domain.HistoryEntry) {
	l.m.Store(ex.ID, &liveEntry{ex: ex, history: history})
	if ex.Status.Terminal() {
		l.keepFinished(ex.ID)
	}
}

// keepFinished adds a finished ID to the ring and forgets the oldest.
func (l *live) keepFinished(id domain.ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.finished) < finishedKept {
		l.finished = append(l.finished, id)
		return
	}
	l.m.Delete(l.finished[l.next])
	l.finished[l.next] = id
	l.next = (l.next + 1) % finishedKept
}

// drop forgets a record whose commit failed: what Pebble holds is then
// unknown, so it is read from there again.
func (l *live) drop(id domain.ID) { l.m.Delete(id) }

// current is the committed record of execution id with its whole history,
// from memory when cached: then both are the cache's, and only Apply,
// holding the stripe lock, may call it.
func (db *DB) current(id domain.ID) (*domain.Execution, []domain.HistoryEntry, error) {
	if e := db.live.get(id); e != nil {
		return e.ex, e.history, nil
	}
	r, err := db.stored(id)
	return r.ex, r.history, err
}
