package storage

import (
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/troupehq/troupe/domain"
)

// creation is a batch of new records that commits only if none of them
// exists yet.
type creation struct {
	db      *DB
	b       *pebble.Batch
	ids     []domain.ID       // to lock
	fresh   []fresh           // to check for absence
	created []executionRecord // executions, cached once committed
}

// newCreation starts a creation of records records, executions of them
// executions, sized so that adding them never grows a slice.
func (db *DB) newCreation(records, executions int) *creation {
	return &creation{db: db, b: db.pdb.NewBatch(), ids: make([]domain.ID, 0, records),
		fresh: make([]fresh, 0, records), created: make([]executionRecord, 0, executions)}
}

type fresh struct {
	what string
	id   domain.ID
	key  []byte
	// implied is set when the record cannot exist unless another record of
	// the batch does, which commit checks instead.
	implied bool
	// newest, when set, is the greatest ID stored under the key's prefix.
	newest *newest
}

// create adds a record that must not exist yet.
func (c *creation) create(f fresh, v any) error {
	if f.id.IsZero() {
		return fmt.Errorf("%s has no id", f.what)
	}
	c.ids = append(c.ids, f.id)
	c.fresh = append(c.fresh, f)
	return set(c.b, f.key, v)
}

// execution adds a new execution in its initial state. The caller's record
// is copied, not modified, so callers may share it across goroutines.
func (c *creation) execution(ex *domain.Execution) error {
	if ex == nil {
		return errors.New("nil execution")
	}
	rec := *ex
	rec.Status, rec.Seq = domain.StatusRequested, 1
	rec.Attempt = max(rec.Attempt, 1)
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = time.Now()
	}
	history := append(make([]domain.HistoryEntry, 0, historyCap), domain.HistoryEntry{Status: rec.Status,
		At: storedTime(rec.CreatedAt), Attempt: rec.Attempt, Seq: rec.Seq, Node: rec.Node})
	f := fresh{what: "execution", id: rec.ID, key: key(pfxExecution, rec.ID), newest: &c.db.newestExecution}
	if err := c.create(f, executionRecord{&rec, history}); err != nil {
		return err
	}
	if err := asStored(&rec); err != nil {
		return err
	}
	c.created = append(c.created, executionRecord{&rec, history})
	return c.b.Set(key(pfxActive, rec.ID), nil, nil)
}

// commit writes the batch durably unless one of its fresh records exists.
// The stripes of every record stay locked until the fsync returned, so a
// concurrent writer of the same ID either sees nothing or sees a durable
// record: never one a crash could still take away.
func (db *DB) commit(c *creation) error {
	defer db.unlock(db.lock(c.ids...))
	for _, f := range c.fresh {
		if f.implied || (f.newest != nil && f.newest.above(f.id)) {
			continue
		}
		found, err := exists(db.pdb, f.key)
		if err != nil {
			return fmt.Errorf("check whether %s %s exists: %w", f.what, f.id, err)
		}
		if found {
			return fmt.Errorf("%s %s: %w", f.what, f.id, domain.ErrDuplicate)
		}
	}
	if err := c.b.Commit(pebble.Sync); err != nil {
		return err
	}
	for _, f := range c.fresh {
		if f.newest != nil {
			f.newest.saw(f.id)
		}
	}
	db.records.created(c.fresh)
	for _, e := range c.created {
		db.inFlight.move("", e.ex.Status)
		db.live.put(e.ex, e.history)
	}
	return nil
}

// historyCap is the room a new execution's cached history gets: a run
// without retries (requested, scheduled, running, finished) never grows
// it as Apply appends.
const historyCap = 4

// recordHistory is how many of its latest history entries an execution's
// record holds: a run with one retry has seven. Older ones are under eh/,
// so that the record, rewritten at every transition, does not grow with
// every attempt of a long retry policy.
const recordHistory = 8

// AcceptEvent durably writes, in one batch, the event, its enforcements and
// the executions they created. Executions are stored in their initial state
// (status requested, seq 1, attempt at least 1, CreatedAt now if unset) with
// one history entry and an entry in the index of non-terminal executions.
// It is put-if-absent: if any of the records exists, nothing is written and
// the error wraps domain.ErrDuplicate.
func (db *DB) AcceptEvent(ev *domain.Event, enfs []*domain.Enforcement, exs []*domain.Execution) error {
	if ev == nil {
		return errors.New("accept event: nil event")
	}
	if err := db.acceptEvent(ev, enfs, exs); err != nil {
		return fmt.Errorf("accept event %s: %w", ev.ID, err)
	}
	return nil
}

func (db *DB) acceptEvent(ev *domain.Event, enfs []*domain.Enforcement, exs []*domain.Execution) error {
	c := db.newCreation(1+len(enfs)+len(exs), len(exs))
	defer c.b.Close()
	if err := c.create(fresh{what: "event", id: ev.ID, key: key(pfxEvent, ev.ID), newest: &db.newestEvent}, ev); err != nil {
		return err
	}
	for _, en := range enfs {
		if en == nil {
			return errors.New("nil enforcement")
		}
		if en.Event != ev.ID {
			return fmt.Errorf("enforcement %s belongs to event %s", en.ID, en.Event)
		}
		// Enforcements are stored only here, with their event, and one whose
		// ID is derived from this event (a rule's always is) cannot have
		// been stored with another, unless a caller derived an ID from one
		// event for an enforcement of another. So it exists only if the
		// event does, and the event's lookup stands for its own, sparing a
		// Get per enforcement. That holds while nothing deletes an event
		// before its enforcements. Executions keep their lookup:
		// CreateExecution stores any ID it is given, derived ones included,
		// without their event.
		f := fresh{what: "enforcement", id: en.ID, key: key(pfxEnforcement, en.ID),
			implied: en.ID == domain.EnforcementID(ev.ID, en.Rule)}
		if err := c.create(f, en); err != nil {
			return err
		}
	}
	for _, ex := range exs {
		if err := c.execution(ex); err != nil {
			return err
		}
	}
	return db.commit(c)
}

// CreateExecution durably writes one new execution (an ad-hoc run) in its
// initial state, as AcceptEvent does; the error wraps domain.ErrDuplicate if
// the ID exists.
func (db *DB) CreateExecution(ex *domain.Execution) error {
	c := db.newCreation(1, 1)
	defer c.b.Close()
	if err := c.execution(ex); err != nil {
		return fmt.Errorf("create execution: %w", err)
	}
	if err := db.commit(c); err != nil {
		return fmt.Errorf("create execution: %w", err)
	}
	return nil
}

// Transition is one status change reported for an execution.
type Transition struct {
	// Attempt is the attempt the transition belongs to; reports for an older
	// attempt are ignored.
	Attempt int
	// To is the new status.
	To domain.Status
	// At is when it happened. Zero means now.
	At time.Time
	// Node is the node reporting it: the worker for scheduled and running.
	// At scheduled it becomes the execution's Worker; in the history entry an
	// empty Node stands for the owning node.
	Node string
	// Error, when not empty, replaces the execution's error.
	Error string
	// Result, when not nil, replaces the execution's result.
	Result *domain.Result
	// NextAttempt, with To == requested, starts attempt Attempt+1: a retry.
	// Worker, StartedAt, Error and Result of the previous attempt are cleared.
	NextAttempt bool
}

// Apply applies ts in order to execution id, atomically, in one durable
// batch, and returns the resulting record and whether anything changed.
//
// A transition for an older attempt is skipped (a stale report), and so is
// one to the status the execution already has (a re-delivery). Anything else
// must be an edge of the state machine or Apply fails with the
// *domain.TransitionError naming both statuses; a terminal status is
// absorbing. On an error nothing is written and the stored record is
// returned with it. Each applied transition bumps Seq and adds a history
// entry; reaching a terminal status takes the execution out of the index of
// non-terminal executions and adds its completion to the outbox, exactly
// once.
// An unknown id yields an error wrapping domain.ErrNotFound. The record
// returned is the caller's to assign fields of, but shares its maps,
// result and times with the store's cache: they are read-only.
func (db *DB) Apply(id domain.ID, ts ...Transition) (*domain.Execution, bool, error) {
	defer db.unlock(db.lock(id))
	cur, history, err := db.current(id)
	if err != nil {
		return nil, false, fmt.Errorf("apply transitions to execution %s: %w", id, err)
	}
	// cur may be the cached record: the caller gets copies.
	failed := func(err error) (*domain.Execution, bool, error) {
		stored := *cur
		return &stored, false, err
	}
	ex, changed := *cur, false
	for _, t := range ts {
		h, err := step(&ex, t)
		if err != nil {
			return failed(fmt.Errorf("apply transition of execution %s to %s: %w", id, t.To, err))
		}
		if h != nil {
			changed = true
			history = append(history, *h)
		}
	}
	if !changed {
		return &ex, false, nil
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	// The record keeps the last recordHistory entries; each that leaves it
	// goes under eh/, where it never changes again.
	for i := range history {
		if h := &history[i]; h.Seq+recordHistory > cur.Seq && h.Seq+recordHistory <= ex.Seq {
			if err := set(b, key(pfxHistory, id, h.Seq), h); err != nil {
				return failed(fmt.Errorf("apply transitions to execution %s: %w", id, err))
			}
		}
	}
	if err := db.writeExecution(b, executionRecord{&ex, history[max(0, len(history)-recordHistory):]}); err != nil {
		db.live.drop(id)
		return failed(fmt.Errorf("apply transitions to execution %s: %w", id, err))
	}
	db.inFlight.move(cur.Status, ex.Status)
	cached := ex
	db.live.put(&cached, history)
	return &ex, true, nil
}

// Unfinished is the number of executions stored here that are not terminal
// yet: what this node has accepted and still owes a result.
func (db *DB) Unfinished() int64 { return db.inFlight.total() }

// writeExecution stores r and, on a terminal status, takes the execution
// out of the index of unfinished ones and adds its completion to the
// outbox, then commits.
func (db *DB) writeExecution(b *pebble.Batch, r executionRecord) error {
	if err := set(b, key(pfxExecution, r.ex.ID), r); err != nil {
		return err
	}
	if !r.ex.Status.Terminal() {
		return b.Commit(pebble.Sync)
	}
	// A single delete, because the index entry is set once, at creation,
	// and deleted once, here (terminal is absorbing): the pair then vanishes
	// where it meets, mostly in the memtable, where a plain tombstone would
	// be flushed and carried down the levels. Any second Set of a key not
	// deleted in between would break that; health logs it if Pebble ever
	// sees one.
	if err := b.SingleDelete(key(pfxActive, r.ex.ID), nil); err != nil {
		return err
	}
	// Only one terminal transition can ever be applied, so this is the one
	// completion of the execution.
	if err := b.Set(Completion{r.ex.ID, r.ex.Seq}.key(), nil, nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// step applies t to ex in memory and returns the history entry it makes, or
// nil when t is stale or already applied. It replaces rather than mutates
// what ex points to, so a shallow copy of the stored record can be stepped
// without touching the original. What it sets is as a read of the stored
// record returns it (see asStored), and none of it is t's: stepping a
// record as read leaves one that can be cached without decoding.
func step(ex *domain.Execution, t Transition) (*domain.HistoryEntry, error) {
	switch {
	case t.Attempt < ex.Attempt:
		return nil, nil
	case t.Attempt > ex.Attempt:
		return nil, fmt.Errorf("report for attempt %d, but the execution is on attempt %d: %w", t.Attempt, ex.Attempt, domain.ErrTransition)
	case t.To == ex.Status:
		return nil, nil
	case t.NextAttempt && t.To != domain.StatusRequested:
		return nil, fmt.Errorf("a next attempt starts at %s, not %s: %w", domain.StatusRequested, t.To, domain.ErrTransition)
	}
	if err := domain.CanTransition(ex.Status, t.To); err != nil {
		return nil, err
	}
	at := t.At
	if at.IsZero() {
		at = time.Now()
	}
	at = storedTime(at)
	if t.NextAttempt {
		ex.Attempt++
		ex.Worker, ex.StartedAt, ex.Error, ex.Result = "", nil, "", nil
	}
	ex.Status = t.To
	ex.Seq++
	switch {
	case t.To == domain.StatusScheduled:
		ex.Worker = t.Node
	case t.To == domain.StatusRunning:
		ex.StartedAt = storedTimePtr(&at)
	case t.To.Terminal():
		ex.FinishedAt = storedTimePtr(&at)
	}
	if t.Error != "" {
		ex.Error = t.Error
	}
	if t.Result != nil {
		ex.Result = storedResult(t.Result)
	}
	h := &domain.HistoryEntry{Status: ex.Status, At: at, Attempt: ex.Attempt, Seq: ex.Seq, Node: t.Node, Error: t.Error}
	if h.Node == "" {
		h.Node = ex.Node
	}
	return h, nil
}
