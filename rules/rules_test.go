package rules

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/troupehq/troupe/domain"
)

func TestExpression(t *testing.T) {
	const payload = `{"body": {"env": "prod", "count": 3, "tags": ["a"]}}`
	tests := []struct {
		expression string
		criteria   []domain.Criterion
		want       bool
		wantErr    string
	}{
		{expression: `trigger.body.env == "prod" && trigger.body.count > 2`, want: true},
		{expression: `trigger.body.env == "prod" && trigger.body.count > 5`, want: false},
		{expression: `"a" in trigger.body.tags`, want: true},
		{expression: `trigger.body.missing.deeper == "x"`, want: false},
		{expression: `trigger.body.missing`, want: false},
		{expression: `trigger.body.env > 2`, wantErr: "evaluate expression: invalid operation: string > int (column 18)"},
		{expression: `trigger.body.env`, wantErr: "evaluate expression: invalid operation: bool(string)"},
		{
			expression: `trigger.body.count > 2`,
			criteria:   []domain.Criterion{{Key: "trigger.body.env", Type: "equals", Pattern: "dev"}},
			want:       false,
		},
		{
			expression: `trigger.body.count > 2`,
			criteria:   []domain.Criterion{{Key: "trigger.body.env", Type: "equals", Pattern: "prod"}},
			want:       true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.expression, func(t *testing.T) {
			c, err := Compile(&domain.Rule{Expression: tt.expression, Criteria: tt.criteria})
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			got, err := c.Match(scopeOf(t, payload))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	rulePos := domain.Pos{File: "rules/r.yaml", Line: 1}
	critPos := domain.Pos{File: "rules/r.yaml", Line: 9}
	crit := func(c domain.Criterion) []domain.Criterion {
		c.Pos = critPos
		return []domain.Criterion{c}
	}
	type fieldErr struct {
		pos   domain.Pos
		field string
		msg   string // substring
	}
	tests := []struct {
		name string
		rule domain.Rule
		want []fieldErr
	}{
		{
			name: "unknown operator with suggestion",
			rule: domain.Rule{Criteria: crit(domain.Criterion{Key: "trigger.body.env", Type: "equal", Pattern: "prod"})},
			want: []fieldErr{{critPos, `criteria."trigger.body.env".type`, `unknown criteria type "equal" (did you mean equals?)`}},
		},
		{
			name: "unknown operator without suggestion",
			rule: domain.Rule{Criteria: crit(domain.Criterion{Key: "trigger.x", Type: "frobnicate", Pattern: "p"})},
			want: []fieldErr{{critPos, `criteria."trigger.x".type`, `unknown criteria type "frobnicate" (known: contains, endswith, eq,`}},
		},
		{
			name: "bad regex",
			rule: domain.Rule{Criteria: crit(domain.Criterion{Key: "trigger.x", Type: "matchregex", Pattern: "web-(\\d+"})},
			want: []fieldErr{{critPos, `criteria."trigger.x".pattern`, "invalid regular expression: error parsing regexp: missing closing ): `web-(\\d+`"}},
		},
		{
			name: "missing pattern",
			rule: domain.Rule{Criteria: crit(domain.Criterion{Key: "trigger.x", Type: "equals"})},
			want: []fieldErr{{critPos, `criteria."trigger.x".pattern`, "equals needs a pattern"}},
		},
		{
			name: "pattern of the wrong kind",
			rule: domain.Rule{Criteria: crit(domain.Criterion{Key: "trigger.x", Type: "timediff_lt", Pattern: "soon"})},
			want: []fieldErr{{critPos, `criteria."trigger.x".pattern`, "pattern must be a number of seconds"}},
		},
		{
			name: "bad key",
			rule: domain.Rule{Criteria: crit(domain.Criterion{Key: "trigger..x", Type: "exists"})},
			want: []fieldErr{{critPos, `criteria."trigger..x"`, "empty segment"}},
		},
		{
			name: "bad key and bad type",
			rule: domain.Rule{Criteria: crit(domain.Criterion{Key: "trigger.x[0", Type: "equalz", Pattern: 1})},
			want: []fieldErr{
				{critPos, `criteria."trigger.x[0"`, "unclosed ["},
				{critPos, `criteria."trigger.x[0".type`, "did you mean equals?"},
			},
		},
		{
			name: "condition outside search",
			rule: domain.Rule{Criteria: crit(domain.Criterion{Key: "trigger.x", Type: "equals", Pattern: 1, Condition: "any"})},
			want: []fieldErr{{critPos, `criteria."trigger.x"`, "condition and items belong to the search type"}},
		},
		{
			name: "bad search",
			rule: domain.Rule{Criteria: crit(domain.Criterion{Key: "trigger.f", Type: "search", Condition: "some", Items: []domain.Criterion{
				{Key: "trigger.name", Type: "equals", Pattern: "a", Pos: domain.Pos{File: "rules/r.yaml", Line: 12}},
				{Key: "item.name", Type: "regex", Pattern: "(", Pos: domain.Pos{File: "rules/r.yaml", Line: 14}},
			}})},
			want: []fieldErr{
				{critPos, `criteria."trigger.f".condition`, `search condition "some" is neither any nor all`},
				{domain.Pos{File: "rules/r.yaml", Line: 12}, `criteria."trigger.f".items."trigger.name"`, `must start with "item."`},
				{domain.Pos{File: "rules/r.yaml", Line: 14}, `criteria."trigger.f".items."item.name".pattern`, "invalid regular expression"},
			},
		},
		{
			name: "bad expression",
			rule: domain.Rule{Pos: rulePos, Expression: `trigger.body.env ==`},
			want: []fieldErr{{rulePos, "expression", "unexpected token EOF (column 19)"}},
		},
		{
			name: "expression not boolean",
			rule: domain.Rule{Pos: rulePos, Expression: `len(trigger.body.tags)`},
			want: []fieldErr{{rulePos, "expression", "expected bool, but got int"}},
		},
		{
			name: "bad templates",
			rule: domain.Rule{Pos: rulePos, Action: domain.RuleAction{Parameters: map[string]any{
				"user":  "{{ trigger.body. }}",
				"hosts": []any{"ok", "{{ trigger.x"},
				"cmd":   "{% if trigger.x %}y{% endif %}",
				"empty": "a {{ }} b",
			}}},
			want: []fieldErr{
				{rulePos, "action.parameters.cmd", "{% %} blocks are not supported"},
				{rulePos, "action.parameters.empty", "empty {{ }}"},
				{rulePos, "action.parameters.hosts.1", "unclosed {{"},
				{rulePos, "action.parameters.user", "template {{ trigger.body. }}: "},
			},
		},
		{
			// Jinja filters compile in expr as calls of undeclared functions;
			// rendering them would fail with "cannot call nil" every time.
			name: "unknown names",
			rule: domain.Rule{Pos: rulePos, Expression: `trigger.body.env | default("dev") == "prod"`, Action: domain.RuleAction{Parameters: map[string]any{
				"a": `{{ trigger.body.user | default('guest') }}`,
				"b": "{{ triger.body.user }}",
				"c": "x {{ xyzzy(trigger.body) }}",
				"d": "{{ trigger.body.tags | tojson() }}",
			}}},
			want: []fieldErr{
				{rulePos, "expression", `unknown name default (column 20): use ?? for defaults: x ?? "y"`},
				{rulePos, "action.parameters.a", `template {{ trigger.body.user | default('guest') }}: unknown name default (column 21): use ?? for defaults: {{ x ?? "y" }}`},
				{rulePos, "action.parameters.b", "template {{ triger.body.user }}: unknown name triger (column 1): did you mean trigger?"},
				{rulePos, "action.parameters.c", "template {{ xyzzy(trigger.body) }}: unknown name xyzzy (column 1): a rule can name trigger and expr's builtin functions"},
				{rulePos, "action.parameters.d", "template {{ trigger.body.tags | tojson() }}: unknown name tojson (column 21): did you mean toJSON?"},
			},
		},
		{
			name: "every problem at once",
			rule: domain.Rule{
				Pos:        rulePos,
				Criteria:   crit(domain.Criterion{Key: "trigger.x", Type: "regexp", Pattern: "a"}),
				Expression: `(`,
				Action:     domain.RuleAction{Parameters: map[string]any{"p": "{{ ) }}"}},
			},
			want: []fieldErr{
				{critPos, `criteria."trigger.x".type`, "did you mean regex?"},
				{rulePos, "expression", ""},
				{rulePos, "action.parameters.p", ""},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Compile(&tt.rule)
			if err == nil {
				t.Fatalf("compiled %+v, want errors", c)
			}
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("error %v is not a join", err)
			}
			errs := joined.Unwrap()
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tt.want), err)
			}
			for i, w := range tt.want {
				var fe *domain.FieldError
				if !errors.As(errs[i], &fe) {
					t.Fatalf("error %d %v is not a *domain.FieldError", i, errs[i])
				}
				if fe.Pos != w.pos || fe.Field != w.field || !strings.Contains(fe.Msg, w.msg) {
					t.Errorf("error %d: got %+v, want pos %v field %s msg containing %q", i, fe, w.pos, w.field, w.msg)
				}
			}
		})
	}
}

// BenchmarkMatch shows that matching does no compiling: regular expressions
// and expressions are built once by Compile.
func BenchmarkMatch(b *testing.B) {
	criteria := []domain.Criterion{
		{Key: "trigger.body.env", Type: "equals", Pattern: "prod"},
		{Key: "trigger.body.host", Type: "matchregex", Pattern: `web-\d+`},
		{Key: "trigger.body.count", Type: "greaterthan", Pattern: 2},
	}
	scope := scopeOf(b, `{"body": {"env": "prod", "host": "web-17", "count": 3}}`)
	for _, bc := range []struct {
		name string
		rule domain.Rule
	}{
		{"criteria", domain.Rule{Criteria: criteria}},
		{"expression", domain.Rule{Expression: `trigger.body.env == "prod" && trigger.body.host matches "^web-\\d+" && trigger.body.count > 2`}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := Compile(&bc.rule)
			if err != nil {
				b.Fatalf("compile: %v", err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := c.Match(scope); !ok || err != nil {
					b.Fatalf("match: %v, %v", ok, err)
				}
			}
		})
	}
}

// TestConcurrentUse lets the race detector check that a Compiled is shared
// safely between the goroutines of a rule actor.
func TestConcurrentUse(t *testing.T) {
	c, err := Compile(&domain.Rule{
		Criteria:   []domain.Criterion{{Key: "trigger.body.host", Type: "matchwildcard", Pattern: "web-*"}},
		Expression: `trigger.body.count > 2`,
		Action:     domain.RuleAction{Parameters: map[string]any{"host": "{{ trigger.body.host }}", "tags": []any{"{{ trigger.body.count }}"}}},
	})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	scopes := make([]map[string]any, 8)
	for i := range scopes {
		scopes[i] = scopeOf(t, fmt.Sprintf(`{"body": {"host": "web-%d", "count": %d}}`, i, i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(scopes))
	for i, scope := range scopes {
		wg.Go(func() {
			ok, err := c.Match(scope)
			if err == nil && ok != (i > 2) {
				err = fmt.Errorf("match of count %d: got %v", i, ok)
			}
			if err == nil {
				var params map[string]any
				if params, err = c.Render(scope); err == nil && params["host"] != fmt.Sprintf("web-%d", i) {
					err = fmt.Errorf("render of host web-%d: got %v", i, params["host"])
				}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
