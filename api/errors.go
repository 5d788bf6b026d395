package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/troupehq/troupe/domain"
)

// Error is an API error: what the server sends as {"error": {...}} and what
// the client returns for every non-2xx response.
type Error struct {
	Status  int    `json:"-"` // the HTTP status code
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the offending action parameter of an invalid_parameters error.
	Field string `json:"field,omitempty"`
	// RetryAfter, when positive, is sent as the Retry-After header: when
	// the same request is worth sending again.
	RetryAfter time.Duration `json:"-"`
}

func (e *Error) Error() string { return e.Message }

// Error codes. Clients branch on these, so they never change meaning.
const (
	CodeBadRequest        = "bad_request"
	CodeInvalidJSON       = "invalid_json"
	CodeNotFound          = "not_found"
	CodeMethodNotAllowed  = "method_not_allowed"
	CodeTooLarge          = "too_large"
	CodeInvalidParameters = "invalid_parameters"
	CodeNotReady          = "not_ready"
	CodeInternal          = "internal"
	CodeMisdirected       = "misdirected"  // this node's roles leave the API out; the message names the members that serve it
	CodeNoMember          = "no_member"    // no live member holds the role the request needs
	CodeInvalidPack       = "invalid_pack" // an uploaded pack that is no pack or does not load
	CodeConflict          = "conflict"     // e.g. removing a pack others use, replacing core
	CodeUnsupportedType   = "unsupported_media_type"
	CodeOverloaded        = "overloaded" // the node holds as many unfinished executions as it admits; retry after Retry-After
	CodeOverflow          = "overflow"   // a stream's reader fell too far behind (a stream event, then the stream ends), or resumed after what the node forgot
)

// codeStatus is the one table deciding the HTTP status of each code.
var codeStatus = map[string]int{
	CodeBadRequest:        http.StatusBadRequest,
	CodeInvalidJSON:       http.StatusBadRequest,
	CodeNotFound:          http.StatusNotFound,
	CodeMethodNotAllowed:  http.StatusMethodNotAllowed,
	CodeTooLarge:          http.StatusRequestEntityTooLarge,
	CodeInvalidParameters: http.StatusUnprocessableEntity,
	CodeNotReady:          http.StatusServiceUnavailable,
	CodeInternal:          http.StatusInternalServerError,
	CodeMisdirected:       http.StatusMisdirectedRequest,
	CodeNoMember:          http.StatusServiceUnavailable,
	CodeInvalidPack:       http.StatusUnprocessableEntity,
	CodeConflict:          http.StatusConflict,
	CodeUnsupportedType:   http.StatusUnsupportedMediaType,
	CodeOverloaded:        http.StatusServiceUnavailable,
	CodeOverflow:          http.StatusGone, // a stream resumed after what the node forgot
}

// NewError builds an API error with a code from the table; a Backend
// returns one when no domain error says what it means (e.g. not ready).
func NewError(code, format string, args ...any) *Error { return newError(code, format, args...) }

func newError(code, format string, args ...any) *Error {
	return &Error{Status: codeStatus[code], Code: code, Message: fmt.Sprintf(format, args...)}
}

// toError classifies err; internal reports whether its cause must be logged
// because the client only sees a generic message.
func toError(err error) (e *Error, internal bool) {
	var pe *domain.ParamError
	switch {
	case errors.As(err, &e):
		return e, false
	case errors.As(err, &pe):
		e = newError(CodeInvalidParameters, "%s", pe.Error())
		e.Field = pe.Param
		return e, false
	case errors.Is(err, domain.ErrNotFound):
		return newError(CodeNotFound, "%s", err.Error()), false
	}
	return newError(CodeInternal, "internal error; see the node's log"), true
}

// named makes a not-found error say what was missing when the Backend's
// message does not already.
func named(err error, kind, name string) error {
	if errors.Is(err, domain.ErrNotFound) && !strings.Contains(err.Error(), name) {
		return fmt.Errorf("%s %q: %w", kind, name, err)
	}
	return err
}

// jsonError turns a decoding error of body into an error that says where.
func jsonError(body []byte, err error) *Error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return newError(CodeInvalidJSON, "invalid JSON at %s: %s", where(body, se.Offset), se.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		return newError(CodeInvalidJSON, "invalid JSON at %s: unexpected end of input", where(body, int64(len(body))))
	case errors.As(err, &te):
		return newError(CodeBadRequest, "request body at %s: field %q must be %s, not %s", where(body, te.Offset), te.Field, te.Type, te.Value)
	}
	return newError(CodeBadRequest, "request body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// where renders the offset of a JSON error in body as a 1-based line and
// column. encoding/json counts the offending byte into the offset, so the
// column is that of the last byte read.
func where(body []byte, offset int64) string {
	offset = min(max(offset, 0), int64(len(body)))
	before := body[:offset]
	line := bytes.Count(before, []byte("\n")) + 1
	col := max(len(before)-bytes.LastIndexByte(before, '\n')-1, 1)
	return fmt.Sprintf("line %d, column %d (offset %d)", line, col, offset)
}
