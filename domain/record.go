package domain

import (
	"encoding/json"
	"time"
)

// Event is something a sensor or webhook observed, durably accepted once.
type Event struct {
	ID ID `json:"id"`
	// Trigger is the trigger type ref, e.g. "core.webhook".
	Trigger string `json:"trigger"`
	// Instance identifies the trigger instance (type + parameters) that
	// produced the event; rules subscribe to instances. See TriggerInstance.
	Instance string `json:"instance,omitempty"`
	// Payload is what rules see as `trigger`.
	Payload   map[string]any `json:"payload"`
	Source    string         `json:"source,omitempty"` // e.g. "sensor core.intervaltimer", "webhook hello"
	Node      string         `json:"node,omitempty"`   // the node that accepted it
	CreatedAt time.Time      `json:"created_at"`
}

// EnforcementStatus is the outcome of applying one rule to one event.
type EnforcementStatus string

const (
	EnforcementSucceeded EnforcementStatus = "succeeded" // an execution was created
	EnforcementFailed    EnforcementStatus = "failed"    // e.g. rendered parameters were invalid
)

// Enforcement records that a rule matched an event.
type Enforcement struct {
	ID        ID                `json:"id"`
	Event     ID                `json:"event"`
	Rule      string            `json:"rule"`
	Action    string            `json:"action"`
	Status    EnforcementStatus `json:"status"`
	Error     string            `json:"error,omitempty"`
	Execution ID                `json:"execution,omitzero"`
	Node      string            `json:"node,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
}

// Result is what running an action produced.
type Result struct {
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	// Output is stdout parsed as JSON when stdout is one JSON document, or
	// the structured result of a builtin action.
	Output json.RawMessage `json:"output,omitempty"`
}

// HistoryEntry is one committed transition.
type HistoryEntry struct {
	Status  Status    `json:"status"`
	At      time.Time `json:"at"`
	Attempt int       `json:"attempt"`
	Seq     uint64    `json:"seq"`
	Node    string    `json:"node,omitempty"` // worker node for scheduled/running, else owner
	Error   string    `json:"error,omitempty"`
}

// Execution is the current record of one run of an action.
type Execution struct {
	ID      ID     `json:"id"`
	Action  string `json:"action"`
	Runtime string `json:"runtime"`
	Status  Status `json:"status"`
	// Parameters are the validated parameters, defaults applied.
	Parameters map[string]any `json:"parameters"`
	Attempt    int            `json:"attempt"`
	// Seq increases by one with every committed transition.
	Seq         uint64     `json:"seq"`
	Rule        string     `json:"rule,omitempty"`
	Event       ID         `json:"event,omitzero"`
	Enforcement ID         `json:"enforcement,omitzero"`
	Node        string     `json:"node"`             // the owning node
	Worker      string     `json:"worker,omitempty"` // the node that ran it
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	Error       string     `json:"error,omitempty"`
	Result      *Result    `json:"result,omitempty"`
	// Secret lists parameter names whose values must never be shown.
	Secret []string `json:"secret,omitempty"`
	// RerunOf is the execution this one runs again, when it was created by
	// a re-run of it.
	RerunOf ID `json:"rerun_of,omitzero"`
}
