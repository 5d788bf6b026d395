package domain

import (
	"errors"
	"fmt"
)

// Status is an execution's state; the names are StackStorm's.
type Status string

const (
	StatusRequested Status = "requested"
	StatusDelayed   Status = "delayed"
	StatusScheduled Status = "scheduled"
	StatusRunning   Status = "running"
	StatusCanceling Status = "canceling"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusTimeout   Status = "timeout"
	StatusCanceled  Status = "canceled"
	StatusAbandoned Status = "abandoned"
)

// Statuses lists every status, non-terminal first.
var Statuses = []Status{
	StatusRequested, StatusDelayed, StatusScheduled, StatusRunning, StatusCanceling,
	StatusSucceeded, StatusFailed, StatusTimeout, StatusCanceled, StatusAbandoned,
}

func (s Status) String() string { return string(s) }

// Terminal statuses are absorbing: nothing leaves them.
func (s Status) Terminal() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusTimeout, StatusCanceled, StatusAbandoned:
		return true
	}
	return false
}

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	for _, v := range Statuses {
		if v == s {
			return true
		}
	}
	return false
}

// ParseStatus validates a status name given by a user.
func ParseStatus(s string) (Status, error) {
	if st := Status(s); st.Valid() {
		return st, nil
	}
	return "", fmt.Errorf("unknown status %q (known: %v)", s, Statuses)
}

// transitions is the whole execution state machine (DESIGN §3), as data.
// A scheduled or running execution whose worker is lost goes to abandoned, or
// back to requested as the next attempt when a retry policy allows it.
var transitions = map[Status][]Status{
	StatusRequested: {StatusDelayed, StatusScheduled, StatusCanceled, StatusFailed, StatusAbandoned},
	StatusDelayed:   {StatusRequested, StatusCanceled, StatusFailed, StatusAbandoned},
	StatusScheduled: {StatusRunning, StatusCanceled, StatusAbandoned, StatusRequested, StatusFailed, StatusTimeout},
	StatusRunning:   {StatusSucceeded, StatusFailed, StatusTimeout, StatusCanceling, StatusAbandoned, StatusRequested},
	StatusCanceling: {StatusCanceled, StatusSucceeded, StatusFailed, StatusTimeout, StatusAbandoned},
}

// ErrTransition is wrapped by every rejected transition.
var ErrTransition = errors.New("transition not allowed")

// TransitionError names both ends of a rejected transition.
type TransitionError struct{ From, To Status }

func (e *TransitionError) Error() string {
	if e.From.Terminal() {
		return fmt.Sprintf("execution is %s (terminal): cannot move to %s", e.From, e.To)
	}
	return fmt.Sprintf("cannot move execution from %s to %s", e.From, e.To)
}

func (e *TransitionError) Unwrap() error { return ErrTransition }

// CanTransition reports whether from → to is an edge of the state machine.
// Staying in the same status is not a transition; callers treat a repeated
// report of the current status as already applied.
func CanTransition(from, to Status) error {
	for _, s := range transitions[from] {
		if s == to {
			return nil
		}
	}
	return &TransitionError{From: from, To: to}
}
