package storage

import (
	"encoding/binary"

	"github.com/troupehq/troupe/domain"
)

// Key prefixes. IDs are time-ordered, so within a prefix key order is
// creation order and a reverse scan lists newest first.
const (
	pfxEvent       = "ev/" // ev/<id>: domain.Event
	pfxEnforcement = "en/" // en/<id>: domain.Enforcement
	pfxExecution   = "ex/" // ex/<id>: current domain.Execution
	pfxHistory     = "eh/" // eh/<id><seq>: domain.HistoryEntry no longer in its execution's record (see recordHistory)
	pfxActive      = "ea/" // ea/<id>: empty; only non-terminal executions
	pfxOutbox      = "ob/" // ob/<id><seq>: empty; one per terminal transition
	pfxPack        = "pk/" // pk/<ref>: PackRecord, the pack set the cluster converges on
	pfxPackDir     = "pd/" // pd/<ref>: hash of the pack last loaded from this node's own --packs
)

// key is prefix + id + each of seqs big-endian, so numeric order is key order.
func key(prefix string, id domain.ID, seqs ...uint64) []byte {
	k := make([]byte, 0, len(prefix)+len(id)+8*len(seqs))
	k = append(k, prefix...)
	k = append(k, id[:]...)
	for _, s := range seqs {
		k = binary.BigEndian.AppendUint64(k, s)
	}
	return k
}

// keyID reads the ID that starts at offset off of k.
func keyID(k []byte, off int) domain.ID {
	var id domain.ID
	copy(id[:], k[off:])
	return id
}

// tailID is the ID that ends k, the layout of every key but eh/ and ob/.
func tailID(k []byte) domain.ID { return keyID(k, len(k)-len(domain.ID{})) }

// prefixEnd is the smallest key greater than every key starting with p.
func prefixEnd(p string) []byte {
	end := []byte(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}
