package storage

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/troupehq/troupe/domain"
)

// newest is the greatest ID stored under a prefix whose records only
// commit creates. Keys are the prefix and a time-ordered ID, so an ID
// above it cannot be stored yet, and commit spares itself the lookup that
// would say so. Most new events and executions are above it; that lookup
// was a tenth of accepting an event, since it consults every table whose
// range holds the key (new keys sit at the end of each table's range).
//
// commit reads and raises it under the stripe lock of the ID, so a second
// creation of the same ID finds it raised and looks the key up.
type newest struct {
	mu sync.Mutex
	id domain.ID
}

func (n *newest) above(id domain.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return bytes.Compare(id[:], n.id[:]) > 0
}

func (n *newest) saw(id domain.ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if bytes.Compare(id[:], n.id[:]) > 0 {
		n.id = id
	}
}

// load sets n to the ID of the last key under prefix, whose keys end in
// their ID.
func (n *newest) load(r pebble.Reader, prefix string) error {
	ids, err := scan(r, span{lower: []byte(prefix), upper: prefixEnd(prefix), reverse: true, limit: 1},
		func(k, _ []byte) (domain.ID, bool, error) { return tailID(k), true, nil })
	if err != nil {
		return fmt.Errorf("find the newest key under %s: %w", prefix, err)
	}
	if len(ids) == 1 {
		n.saw(ids[0])
	}
	return nil
}
