package domain

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// FieldError locates a problem in a definition file: which field, where.
// Compilers of pack content return errors.Join of these so the pack loader
// can report every problem at once with its file and line.
type FieldError struct {
	Pos   Pos
	Field string // dotted, e.g. `criteria."trigger.body.env".type`
	Msg   string
}

func (e *FieldError) Error() string {
	loc := ""
	switch {
	case e.Pos.File != "" && e.Pos.Line > 0:
		loc = fmt.Sprintf("%s:%d: ", e.Pos.File, e.Pos.Line)
	case e.Pos.File != "":
		loc = e.Pos.File + ": "
	}
	if e.Field == "" {
		return loc + e.Msg
	}
	return fmt.Sprintf("%sfield %s: %s", loc, quoteField(e.Field), e.Msg)
}

// quoteField quotes a field path unless it already carries quotes of its
// own (criteria keys are dotted paths, quoted inside the field path), where
// Go quoting would bury it in backslashes.
func quoteField(f string) string {
	if strings.Contains(f, `"`) {
		return f
	}
	return strconv.Quote(f)
}
