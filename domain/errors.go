package domain

import (
	"errors"
	"fmt"
)

// ErrNotFound is wrapped by every lookup of something that does not exist.
var ErrNotFound = errors.New("not found")

// ErrDuplicate is wrapped when a record with the same ID already exists.
var ErrDuplicate = errors.New("already exists")

// ParamError says which action parameter is wrong and why.
type ParamError struct {
	Action string
	Param  string // dotted path; empty when the problem is the whole object
	Reason string
}

func (e *ParamError) Error() string {
	if e.Param == "" {
		return fmt.Sprintf("action %s: invalid parameters: %s", e.Action, e.Reason)
	}
	return fmt.Sprintf("action %s: parameter %q: %s", e.Action, e.Param, e.Reason)
}
