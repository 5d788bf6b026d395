package api

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/troupehq/troupe/domain"
)

// appendExecution appends v's JSON, the bytes json.Marshal(v) gives, to b.
// The stream sends every execution its node finishes, and encoding/json
// spent ~5 % of a node's CPU on them under load: reflection over each
// field, and a validating copy of what time.Time's MarshalJSON returns for
// each of three times. ExecutionView's struct tags stay the definition;
// TestAppendExecutionIsMarshal holds this function to them. What it cannot
// write as json.Marshal would (a time outside years 0-9999, output that is
// not JSON) it leaves to json.Marshal.
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
	b = appendString(b, v.Action)
	b = appendKey(b, "runtime")
	b = appendString(b, v.Runtime)
	b = appendKey(b, "status")
	b = appendString(b, string(v.Status))
	b = appendKey(b, "parameters")
	switch {
	case v.Parameters == nil:
		b = append(b, "null"...)
	case len(v.Parameters) == 0:
		b = append(b, "{}"...)
	default:
		p, err := json.Marshal(v.Parameters)
		if err != nil {
			return b, false
		}
		b = append(b, p...)
	}
	b = appendKey(b, "attempt")
	b = strconv.AppendInt(b, int64(v.Attempt), 10)
	if v.Rule != "" {
		b = appendKey(b, "rule")
		b = appendString(b, v.Rule)
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
	b = appendString(b, v.Node)
	if v.Worker != "" {
		b = appendKey(b, "worker")
		b = appendString(b, v.Worker)
	}
	ok := true
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
		b = appendString(b, v.Error)
	}
	b = appendKey(b, "result")
	if r := v.Result; r == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"exit_code":`...)
		b = strconv.AppendInt(b, int64(r.ExitCode), 10)
		b = appendKey(b, "stdout")
		b = appendString(b, r.Stdout)
		b = appendKey(b, "stderr")
		b = appendString(b, r.Stderr)
		if len(r.Output) > 0 {
			// json.Marshal compacts a RawMessage and escapes it as it
			// escapes strings; most outputs need neither.
			if !json.Valid(r.Output) || !plainJSON(r.Output) {
				return b, false
			}
			b = appendKey(b, "output")
			b = append(b, r.Output...)
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

// appendTime writes t as time.Time's MarshalJSON does, or null for nil; it
// fails for a year MarshalJSON refuses.
func appendTime(b []byte, t *time.Time) ([]byte, bool) {
	if t == nil {
		return append(b, "null"...), true
	}
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}

// plainJSON reports whether valid JSON j is as json.Marshal would copy a
// RawMessage: no whitespace outside strings, nothing HTML-escaped (<, >,
// &) and no byte that may start U+2028 or U+2029, anywhere.
func plainJSON(j []byte) bool {
	in := false
	for i := 0; i < len(j); i++ {
		switch c := j[i]; {
		case c == '<' || c == '>' || c == '&' || c == 0xE2:
			return false
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case !in && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
}

const hexDigits = "0123456789abcdef"

// appendString appends s quoted as encoding/json quotes strings by default:
// HTML-safe (<, > and & escaped), U+2028 and U+2029 escaped, invalid UTF-8
// replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
