package storage

import (
	"sync"

	"github.com/troupehq/troupe/domain"
)

// live holds, for every execution of this store that is not terminal yet,
// its record as last committed. Each transition is a read-modify-write of
// that record and the pipeline makes several per execution; serving them
// (and the execution actor's first read) from memory spares a Pebble Get and
// a decode each time. Entries are written only under the execution's stripe
// lock, after the batch storing the same record committed, so the map never
// runs ahead of the disk; a terminal record leaves it, which bounds it by the
// work in flight. A record it lacks (one an earlier process wrote) is read
// from Pebble. Anything else that writes or deletes ex/ records must keep
// it in step.
type live struct{ m sync.Map } // domain.ID → *domain.Execution

// get returns a copy of the cached record, or nil. The copy keeps callers
// from changing the cache by assigning fields; maps and pointers inside are
// shared, and records are never modified in place.
func (l *live) get(id domain.ID) *domain.Execution {
	v, ok := l.m.Load(id)
	if !ok {
		return nil
	}
	ex := *v.(*domain.Execution)
	return &ex
}

// put caches a committed record, decoded from what was stored (enc), so a
// hit returns exactly what a read from Pebble would (JSON numbers as
// float64, times in UTC); a terminal record is forgotten instead.
func (l *live) put(ex *domain.Execution, enc []byte) {
	if ex.Status.Terminal() {
		l.m.Delete(ex.ID)
		return
	}
	stored, err := decode[domain.Execution](enc)
	if err != nil { // it was just encoded; should it not decode, Pebble answers
		l.m.Delete(ex.ID)
		return
	}
	l.m.Store(ex.ID, stored)
}

// drop forgets a record whose commit failed: what Pebble holds is then
// unknown, so it is read from there again.
func (l *live) drop(id domain.ID) { l.m.Delete(id) }

// current is the committed record of execution id, from memory when cached.
func (db *DB) current(id domain.ID) (*domain.Execution, error) {
	if ex := db.live.get(id); ex != nil {
		return ex, nil
	}
	return get[domain.Execution](db.pdb, key(pfxExecution, id))
}
