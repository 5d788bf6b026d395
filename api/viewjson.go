package api

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/internal/jsonappend"
)

// appendExecution appends v's JSON, the bytes json.Marshal(v) gives, to b.
// The stream sends every execution its node finishes, and encoding/json
// spent ~5 % of a node's CPU on them under load: reflection over each
// field, and a validating copy of what time.Time's MarshalJSON returns for
// each of three times. ExecutionView's struct tags stay the definition;
// TestAppendExecutionIsMarshal holds this function to them. What it cannot
// write as json.Marshal would (a time outside years 0-9999, a parameter of
// a type JSON decoding does not build, output that json.Marshal would
// compact or escape) it leaves to json.Marshal.
func appendExecution(b []byte, v *ExecutionView) ([]byte, error) {
	start := len(b)
	b, ok := appendView(b, v)
	if ok {
		return b, nil
	}
	enc, err := json.Marshal(v)
	return append(b[:start], enc...), err
}

func appendView(b []byte, v *ExecutionView) ([]byte, bool) {
	b = append(b, `{"id":`...)
	b = appendID(b, v.ID)
	b = appendKey(b, "action")
	b = jsonappend.String(b, v.Action)
	b = appendKey(b, "runtime")
	b = jsonappend.String(b, v.Runtime)
	b = appendKey(b, "status")
	b = jsonappend.String(b, string(v.Status))
	b = appendKey(b, "parameters")
	var ok bool
	if b, ok = jsonappend.Value(b, v.Parameters); !ok {
		return b, false
	}
	b = appendKey(b, "attempt")
	b = strconv.AppendInt(b, int64(v.Attempt), 10)
	if v.Rule != "" {
		b = appendKey(b, "rule")
		b = jsonappend.String(b, v.Rule)
	}
	if !v.Event.IsZero() {
		b = appendKey(b, "event")
		b = appendID(b, v.Event)
	}
	if !v.Enforcement.IsZero() {
		b = appendKey(b, "enforcement")
		b = appendID(b, v.Enforcement)
	}
	b = appendKey(b, "node")
	b = jsonappend.String(b, v.Node)
	if v.Worker != "" {
		b = appendKey(b, "worker")
		b = jsonappend.String(b, v.Worker)
	}
	for _, t := range [...]struct {
		key string
		at  *time.Time
	}{{"created_at", &v.CreatedAt}, {"started_at", v.StartedAt}, {"finished_at", v.FinishedAt}} {
		b = appendKey(b, t.key)
		if b, ok = appendTime(b, t.at); !ok {
			return b, false
		}
	}
	if v.Error != "" {
		b = appendKey(b, "error")
		b = jsonappend.String(b, v.Error)
	}
	b = appendKey(b, "result")
	if r := v.Result; r == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"exit_code":`...)
		b = strconv.AppendInt(b, int64(r.ExitCode), 10)
		b = appendKey(b, "stdout")
		b = jsonappend.String(b, r.Stdout)
		b = appendKey(b, "stderr")
		b = jsonappend.String(b, r.Stderr)
		if len(r.Output) > 0 {
			b = appendKey(b, "output")
			var ok bool
			if b, ok = jsonappend.Raw(b, r.Output); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	if !v.RerunOf.IsZero() {
		b = appendKey(b, "rerun_of")
		b = appendID(b, v.RerunOf)
	}
	if len(v.History) > 0 {
		h, err := json.Marshal(v.History)
		if err != nil {
			return b, false
		}
		b = appendKey(b, "history")
		b = append(b, h...)
	}
	return append(b, '}'), true
}

// appendKey appends `,"key":`; keys are plain ASCII, as struct tags are.
func appendKey(b []byte, key string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendID(b []byte, id domain.ID) []byte {
	b = append(b, '"')
	b = append(b, id.String()...)
	return append(b, '"')
}

// appendTime writes t as json.Marshal does, or null for nil.
func appendTime(b []byte, t *time.Time) ([]byte, bool) {
	if t == nil {
		return append(b, "null"...), true
	}
	return jsonappend.Time(b, *t)
}
