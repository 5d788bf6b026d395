package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/troupehq/troupe/domain"
)

// Page sizes of the list methods.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// Event returns the event with the given ID; the error wraps
// domain.ErrNotFound if there is none.
func (db *DB) Event(id domain.ID) (*domain.Event, error) {
	return lookup[domain.Event](db.pdb, "event", pfxEvent, id)
}

// Enforcement returns the enforcement with the given ID; the error wraps
// domain.ErrNotFound if there is none.
func (db *DB) Enforcement(id domain.ID) (*domain.Enforcement, error) {
	return lookup[domain.Enforcement](db.pdb, "enforcement", pfxEnforcement, id)
}

// Execution returns the current record of an execution; the error wraps
// domain.ErrNotFound if there is none. As with Apply, its maps, result and
// times may be shared with the store's cache and are read-only.
func (db *DB) Execution(id domain.ID) (*domain.Execution, error) {
	if e := db.live.get(id); e != nil {
		return e.record(), nil
	}
	ex, err := get[domain.Execution](db.pdb, key(pfxExecution, id))
	if err != nil {
		return nil, fmt.Errorf("get execution %s: %w", id, err)
	}
	return ex, nil
}

func lookup[T any](r pebble.Reader, what, prefix string, id domain.ID) (*T, error) {
	v, err := get[T](r, key(prefix, id))
	if err != nil {
		return nil, fmt.Errorf("get %s %s: %w", what, id, err)
	}
	return v, nil
}

// History returns the committed transitions of an execution in seq order,
// its creation first; the error wraps domain.ErrNotFound if there is none.
func (db *DB) History(id domain.ID) ([]domain.HistoryEntry, error) {
	if e := db.live.get(id); e != nil {
		return slices.Clone(e.history), nil
	}
	r, err := db.stored(id)
	if err != nil {
		return nil, fmt.Errorf("get history of execution %s: %w", id, err)
	}
	return r.history, nil
}

// stored reads execution id's record with its whole history from Pebble:
// the entries the record holds, after those under eh/ that it no longer
// does (see recordHistory), or all of them for a record written before
// history moved into it.
func (db *DB) stored(id domain.ID) (r executionRecord, err error) {
	err = read(db.pdb, key(pfxExecution, id), func(v []byte) error {
		r, err = decodeExecution(v)
		return err
	})
	if err != nil || (len(r.history) > 0 && r.history[0].Seq == 1) {
		return r, err
	}
	s := span{lower: key(pfxHistory, id), upper: prefixEnd(string(key(pfxHistory, id)))}
	if len(r.history) > 0 {
		s.upper = key(pfxHistory, id, r.history[0].Seq)
	}
	older, err := scan(db.pdb, s, func(_, v []byte) (domain.HistoryEntry, bool, error) {
		h, err := decode[domain.HistoryEntry](v)
		if err != nil {
			return domain.HistoryEntry{}, false, err
		}
		return *h, true, nil
	})
	if err != nil {
		return executionRecord{}, fmt.Errorf("read history of execution %s: %w", id, err)
	}
	r.history = append(older, r.history...)
	return r, nil
}

// ExecutionFilter selects executions; zero fields match everything.
type ExecutionFilter struct {
	Action string
	Rule   string
	Status domain.Status
	Event  domain.ID
}

func (f ExecutionFilter) match(ex *domain.Execution) bool {
	return (f.Action == "" || ex.Action == f.Action) && (f.Rule == "" || ex.Rule == f.Rule) &&
		(f.Status == "" || ex.Status == f.Status) && (f.Event.IsZero() || ex.Event == f.Event)
}

// EventFilter selects events; zero fields match everything.
type EventFilter struct {
	Trigger string
}

func (f EventFilter) match(ev *domain.Event) bool {
	return f.Trigger == "" || ev.Trigger == f.Trigger
}

// EnforcementFilter selects enforcements; zero fields match everything.
type EnforcementFilter struct {
	Rule  string
	Event domain.ID
}

func (f EnforcementFilter) match(en *domain.Enforcement) bool {
	return (f.Rule == "" || en.Rule == f.Rule) && (f.Event.IsZero() || en.Event == f.Event)
}

// Executions lists matching executions newest first. The cursor is the zero
// ID for the first page, else the next ID a previous call returned; next is
// zero when nothing more matches. limit <= 0 means DefaultPageSize, and it is
// capped at MaxPageSize. A non-terminal Status is served from the index of
// non-terminal executions rather than a scan of them all.
func (db *DB) Executions(f ExecutionFilter, limit int, cursor domain.ID) ([]*domain.Execution, domain.ID, error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, domain.ID{}, fmt.Errorf("list executions: unknown status %q", f.Status)
	}
	byID := func(ex *domain.Execution) domain.ID { return ex.ID }
	if f.Status == "" || f.Status.Terminal() {
		return list(db.pdb, "executions", pfxExecution, limit, cursor, byID, records(f.match))
	}
	// A snapshot, so that the index and the records it points to agree.
	snap := db.pdb.NewSnapshot()
	defer snap.Close()
	return list(snap, "executions", pfxActive, limit, cursor, byID, indexed(snap, f.match))
}

// Events lists matching events newest first; paging as for Executions.
func (db *DB) Events(f EventFilter, limit int, cursor domain.ID) ([]*domain.Event, domain.ID, error) {
	return list(db.pdb, "events", pfxEvent, limit, cursor,
		func(ev *domain.Event) domain.ID { return ev.ID }, records(f.match))
}

// Enforcements lists matching enforcements newest first; paging as for
// Executions.
func (db *DB) Enforcements(f EnforcementFilter, limit int, cursor domain.ID) ([]*domain.Enforcement, domain.ID, error) {
	return list(db.pdb, "enforcements", pfxEnforcement, limit, cursor,
		func(en *domain.Enforcement) domain.ID { return en.ID }, records(f.match))
}

func pageSize(limit int) int {
	if limit <= 0 {
		return DefaultPageSize
	}
	return min(limit, MaxPageSize)
}

// list reads one page, newest first, under prefix. It reads one match past
// the page to know whether there is a next page.
func list[T any](r pebble.Reader, what, prefix string, limit int, cursor domain.ID,
	id func(T) domain.ID, decode func(k, v []byte) (T, bool, error)) ([]T, domain.ID, error) {
	limit = pageSize(limit)
	s := span{lower: []byte(prefix), upper: prefixEnd(prefix), reverse: true, limit: limit + 1}
	if !cursor.IsZero() {
		s.upper = key(prefix, cursor)
	}
	items, err := scan(r, s, decode)
	if err != nil {
		return nil, domain.ID{}, fmt.Errorf("list %s: %w", what, err)
	}
	var next domain.ID
	if len(items) > limit {
		items = items[:limit]
		next = id(items[limit-1])
	}
	return items, next, nil
}

// records decodes a record stored under its own key and keeps it if keep says so.
func records[T any](keep func(*T) bool) func(k, v []byte) (*T, bool, error) {
	return func(_, v []byte) (*T, bool, error) {
		rec, err := decode[T](v)
		if err != nil {
			return nil, false, err
		}
		return rec, keep(rec), nil
	}
}

// indexed loads the execution an ea/ index key points to and keeps it if
// keep says so.
func indexed(r pebble.Reader, keep func(*domain.Execution) bool) func(k, v []byte) (*domain.Execution, bool, error) {
	return func(k, _ []byte) (*domain.Execution, bool, error) {
		ex, err := lookup[domain.Execution](r, "indexed execution", pfxExecution, tailID(k))
		if err != nil {
			return nil, false, err
		}
		return ex, keep(ex), nil
	}
}

// Active returns every non-terminal execution, oldest first. Crash recovery
// starts from it.
func (db *DB) Active() ([]*domain.Execution, error) {
	snap := db.pdb.NewSnapshot()
	defer snap.Close()
	exs, err := scan(snap, span{lower: []byte(pfxActive), upper: prefixEnd(pfxActive)}, indexed(snap, everything[*domain.Execution]))
	if err != nil {
		return nil, fmt.Errorf("list active executions: %w", err)
	}
	return exs, nil
}

// Completion announces that an execution reached a terminal status with
// transition Seq. Consumers dedupe by (Execution, Seq): a completion is
// delivered at least once.
type Completion struct {
	Execution domain.ID
	Seq       uint64
}

func (c Completion) key() []byte { return key(pfxOutbox, c.Execution, c.Seq) }

// Completions returns up to limit pending completions (limit <= 0 means
// DefaultPageSize, capped at MaxPageSize), oldest execution first.
func (db *DB) Completions(limit int) ([]Completion, error) {
	cs, err := scan(db.pdb, span{lower: []byte(pfxOutbox), upper: prefixEnd(pfxOutbox), limit: pageSize(limit)},
		func(k, _ []byte) (Completion, bool, error) {
			if len(k) != len(pfxOutbox)+len(domain.ID{})+8 {
				return Completion{}, false, errors.New("malformed outbox key")
			}
			return Completion{Execution: keyID(k, len(pfxOutbox)), Seq: binary.BigEndian.Uint64(k[len(k)-8:])}, true, nil
		})
	if err != nil {
		return nil, fmt.Errorf("list completions: %w", err)
	}
	return cs, nil
}

// AckCompletions removes delivered completions from the outbox, in one
// batch. It is not synced: losing it in a crash only delivers the
// completions again, which consumers dedupe. Each entry is set once, so a
// single delete removes it without leaving a tombstone; acking one twice
// is harmless (Pebble drops the second).
func (db *DB) AckCompletions(cs ...Completion) error {
	b := db.pdb.NewBatch()
	defer b.Close()
	for _, c := range cs {
		if err := b.SingleDelete(c.key(), nil); err != nil {
			return fmt.Errorf("ack completion of execution %s seq %d: %w", c.Execution, c.Seq, err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("ack %d completions: %w", len(cs), err)
	}
	return nil
}
