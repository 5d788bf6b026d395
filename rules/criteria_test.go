package rules

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/troupehq/troupe/domain"
)

// scopeOf decodes a trigger payload the way events carry it.
func scopeOf(t testing.TB, payload string) map[string]any {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal([]byte(payload), &p); err != nil {
		t.Fatalf("decode payload %s: %v", payload, err)
	}
	return map[string]any{"trigger": p}
}

func match(t *testing.T, r *domain.Rule, payload string) bool {
	t.Helper()
	c, err := Compile(r)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	ok, err := c.Match(scopeOf(t, payload))
	if err != nil {
		t.Fatalf("match: %v", err)
	}
	return ok
}

// TestOperators checks each operator on the payload field v; value is the
// JSON of v, or empty when v is missing. Patterns are Go values as a YAML
// decoder produces them (ints, not float64).
func TestOperators(t *testing.T) {
	ago := func(d time.Duration) string { return strconv.Quote(time.Now().Add(-d).UTC().Format(time.RFC3339)) }
	unixAgo := func(d time.Duration) string { return strconv.FormatInt(time.Now().Add(-d).Unix(), 10) }
	tests := []struct {
		typ     string
		pattern any
		value   string
		want    bool
	}{
		{"equals", "prod", `"prod"`, true},
		{"equals", "prod", `"dev"`, false},
		{"equals", 2, `2`, true},
		{"equals", 2, `2.5`, false},
		{"equals", "2", `2`, true},
		{"equals", 2, `"2"`, true},
		{"equals", 2, `"2.0"`, true},
		{"equals", 2, `"two"`, false},
		{"equals", "2", `"2.0"`, false},
		{"equals", true, `true`, true},
		{"equals", "true", `true`, true},
		{"equals", false, `true`, false},
		{"equals", []any{"a", 1}, `["a", 1]`, true},
		{"equals", []any{"a", 1}, `["a", 2]`, false},
		{"equals", map[string]any{"a": 1}, `{"a": 1.0}`, true},
		{"equals", "prod", ``, false},
		{"equals", "prod", `null`, false},
		{"eq", "prod", `"prod"`, true},
		{"EQUALS", "prod", `"prod"`, true},
		{"nequals", "prod", `"dev"`, true},
		{"nequals", "prod", `"prod"`, false},
		{"nequals", 2, `"2"`, false},
		{"nequals", "prod", ``, false},
		{"neq", "prod", `"dev"`, true},
		{"iequals", "PROD", `"prod"`, true},
		{"iequals", "prod", `"production"`, false},
		{"iequals", "x", ``, false},
		{"ieq", "True", `true`, true},
		{"contains", "ro", `"prod"`, true},
		{"contains", "RO", `"prod"`, false},
		{"contains", "b", `["a", "b"]`, true},
		{"contains", "c", `["a", "b"]`, false},
		{"contains", 2, `[1, 2, 3]`, true},
		{"contains", "2", `[1, 2, 3]`, true},
		{"contains", "key", `{"key": 1}`, true},
		{"contains", "one", `{"key": "one"}`, false},
		{"contains", 23, `1234`, true},
		{"contains", "x", ``, false},
		{"icontains", "RO", `"prod"`, true},
		{"icontains", "B", `["a", "b"]`, true},
		{"icontains", "z", `"prod"`, false},
		{"ncontains", "x", `"prod"`, true},
		{"ncontains", "ro", `"prod"`, false},
		{"ncontains", "c", `["a", "b"]`, true},
		{"ncontains", "x", ``, false},
		{"incontains", "X", `"prod"`, true},
		{"incontains", "RO", `"prod"`, false},
		{"startswith", "pr", `"prod"`, true},
		{"startswith", "od", `"prod"`, false},
		{"startswith", 12, `123`, true},
		{"istartswith", "PR", `"prod"`, true},
		{"istartswith", "OD", `"prod"`, false},
		{"endswith", "od", `"prod"`, true},
		{"endswith", "pr", `"prod"`, false},
		{"endswith", ".0", `2.0`, false},
		{"iendswith", "OD", `"prod"`, true},
		{"iendswith", "PR", `"prod"`, false},
		{"lessthan", 3, `2`, true},
		{"lessthan", 2, `2`, false},
		{"lessthan", "3", `2.5`, true},
		{"lessthan", 3, `"2"`, true},
		{"lessthan", "10", `"9"`, true},
		{"lessthan", "b", `"a"`, true},
		{"lessthan", "2024-02-01", `"2024-01-31"`, true},
		{"lessthan", 3, `"x"`, false},
		{"lessthan", 3, `[1]`, false},
		{"lessthan", 3, ``, false},
		{"lt", 3, `2`, true},
		{"greaterthan", 2, `3`, true},
		{"greaterthan", 3, `3`, false},
		{"greaterthan", "2", `3`, true},
		{"greaterthan", 2.5, `"3"`, true},
		{"greaterthan", 2, ``, false},
		{"gt", 2, `3`, true},
		{"matchwildcard", "web-*", `"web-01"`, true},
		{"matchwildcard", "web-*", `"db-01"`, false},
		{"matchwildcard", "*/var/*", `"/a/var/log"`, true},
		{"matchwildcard", "web-??", `"web-01"`, true},
		{"matchwildcard", "web-??", `"web-1"`, false},
		{"matchwildcard", "web-[0-9]*", `"web-7x"`, true},
		{"matchwildcard", "web-[!0-9]*", `"web-7x"`, false},
		{"matchwildcard", "a[-]b", `"a-b"`, true},
		{"matchwildcard", "a.b", `"axb"`, false},
		{"matchwildcard", "[x", `"[x"`, true},
		{"matchwildcard", "a*", "\"a\\nb\"", true},
		{"matchwildcard", "1*", `12`, true},
		{"matchwildcard", "*", ``, false},
		{"matchregex", "^web-\\d+$", `"web-01"`, true},
		{"matchregex", "web", `"my-web"`, false},
		{"matchregex", "a.b", "\"a\\nb\"", true},
		{"matchregex", "x", ``, false},
		{"regex", "web", `"my-web"`, true},
		{"regex", "^web", `"my-web"`, false},
		{"regex", "a.b", "\"a\\nb\"", false},
		{"iregex", "WEB", `"my-web"`, true},
		{"iregex", "^WEB", `"my-web"`, false},
		{"exists", nil, `"x"`, true},
		{"exists", nil, `false`, true},
		{"exists", nil, ``, false},
		{"exists", nil, `null`, false},
		{"nexists", nil, ``, true},
		{"nexists", nil, `null`, true},
		{"nexists", nil, `"x"`, false},
		{"inside", []any{"a", "b"}, `"b"`, true},
		{"inside", []any{"a", "b"}, `"c"`, false},
		{"inside", []any{1, 2}, `"2"`, true},
		{"inside", "production", `"prod"`, true},
		{"inside", "production", `"dev"`, false},
		{"inside", map[string]any{"k": 1}, `"k"`, true},
		{"inside", []any{"a"}, ``, false},
		{"in", []any{"a"}, `"a"`, true},
		{"ninside", []any{"a", "b"}, `"c"`, true},
		{"ninside", []any{"a", "b"}, `"a"`, false},
		{"ninside", []any{"a"}, ``, false},
		{"nin", []any{"a"}, `"c"`, true},
		{"timediff_lt", 60, ago(10 * time.Second), true},
		{"timediff_lt", 60, ago(time.Hour), false},
		{"timediff_lt", "60", unixAgo(10 * time.Second), true},
		{"timediff_lt", 60, `"2024-01-01 10:00:00"`, false},
		{"timediff_lt", 60, `"not a time"`, false},
		{"timediff_lt", 60, ``, false},
		{"td_lt", 60, ago(10 * time.Second), true},
		{"timediff_gt", 60, ago(time.Hour), true},
		{"timediff_gt", 60, ago(10 * time.Second), false},
		{"timediff_gt", 60, unixAgo(time.Hour), true},
		{"timediff_gt", 60, `"2024-01-01T10:00:00.123456"`, true},
		{"timediff_gt", 60, `"2024-01-01"`, true},
		{"timediff_gt", 60, `true`, false},
		{"td_gt", 60, ago(time.Hour), true},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s %v on %s", tt.typ, tt.pattern, tt.value)
		t.Run(name, func(t *testing.T) {
			payload := `{}`
			if tt.value != "" {
				payload = `{"v": ` + tt.value + `}`
			}
			r := &domain.Rule{Criteria: []domain.Criterion{{Key: "trigger.v", Type: tt.typ, Pattern: tt.pattern}}}
			if got := match(t, r, payload); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	payload := `{"body": {"items": [{"name": "a"}, {"name": "b"}], "h": {"X-Id.v": "7"}, "m": {"0": "zero"}}}`
	tests := []struct {
		key  string
		want bool // whether the key resolves to "a", "7" or "zero"
	}{
		{"trigger.body.items.0.name", true},
		{"trigger.body.items[0].name", true},
		{"trigger.body.items.1.name", false},
		{"trigger.body.items.2.name", false},
		{"trigger.body.items.x.name", false},
		{"trigger.body.h['X-Id.v']", true},
		{`trigger.body.h["X-Id.v"]`, true},
		{"trigger.body.m.0", true},
		{"trigger.body.nope.deeper", false},
		{"trigger.body.items.0.name.deeper", false},
		{"other.body", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			r := &domain.Rule{Criteria: []domain.Criterion{{Key: tt.key, Type: "inside", Pattern: []any{"a", "7", "zero"}}}}
			if got := match(t, r, payload); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSearch(t *testing.T) {
	items := []domain.Criterion{
		{Key: "item.field", Type: "equals", Pattern: "Status"},
		{Key: "item.to", Type: "equals", Pattern: "Approved"},
	}
	tests := []struct {
		name, condition, value string
		want                   bool
	}{
		{"any one matches", "any", `[{"field": "Status", "to": "Approved"}, {"field": "Owner", "to": "bob"}]`, true},
		{"any none matches", "any", `[{"field": "Status", "to": "Open"}, {"field": "Owner", "to": "Approved"}]`, false},
		{"any empty", "any", `[]`, false},
		{"all match", "all", `[{"field": "Status", "to": "Approved"}, {"field": "Status", "to": "Approved"}]`, true},
		{"all one fails", "all", `[{"field": "Status", "to": "Approved"}, {"field": "Owner", "to": "bob"}]`, false},
		{"all empty", "all", `[]`, true},
		{"not a list", "any", `{"field": "Status", "to": "Approved"}`, false},
		{"missing", "any", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := `{}`
			if tt.value != "" {
				payload = `{"fields": ` + tt.value + `}`
			}
			r := &domain.Rule{Criteria: []domain.Criterion{{Key: "trigger.fields", Type: "search", Condition: tt.condition, Items: items}}}
			if got := match(t, r, payload); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCriteriaAreANDed(t *testing.T) {
	r := &domain.Rule{Criteria: []domain.Criterion{
		{Key: "trigger.env", Type: "equals", Pattern: "prod"},
		{Key: "trigger.count", Type: "greaterthan", Pattern: 2},
	}}
	tests := []struct {
		payload string
		want    bool
	}{
		{`{"env": "prod", "count": 3}`, true},
		{`{"env": "prod", "count": 1}`, false},
		{`{"env": "dev", "count": 3}`, false},
		{`{}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.payload, func(t *testing.T) {
			if got := match(t, r, tt.payload); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOperatorsListsEveryBuilder(t *testing.T) {
	if len(Operators) != len(builders) {
		t.Fatalf("Operators has %d names, builders %d", len(Operators), len(builders))
	}
	for _, op := range []string{"equals", "search", "timediff_lt", "in", "matchwildcard"} {
		if _, ok := builders[op]; !ok {
			t.Errorf("operator %s is missing", op)
		}
	}
}
