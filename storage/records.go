package storage

import (
	"fmt"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// Kinds of record counted by troupe_storage_records, indexes of counted.
const (
	countEvents = iota
	countEnforcements
	countExecutions
	countedKinds
)

var counted = [countedKinds]struct{ kind, prefix string }{
	countEvents:       {"events", pfxEvent},
	countEnforcements: {"enforcements", pfxEnforcement},
	countExecutions:   {"executions", pfxExecution},
}

// recordCounts are the records stored, by kind: counted once when the
// store opens and then kept by the write path, so that a scrape reads them
// without scanning. Nothing deletes these records yet; retention, when it
// comes, must subtract what it deletes (and delete no event before its
// enforcements: see acceptEvent).
type recordCounts [countedKinds]atomic.Int64

// load counts the keys under each prefix. It reads keys only (values are
// never copied out) and runs before the store is shared.
func (c *recordCounts) load(r pebble.Reader) error {
	for i, k := range counted {
		n, err := countKeys(r, k.prefix)
		if err != nil {
			return fmt.Errorf("count %s: %w", k.kind, err)
		}
		c[i].Store(n)
	}
	return nil
}

func countKeys(r pebble.Reader, prefix string) (n int64, err error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd(prefix)})
	if err != nil {
		return 0, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n, it.Close()
}

// created counts the records of a committed creation. It is on the write
// path: a few atomic adds, no lock, no allocation.
func (c *recordCounts) created(fresh []fresh) {
	for _, f := range fresh {
		for i := range counted {
			if p := counted[i].prefix; len(f.key) >= len(p) && string(f.key[:len(p)]) == p {
				c[i].Add(1)
				break
			}
		}
	}
}
