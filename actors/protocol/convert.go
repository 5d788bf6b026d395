package protocol

import (
	"encoding/json"
	"time"

	"github.com/troupehq/troupe/domain"
)

// ID reads a 16-byte ID field; a malformed field yields the zero ID, which
// no record has, so lookups fail cleanly instead of panicking.
func ID(b []byte) domain.ID {
	var id domain.ID
	if len(b) == len(id) {
		copy(id[:], b)
	}
	return id
}

// NewResult converts a domain result for the wire.
func NewResult(r *domain.Result) *Result {
	if r == nil {
		return nil
	}
	return &Result{ExitCode: int32(r.ExitCode), Stdout: r.Stdout, Stderr: r.Stderr, OutputJson: r.Output}
}

// Domain converts a wire result back.
func (r *Result) Domain() *domain.Result {
	if r == nil {
		return nil
	}
	return &domain.Result{ExitCode: int(r.ExitCode), Stdout: r.Stdout, Stderr: r.Stderr, Output: json.RawMessage(r.OutputJson)}
}

// NewStep builds a report step.
func NewStep(st domain.Status, at time.Time, errMsg string, r *domain.Result) *Step {
	return &Step{Status: string(st), AtUnixNano: at.UnixNano(), Error: errMsg, Result: NewResult(r)}
}

// NewEvent converts a domain event for the wire.
func NewEvent(ev *domain.Event) (*Event, error) {
	payload, err := json.Marshal(ev.Payload)
	if err != nil {
		return nil, err
	}
	return &Event{Id: ev.ID[:], Trigger: ev.Trigger, Instance: ev.Instance, PayloadJson: payload,
		Source: ev.Source, CreatedUnixNano: ev.CreatedAt.UnixNano()}, nil
}

// Domain converts a wire event back; the payload must be a JSON object.
func (e *Event) Domain() (*domain.Event, error) {
	ev := &domain.Event{ID: ID(e.Id), Trigger: e.Trigger, Instance: e.Instance, Source: e.Source,
		CreatedAt: time.Unix(0, e.CreatedUnixNano).UTC()}
	if err := json.Unmarshal(e.PayloadJson, &ev.Payload); err != nil {
		return nil, err
	}
	return ev, nil
}
