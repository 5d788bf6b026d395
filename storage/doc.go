// Package storage is a node's durable state: one Pebble DB holding events,
// enforcements, executions, their transition history, the index of
// non-terminal executions used for crash recovery, and the outbox of
// completion announcements.
//
// It enforces the execution state machine of package domain (every transition
// is checked against domain.CanTransition, stale and repeated reports are
// no-ops, terminal statuses are absorbing) and put-if-absent creation, and it
// makes every acknowledged write durable. It does not decide policy: retries,
// timeouts, cancellation and placement are the callers' decisions, which they
// express as transitions.
package storage
