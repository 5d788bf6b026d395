package domain

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

// ID identifies an event, enforcement or execution. The first 6 bytes are
// milliseconds since the epoch (big-endian), so byte order is time order and a
// prefix scan over IDs is a time scan; the other 10 bytes are random or, for
// derived IDs, a hash. It renders as ULID text (26 characters).
type ID [16]byte

// NewID returns a fresh time-ordered ID with random entropy.
func NewID(now time.Time) ID {
	var id ID
	putMillis(&id, now)
	if _, err := rand.Read(id[6:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // the OS RNG failing is unrecoverable
	}
	return id
}

// DeriveID returns the ID that at and parts always map to. Deterministic IDs
// are what make redelivery harmless: the same tick, or the same event reaching
// the same rule, yields the same record key, and put-if-absent does the rest.
func DeriveID(at time.Time, parts ...string) ID {
	var id ID
	putMillis(&id, at)
	// One buffer hashed at once, rather than a hash.Hash written in parts:
	// the same bytes, without the hasher and its sum on the heap, twice
	// per execution.
	msg := make([]byte, 0, 128)
	for _, p := range parts {
		msg = binary.BigEndian.AppendUint32(msg, uint32(len(p))) // length-prefix so ("ab","c") != ("a","bc")
		msg = append(msg, p...)
	}
	sum := sha256.Sum256(msg)
	copy(id[6:], sum[:])
	return id
}

// EnforcementID is the ID of the enforcement of rule on event.
func EnforcementID(event ID, rule string) ID {
	return DeriveID(event.Time(), "enforcement", event.String(), rule)
}

// ExecutionIDFor is the ID of the execution an enforcement creates.
func ExecutionIDFor(enforcement ID) ID {
	return DeriveID(enforcement.Time(), "execution", enforcement.String())
}

func putMillis(id *ID, t time.Time) {
	ms := uint64(t.UnixMilli())
	id[0] = byte(ms >> 40)
	id[1] = byte(ms >> 32)
	id[2] = byte(ms >> 24)
	id[3] = byte(ms >> 16)
	id[4] = byte(ms >> 8)
	id[5] = byte(ms)
}

// Time is the millisecond timestamp embedded in the ID.
func (id ID) Time() time.Time { return ulid.ULID(id).Timestamp() }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

func (id ID) String() string { return ulid.ULID(id).String() }

// ParseID parses the 26-character text form.
func ParseID(s string) (ID, error) {
	u, err := ulid.ParseStrict(s)
	if err != nil {
		return ID{}, fmt.Errorf("invalid id %q: %w", s, err)
	}
	return ID(u), nil
}

// MarshalText encodes straight into the bytes it returns: one allocation,
// not a string and its copy, for each ID of each record the API sends.
func (id ID) MarshalText() ([]byte, error) {
	b := make([]byte, ulid.EncodedSize)
	return b, ulid.ULID(id).MarshalTextTo(b)
}

func (id *ID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*id = ID{}
		return nil
	}
	p, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}
