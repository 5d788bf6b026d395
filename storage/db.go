package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/troupehq/troupe/domain"
)

// stripeBits sets the number of per-ID mutexes. Writers of distinct IDs
// almost always take distinct stripes and so commit concurrently, which is
// what lets Pebble group their fsyncs.
const (
	stripeBits = 10
	stripes    = 1 << stripeBits
)

// DB is a node's store. It is safe for concurrent use.
type DB struct {
	pdb      *pebble.DB
	locks    [stripes]sync.Mutex
	health   *health
	fsHealth func() error // stops Pebble's disk health checks
	records  recordCounts
	live     live
	inFlight inFlight
	// newestEvent and newestExecution let commit skip most existence checks.
	newestEvent, newestExecution newest
}

// syncPacer spaces the WAL's syncs out while they are busy. Under load,
// commits arrive faster than fsyncs finish and each sync took whatever had
// queued since the last; holding the next one until walMinSyncInterval
// after the last lets each cover more commits. A commit still returns only
// once its sync did. Pebble asks next after every sync. At light load the
// same pause would only add to each commit (one execution's three commits
// follow each other within a millisecond), so it applies only while more
// than busySyncs syncs happened within about syncWindow.
//
// Measured on webhook-noop, 3 interleaved pairs, with the pause always on:
// node CPU per execution 190 → 171 µs, throughput +12 %, p99 16 → 13.5 ms;
// open loop at 5,000/s: p99 32 → 18 ms, fsyncs 2,500/s → 1,000/s. At 10
// executions/s it took p50 from 0.96 to 2.06 ms, hence the pacing.
type syncPacer struct {
	mu    sync.Mutex
	last  time.Time
	score float64 // syncs within about syncWindow, decayed exponentially
}

const (
	walMinSyncInterval = 300 * time.Microsecond
	syncWindow         = 100 * time.Millisecond
	busySyncs          = 20 // within syncWindow: 200 syncs a second
)

func (p *syncPacer) next() time.Duration { return p.after(time.Now()) }

// after counts a sync that finished at now and returns how long the next
// must wait.
func (p *syncPacer) after(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.score = p.score*math.Exp(-float64(now.Sub(p.last))/float64(syncWindow)) + 1
	p.last = now
	if p.score > busySyncs {
		return walMinSyncInterval
	}
	return 0
}

// Open opens (creating if needed) the store in cfg.Dir.
func Open(cfg Config) (*DB, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	log := cfg.Logger.With("component", "storage")
	h := newHealth(cfg, log)
	fs, fsHealth := h.wrap(cfg.FS)
	opts := &pebble.Options{
		FS:            fs,
		Logger:        pebbleLogger{log},
		EventListener: h.events,
		// The default is the oldest supported format; a new store should get
		// the newest stable one (e.g. WAL sync chunks, which tell a torn WAL
		// tail from corruption on recovery).
		FormatMajorVersion: pebble.FormatNewest,
		CacheSize:          cfg.CacheSize,
		// Every kind of record has time-ordered keys under its own prefix.
		// Before tables ended at their prefix (endAtPrefix, below), each
		// flushed table overlapped every older table between two prefixes,
		// and with Pebble's defaults (the bottom level is also the base
		// level until it holds 64 MiB) each compaction out of L0 rewrote
		// nearly the whole store. A small base level bounded that, and a
		// larger memtable made a third as many flushes: on 60 s of
		// webhook-noop, compaction 34 -> 15 s and 259 -> 212 µs of CPU per
		// execution, for 12 MiB more peak RSS. With endAtPrefix, a base
		// level of 32 MiB measured the same, so these stay.
		LBaseMaxBytes:      8 << 20,
		MemTableSize:       16 << 20,
		WALMinSyncInterval: new(syncPacer).next,
	}
	// Every creation first looks up keys that are almost never there; without
	// filters each such Get reads a block of every overlapping table.
	// Later levels inherit L0's policy.
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	// A table that straddles two prefixes spans every older key of the
	// second (its first key there is new, the level's older keys of that
	// prefix are below it), so compacting it into the next level rewrote the
	// whole of that prefix in it, ever more as the store grew. Ending every
	// table at its prefix's end leaves only the tail of each prefix to
	// overlap: flushes and compactions cut their output there. Small tables
	// then keep that tail, rewritten by each compaction into it, small.
	// Measured on 600,000 executions of the storage lifecycle benchmark:
	// compaction 18 -> 10 µs per execution, table bytes written 1,530 ->
	// 810, process CPU -6 %.
	opts.Experimental.SpanPolicyFunc = endAtPrefix
	for i := range opts.TargetFileSizes {
		opts.TargetFileSizes[i] = 2 << 20
	}
	pdb, err := pebble.Open(cfg.Dir, opts)
	if err != nil {
		fsHealth()
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("open storage in %s: the directory is locked: is another troupe agent using this data dir? (%w)", cfg.Dir, err)
		}
		return nil, fmt.Errorf("open storage in %s: %w", cfg.Dir, err)
	}
	db := &DB{pdb: pdb, health: h, fsHealth: fsHealth}
	if err := db.records.load(pdb); err != nil {
		db.closePebble()
		return nil, fmt.Errorf("open storage in %s: %w", cfg.Dir, err)
	}
	if err := errors.Join(db.newestEvent.load(pdb, pfxEvent), db.newestExecution.load(pdb, pfxExecution)); err != nil {
		db.closePebble()
		return nil, fmt.Errorf("open storage in %s: %w", cfg.Dir, err)
	}
	if err := migrateIndex(pdb); err != nil {
		db.closePebble()
		return nil, fmt.Errorf("open storage in %s: %w", cfg.Dir, err)
	}
	if err := db.inFlight.load(pdb); err != nil {
		db.closePebble()
		return nil, fmt.Errorf("open storage in %s: %w", cfg.Dir, err)
	}
	h.start()
	log.Info("storage opened", "dir", cfg.Dir)
	return db, nil
}

// endAtPrefix is the SpanPolicyFunc that ends each table at the end of the
// prefix ("ev/", "ex/", …) of its first key.
func endAtPrefix(start []byte) (pebble.SpanPolicy, []byte, error) {
	if len(start) >= 3 && start[2] == '/' {
		return pebble.SpanPolicy{}, prefixEnd(string(start[:3])), nil
	}
	return pebble.SpanPolicy{}, nil, nil
}

// Close releases the store; every acknowledged write is already durable.
// Call it once, after every other call has returned.
func (db *DB) Close() error {
	db.health.close()
	return db.closePebble()
}

func (db *DB) closePebble() error {
	err := db.pdb.Close()
	db.fsHealth()
	if err != nil {
		return fmt.Errorf("close storage: %w", err)
	}
	return nil
}

// Pebble exposes the underlying DB, for exporting its metrics.
func (db *DB) Pebble() *pebble.DB { return db.pdb }

// pebbleLogger routes Pebble's printf-style logging into slog.
type pebbleLogger struct{ log *slog.Logger }

var _ pebble.Logger = pebbleLogger{}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Info(fmt.Sprintf(format, args...), "source", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "source", "pebble")
}

// Fatalf must not return: Pebble calls it on broken invariants and carries on
// as if the process were gone. Panicking instead of os.Exit lets the process
// unwind its deferred calls.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error(msg, "source", "pebble", "fatal", true)
	panic("pebble: " + msg)
}

// stripeSet is a set of stripes, one bit each.
type stripeSet [stripes / 64]uint64

// lock takes the stripes of ids in ascending order, so callers locking
// several IDs cannot deadlock each other, and returns them for unlock.
// Every write locks, and a bitset, unlike the sorted slice and closure it
// replaces, costs no allocation.
func (db *DB) lock(ids ...domain.ID) stripeSet {
	var set stripeSet
	for _, id := range ids {
		i := stripe(id)
		set[i/64] |= 1 << (i % 64)
	}
	set.each(func(i int) { db.locks[i].Lock() })
	return set
}

func (db *DB) unlock(set stripeSet) { set.each(func(i int) { db.locks[i].Unlock() }) }

func (s *stripeSet) each(f func(int)) {
	for w, word := range s {
		for ; word != 0; word &= word - 1 {
			f(w*64 + bits.TrailingZeros64(word))
		}
	}
}

// stripe hashes the whole ID: derived IDs that differ only in their time
// share the hashed tail, so the tail alone would pile them on one stripe.
func stripe(id domain.ID) int {
	h := binary.LittleEndian.Uint64(id[:8]) ^ binary.LittleEndian.Uint64(id[8:])
	return int((h * 0x9e3779b97f4a7c15) >> (64 - stripeBits)) // Fibonacci hashing
}

// get reads and decodes the record at k; domain.ErrNotFound if there is none.
func get[T any](r pebble.Reader, k []byte) (rec *T, err error) {
	err = read(r, k, func(v []byte) error {
		rec, err = decode[T](v)
		return err
	})
	return rec, err
}

// read passes the value at k to f, which must not keep it; domain.ErrNotFound
// if there is none.
func read(r pebble.Reader, k []byte, f func(v []byte) error) error {
	v, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return domain.ErrNotFound
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	return f(v)
}

func exists(r pebble.Reader, k []byte) (bool, error) {
	_, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, closer.Close()
}

// span is a key range to scan.
type span struct {
	lower, upper []byte // upper is exclusive
	reverse      bool   // last key first
	limit        int    // stop after this many matches; 0 means no limit
}

// scan is the one iteration loop of the package: decode turns each key/value
// into an item and says whether it matches; matches are returned in scan
// order.
func scan[T any](r pebble.Reader, s span, decode func(k, v []byte) (T, bool, error)) (items []T, err error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: s.lower, UpperBound: s.upper})
	if err != nil {
		return nil, fmt.Errorf("scan %q: %w", s.lower, err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("scan %q: close iterator: %w", s.lower, cerr)
		}
	}()
	first, next := it.First, it.Next
	if s.reverse {
		first, next = it.Last, it.Prev
	}
	for ok := first(); ok && (s.limit == 0 || len(items) < s.limit); ok = next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("scan %q: read value of %q: %w", s.lower, it.Key(), err)
		}
		item, match, err := decode(it.Key(), v)
		if err != nil {
			return nil, fmt.Errorf("scan %q: key %q: %w", s.lower, it.Key(), err)
		}
		if match {
			items = append(items, item)
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("scan %q: %w", s.lower, err)
	}
	return items, nil
}
