package storage

import (
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// PackRecord is one installed pack as the cluster shares it: every member
// holds the newest record of each ref it has seen, archive included, so it
// can serve the pack to members that lack it and reload it at restart.
type PackRecord struct {
	Ref     string `json:"ref"`
	Version string `json:"version"`
	Hash    string `json:"hash"`
	// InstalledAt and InstalledOn order versions: the newest install wins
	// everywhere, ties broken by hash so that every member picks the same.
	InstalledAt time.Time `json:"installed_at"`
	InstalledOn string    `json:"installed_on"`
	Source      string    `json:"source"` // "api", or "dir <path>" for --packs
	// Deleted marks a removed pack, kept so that the removal spreads and a
	// member holding the old version does not bring it back.
	Deleted bool   `json:"deleted,omitempty"`
	Archive []byte `json:"archive,omitempty"`
}

// Newer says whether r should replace old.
func (r *PackRecord) Newer(old *PackRecord) bool {
	if old == nil {
		return true
	}
	if !r.InstalledAt.Equal(old.InstalledAt) {
		return r.InstalledAt.After(old.InstalledAt)
	}
	return r.Hash > old.Hash || r.Hash == old.Hash && r.Deleted && !old.Deleted
}

// PutPack stores r durably, replacing the record of its ref.
func (db *DB) PutPack(r *PackRecord) error {
	v, err := encode(r)
	if err != nil {
		return err
	}
	if err := db.pdb.Set([]byte(pfxPack+r.Ref), v, pebble.Sync); err != nil {
		return fmt.Errorf("store pack %s: %w", r.Ref, err)
	}
	return nil
}

// Packs returns every pack record, removed ones included, by ref.
func (db *DB) Packs() ([]*PackRecord, error) {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte(pfxPack), UpperBound: prefixEnd(pfxPack)})
	if err != nil {
		return nil, err
	}
	var out []*PackRecord
	for it.First(); it.Valid(); it.Next() {
		r, err := decode[PackRecord](it.Value())
		if err != nil {
			return nil, errors.Join(fmt.Errorf("pack %s: %w", it.Key()[len(pfxPack):], err), it.Close())
		}
		out = append(out, r)
	}
	return out, it.Close()
}

// PackDirHash is the hash of pack ref as this node last loaded it from its
// own pack directories, "" if never.
func (db *DB) PackDirHash(ref string) (string, error) {
	v, closer, err := db.pdb.Get([]byte(pfxPackDir + ref))
	if errors.Is(err, pebble.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer closer.Close()
	return string(v), nil
}

// SetPackDirHash records the hash of pack ref as loaded from this node's
// pack directories.
func (db *DB) SetPackDirHash(ref, hash string) error {
	return db.pdb.Set([]byte(pfxPackDir+ref), []byte(hash), pebble.Sync)
}
