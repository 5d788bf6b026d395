package rules

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// segment is one step of a criteria key: a map key, or a list index when it
// is a non-negative integer (index is -1 otherwise).
type segment struct {
	key   string
	index int
}

// parsePath splits a criteria key such as `trigger.body.items.0.name` or, for
// keys holding dots or spaces, StackStorm's `trigger.headers['X-Request.Id']`.
func parsePath(key string) ([]segment, error) {
	var path []segment
	rest := key
	for {
		var seg string
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, fmt.Errorf("key %q has an unclosed [", key)
			}
			seg, rest = rest[1:end], rest[end+1:]
			if len(seg) >= 2 && (seg[0] == '\'' || seg[0] == '"') && seg[len(seg)-1] == seg[0] {
				seg = seg[1 : len(seg)-1]
			}
		} else {
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			seg, rest = rest[:end], rest[end:]
			if seg == "" {
				return nil, fmt.Errorf("key %q has an empty segment", key)
			}
		}
		index, err := strconv.Atoi(seg)
		if err != nil || index < 0 {
			index = -1
		}
		path = append(path, segment{key: seg, index: index})
		if rest == "" {
			return path, nil
		}
		if rest[0] == '.' {
			if rest = rest[1:]; rest == "" {
				return nil, fmt.Errorf("key %q ends with a dot", key)
			}
		}
	}
}

// lookup follows path from root through maps and lists; ok is false when a
// step is missing.
func lookup(root any, path []segment) (v any, ok bool) {
	v = root
	for _, s := range path {
		switch c := v.(type) {
		case map[string]any:
			if v, ok = c[s.key]; !ok {
				return nil, false
			}
		case []any:
			if s.index < 0 || s.index >= len(c) {
				return nil, false
			}
			v = c[s.index]
		default:
			return nil, false
		}
	}
	return v, true
}

// text is how a value reads as a string: strings as they are, anything else
// as compact JSON, so 2.0 reads "2" and a list reads `["a","b"]`.
func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case time.Time:
		return v.Format(time.RFC3339Nano)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// number reads a Go number of any kind, but not a string.
func number(v any) (float64, bool) {
	if f, ok := v.(float64); ok {
		return f, true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return float64(rv.Uint()), true
	case reflect.Float32, reflect.Float64:
		return rv.Float(), true
	}
	return 0, false
}

// numeric reads a number or a string holding a finite number.
func numeric(v any) (float64, bool) {
	if f, ok := number(v); ok {
		return f, true
	}
	s, ok := v.(string)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
}

// numbers reads a and b as numbers when at least one of them is a number and
// the other a number or a numeric string: StackStorm rules often carry
// `pattern: "2"` for a numeric payload field, or the reverse.
func numbers(a, b any) (x, y float64, ok bool) {
	x, okA := number(a)
	y, okB := number(b)
	if !okA && !okB {
		return 0, 0, false
	}
	if !okA {
		x, okA = numeric(a)
	}
	if !okB {
		y, okB = numeric(b)
	}
	return x, y, okA && okB
}

// equal compares JSON values: numbers numerically (see numbers), a string
// and a boolean by text, lists and maps element by element.
func equal(a, b any) bool {
	if x, y, ok := numbers(a, b); ok {
		return x == y
	}
	sa, isStrA := a.(string)
	sb, isStrB := b.(string)
	if isStrA || isStrB {
		if isStrA && isStrB {
			return sa == sb
		}
		_, isBoolA := a.(bool)
		_, isBoolB := b.(bool)
		return (isBoolA || isBoolB) && text(a) == text(b)
	}
	switch x := a.(type) {
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			if yv, ok := y[k]; !ok || !equal(xv, yv) {
				return false
			}
		}
		return true
	case nil:
		return b == nil
	}
	return false
}

// compare orders numbers (see numbers) and strings; two strings that both
// hold numbers compare as numbers, so "10" is greater than "9". Anything
// else is not comparable.
func compare(a, b any) (int, bool) {
	if x, y, ok := numbers(a, b); ok {
		return cmp.Compare(x, y), true
	}
	sa, okA := a.(string)
	sb, okB := b.(string)
	if !okA || !okB {
		return 0, false
	}
	if x, ok := numeric(sa); ok {
		if y, ok := numeric(sb); ok {
			return cmp.Compare(x, y), true
		}
	}
	return strings.Compare(sa, sb), true
}

// jsonValue converts v to the types encoding/json decodes into, so patterns
// from any decoder and values computed by expressions compare and render
// like payload values.
func jsonValue(v any) (any, error) {
	switch v.(type) {
	case nil, bool, string, float64:
		return v, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	err = json.Unmarshal(b, &out)
	return out, err
}
