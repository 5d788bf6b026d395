package rules

import (
	"reflect"
	"strings"
	"testing"

	"github.com/troupehq/troupe/domain"
)

func TestRender(t *testing.T) {
	const payload = `{"body": {"user": "ann", "count": 3, "ratio": 0.5, "ok": true, "none": null,
		"tags": ["a", "b"], "meta": {"k": "v", "n": 1}, "html": "<b>&</b>"}}`
	tests := []struct {
		name    string
		param   any
		want    any
		wantErr string // substring of the error; empty when rendering succeeds
	}{
		{"int keeps type", "{{ trigger.body.count }}", 3.0, ""},
		{"float keeps type", "{{trigger.body.ratio}}", 0.5, ""},
		{"bool keeps type", "{{ trigger.body.ok }}", true, ""},
		{"map keeps type", "{{ trigger.body.meta }}", map[string]any{"k": "v", "n": 1.0}, ""},
		{"list keeps type", "{{ trigger.body.tags }}", []any{"a", "b"}, ""},
		{"string", "{{ trigger.body.user }}", "ann", ""},
		{"computed int", "{{ len(trigger.body.tags) + 1 }}", 3.0, ""},
		{"map literal", `{{ {"u": trigger.body.user, "n": {"c": 1}} }}`, map[string]any{"u": "ann", "n": map[string]any{"c": 1.0}}, ""},
		{"outer whitespace makes text", " {{ trigger.body.count }}", " 3", ""},
		{"mixed", "hi {{ trigger.body.user }}, {{ trigger.body.count }} x {{ trigger.body.ratio }}", "hi ann, 3 x 0.5", ""},
		{"mixed json", "{{ trigger.body.tags }}/{{ trigger.body.meta }}/{{ trigger.body.ok }}", `["a","b"]/{"k":"v","n":1}/true`, ""},
		{"mixed no html escape", "<{{ trigger.body.html }}>", "<<b>&</b>>", ""},
		{"braces in strings", `{{ "}}" + trigger.body.user }}`, "}}ann", ""},
		{"default when missing", `{{ trigger.body.nobody ?? "guest" }}`, "guest", ""},
		{"default when deeply missing", `{{ trigger.nope.deeper.user ?? "guest" }}`, "guest", ""},
		{"default when null", `{{ trigger.body.none ?? 7 }}`, 7.0, ""},
		{"default not used", `{{ trigger.body.user ?? "guest" }}`, "ann", ""},
		{"pipe to a builtin", `{{ trigger.body.user | upper() }}`, "ANN", ""},
		{"builtin on a missing key", `{{ trigger.body.nobody | upper() }}`, nil, "{{ trigger.body.nobody | upper() }}: "},
		{"no template", "plain {not} }}", "plain {not} }}", ""},
		{"non-string passes", 42, 42, ""},
		{"nested", map[string]any{"to": []any{"{{ trigger.body.user }}", "root"}, "n": "{{ trigger.body.count }}"},
			map[string]any{"to": []any{"ann", "root"}, "n": 3.0}, ""},
		{"missing", "{{ trigger.body.nobody }}", nil,
			`render action.parameters.p: {{ trigger.body.nobody }} is null or missing; use {{ trigger.body.nobody ?? "default" }} for a default`},
		{"null", "x{{ trigger.body.none }}", nil, "{{ trigger.body.none }} is null or missing"},
		{"nested missing", map[string]any{"a": []any{"{{ trigger.x.y }}"}}, nil, "render action.parameters.p.a.0: {{ trigger.x.y }} is null"},
		{"runtime error", "{{ trigger.body.user + 1 }}", nil, "render action.parameters.p: {{ trigger.body.user + 1 }}: invalid operation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &domain.Rule{Action: domain.RuleAction{Parameters: map[string]any{"p": tt.param}}}
			c, err := Compile(r)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			got, err := c.Render(scopeOf(t, payload))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			if !reflect.DeepEqual(got["p"], tt.want) {
				t.Errorf("got %#v, want %#v", got["p"], tt.want)
			}
		})
	}
}

func TestRenderDoesNotAlias(t *testing.T) {
	params := map[string]any{"list": []any{"a"}, "m": map[string]any{"k": "v"}}
	c, err := Compile(&domain.Rule{Action: domain.RuleAction{Parameters: params}})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	scope := scopeOf(t, `{}`)
	first, err := c.Render(scope)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	first["list"].([]any)[0] = "changed"
	first["m"].(map[string]any)["k"] = "changed"
	second, err := c.Render(scope)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	if !reflect.DeepEqual(second, params) {
		t.Errorf("second render %v, want %v", second, params)
	}
}

func TestRenderNoParameters(t *testing.T) {
	c, err := Compile(&domain.Rule{})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	got, err := c.Render(scopeOf(t, `{}`))
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("got %v, %v; want an empty map", got, err)
	}
}
