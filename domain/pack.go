package domain

import (
	"encoding/json"
	"slices"
	"time"
)

// Pos is a position in a pack file, for error messages.
type Pos struct {
	File string `json:"file"` // relative to the pack directory
	Line int    `json:"line"`
}

// Pack is a loaded pack: metadata plus everything it defines.
type Pack struct {
	Ref         string `json:"ref"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
	// Dir is the pack's directory on disk; empty for the embedded core pack.
	Dir string `json:"dir,omitempty"`
	// Hash is a content hash over every file of the pack, for drift checks.
	Hash string `json:"hash"`
	// Source, InstalledAt and InstalledOn say where the installed pack came
	// from: "embedded" (core), "api", or "dir <path>" for a member's --packs.
	Source      string     `json:"source,omitempty"`
	InstalledAt *time.Time `json:"installed_at,omitempty"`
	InstalledOn string     `json:"installed_on,omitempty"`
	// Members is each member's copy, so drift between members is visible;
	// only GET /api/v1/packs fills it.
	Members  []PackMember `json:"members,omitempty"`
	Actions  []*Action    `json:"actions"`
	Rules    []*Rule      `json:"rules"`
	Triggers []*Trigger   `json:"triggers"`
	Sensors  []*Sensor    `json:"sensors"`
}

// PackMember is one member's copy of a pack.
type PackMember struct {
	Node    string `json:"node"`
	Version string `json:"version,omitempty"`
	Hash    string `json:"hash,omitempty"`
	// State compares the member's copy with the answering node's:
	// same, different, missing (the member has no such pack) or unreachable.
	State string `json:"state"`
	// Error says why the member is unreachable, or why packs it received
	// did not load there.
	Error string `json:"error,omitempty"`
}

// Param is one action parameter, a JSON Schema property plus `secret`.
type Param struct {
	Type        string `json:"type,omitempty"` // string, integer, number, boolean, object, array
	Description string `json:"description,omitempty"`
	Default     any    `json:"default,omitempty"`
	Required    bool   `json:"required,omitempty"`
	Enum        []any  `json:"enum,omitempty"`
	Secret      bool   `json:"secret,omitempty"`
}

// DefaultTimeout applies to actions that name none.
const DefaultTimeout = 600 * time.Second

// Action is a runnable unit: a script or command in a named runtime.
type Action struct {
	Ref         string `json:"ref"` // pack.name
	Pack        string `json:"pack"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Runtime     string `json:"runtime"`
	// EntryPoint is the absolute path of the script, when the action has one.
	EntryPoint string `json:"entry_point,omitempty"`
	// Cmd is a shell command line, for shell actions without a script.
	Cmd        string            `json:"cmd,omitempty"`
	Parameters map[string]*Param `json:"parameters,omitempty"`
	// ParamOrder lists parameter names in file order, for stable output.
	ParamOrder []string      `json:"-"`
	Timeout    time.Duration `json:"-"` // as whole seconds in JSON, like the pack file

	// Retry, when set, runs the action again as a new attempt after some
	// failures.
	Retry *Retry `json:"retry,omitempty"`
	// Schema is the compiled-ready JSON Schema of the parameters object.
	Schema json.RawMessage `json:"-"`
	Pos    Pos             `json:"-"`
}

// MarshalJSON writes the timeout in seconds, as pack files give it; a
// Duration would come out in nanoseconds.
func (a *Action) MarshalJSON() ([]byte, error) {
	type plain Action // drops this method, so no recursion
	return json.Marshal(struct {
		*plain
		Timeout float64 `json:"timeout"`
	}{(*plain)(a), a.Timeout.Seconds()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (a *Action) UnmarshalJSON(b []byte) error {
	type plain Action
	aux := struct {
		*plain
		Timeout float64 `json:"timeout"`
	}{plain: (*plain)(a)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	a.Timeout = time.Duration(aux.Timeout * float64(time.Second))
	return nil
}

// SecretParams lists the names of the action's secret parameters.
func (a *Action) SecretParams() []string {
	var out []string
	for _, n := range a.ParamOrder {
		if p := a.Parameters[n]; p != nil && p.Secret {
			out = append(out, n)
		}
	}
	return out
}

// Retry is an action's retry policy: after a terminal status listed in On,
// the execution is requested again as the next attempt, up to Count more
// attempts, each after Delay.
type Retry struct {
	Count int           `json:"count"`
	On    []Status      `json:"on"`
	Delay time.Duration `json:"-"`
}

// MarshalJSON writes the delay in seconds, as pack files give it.
func (r *Retry) MarshalJSON() ([]byte, error) {
	type plain Retry
	return json.Marshal(struct {
		*plain
		Delay float64 `json:"delay"`
	}{(*plain)(r), r.Delay.Seconds()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Retry) UnmarshalJSON(b []byte) error {
	type plain Retry
	aux := struct {
		*plain
		Delay float64 `json:"delay"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	r.Delay = time.Duration(aux.Delay * float64(time.Second))
	return nil
}

// Allows reports whether an attempt that ended in status may be followed
// by another.
func (r *Retry) Allows(status Status, attempt int) bool {
	return r != nil && attempt <= r.Count && slices.Contains(r.On, status)
}

// Criterion is one StackStorm-style criteria entry: `trigger.body.env: {type: equals, pattern: prod}`.
type Criterion struct {
	Key     string `json:"key"` // dotted path, e.g. trigger.body.env
	Type    string `json:"type"`
	Pattern any    `json:"pattern,omitempty"`
	// Condition is `any` or `all`, for the search operator.
	Condition string `json:"condition,omitempty"`
	// Items holds the nested criteria of the search operator, keyed on item.*.
	Items []Criterion `json:"items,omitempty"`
	Pos   Pos         `json:"-"`
}

// RuleTrigger names the trigger type and instance parameters a rule subscribes to.
type RuleTrigger struct {
	Type       string         `json:"type"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

// RuleAction names the action a rule runs and its parameter templates.
type RuleAction struct {
	Ref        string         `json:"ref"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

// Rule maps events of one trigger instance to executions of one action.
type Rule struct {
	Ref         string      `json:"ref"`
	Pack        string      `json:"pack"`
	Name        string      `json:"name"`
	Description string      `json:"description,omitempty"`
	Enabled     bool        `json:"enabled"`
	Trigger     RuleTrigger `json:"trigger"`
	Criteria    []Criterion `json:"criteria,omitempty"` // in file order, ANDed
	Expression  string      `json:"expression,omitempty"`
	Action      RuleAction  `json:"action"`
	Pos         Pos         `json:"-"`
}

// Trigger is a trigger type: what kind of events exist and what they carry.
type Trigger struct {
	Ref           string          `json:"ref"`
	Pack          string          `json:"pack"`
	Name          string          `json:"name"`
	Description   string          `json:"description,omitempty"`
	PayloadSchema json.RawMessage `json:"payload_schema,omitempty"`
	// ParametersSchema validates rule trigger parameters (core timers, webhook).
	ParametersSchema json.RawMessage `json:"parameters_schema,omitempty"`
	Pos              Pos             `json:"-"`
}

// Sensor is a pack's long-running script that emits events.
type Sensor struct {
	Ref          string   `json:"ref"`
	Pack         string   `json:"pack"`
	Name         string   `json:"name"`
	Description  string   `json:"description,omitempty"`
	Runtime      string   `json:"runtime"`
	EntryPoint   string   `json:"entry_point"` // absolute path
	TriggerTypes []string `json:"trigger_types"`
	Enabled      bool     `json:"enabled"`
	Pos          Pos      `json:"-"`
}
