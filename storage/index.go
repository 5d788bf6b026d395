package storage

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/troupehq/troupe/domain"
)

// inFlight counts the unfinished executions by status, one counter per
// status of nonTerminal: loaded when the store opens, then kept by the
// write path once each batch committed, so that admission reads their sum
// per request and a scrape each of them without a scan. The ea/ index
// holds no status, so that an execution's entry is set once and deleted
// once. The map is never written after load.
type inFlight map[domain.Status]*atomic.Int64

// load counts the executions the ea/ index lists by the status of their
// records, in one consistent view. It runs before the store is shared.
func (f *inFlight) load(pdb *pebble.DB) error {
	*f = make(inFlight, len(nonTerminal))
	for _, s := range nonTerminal {
		(*f)[s] = new(atomic.Int64)
	}
	snap := pdb.NewSnapshot()
	defer snap.Close()
	exs, err := scan(snap, span{lower: []byte(pfxActive), upper: prefixEnd(pfxActive)}, indexed(snap, everything[*domain.Execution]))
	if err != nil {
		return fmt.Errorf("count unfinished executions: %w", err)
	}
	for _, ex := range exs {
		if ex.Status.Terminal() {
			return fmt.Errorf("count unfinished executions: %s is %s but indexed as unfinished", ex.ID, ex.Status)
		}
		f.move("", ex.Status)
	}
	return nil
}

// move accounts for an execution leaving status from (none for a new one)
// for status to; a terminal status is not counted.
func (f inFlight) move(from, to domain.Status) {
	if from == to {
		return
	}
	if c := f[from]; c != nil {
		c.Add(-1)
	}
	if c := f[to]; c != nil {
		c.Add(1)
	}
}

// total is the number of unfinished executions.
func (f inFlight) total() int64 {
	var n int64
	for _, c := range f {
		n += c.Load()
	}
	return n
}

// everything is the filter that keeps every item.
func everything[T any](T) bool { return true }

// migrateIndex rewrites the index entries of a store written when they
// were keyed by status too (ea/<status>/<id>) as ea/<id>, in one synced
// batch: the write path deletes only the latter.
func migrateIndex(pdb *pebble.DB) error {
	b := pdb.NewBatch()
	defer b.Close()
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: []byte(pfxActive), UpperBound: prefixEnd(pfxActive)})
	if err != nil {
		return fmt.Errorf("migrate the index of unfinished executions: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) == len(pfxActive)+len(domain.ID{}) {
			continue
		}
		if err = errors.Join(b.SingleDelete(k, nil), b.Set(key(pfxActive, tailID(k)), nil, nil)); err != nil {
			break
		}
	}
	if err = errors.Join(err, it.Close()); err == nil && !b.Empty() {
		err = b.Commit(pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("migrate the index of unfinished executions: %w", err)
	}
	return nil
}
