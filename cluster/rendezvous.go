package cluster

import (
	"crypto/sha256"
	"encoding/binary"
)

// Pick returns the member key belongs to among members, by rendezvous
// (highest random weight) hashing of the key with each member's name:
// every node that sees the same members picks the same one, whatever their
// order, and a member that comes or goes moves only the keys it wins or
// held. It reports false when members is empty.
func Pick(key string, members []Member) (Member, bool) {
	var best Member
	var top uint64
	for i, m := range members {
		if s := score(key, m.Name); i == 0 || s > top || (s == top && m.Name < best.Name) {
			best, top = m, s
		}
	}
	return best, len(members) > 0
}

func score(key, name string) uint64 {
	h := sha256.New()
	h.Write([]byte(key))
	h.Write([]byte{0}) // ("ab","c") and ("a","bc") must not collide
	h.Write([]byte(name))
	return binary.BigEndian.Uint64(h.Sum(nil))
}
