package rules

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"github.com/troupehq/troupe/domain"
)

// node is a compiled action parameter value.
type node interface {
	render(scope map[string]any) (any, error)
}

type literal struct{ v any }

// object keeps its keys sorted so the first error reported is always the same.
type object struct {
	keys []string
	vals []node
}

type list []node

// template is a string holding `{{ expr }}` parts.
type template struct {
	path  string // e.g. action.parameters.user, for errors
	parts []part
}

// part is literal text when prog is nil, else an expression.
type part struct {
	text string
	prog *vm.Program
}

// compileValue compiles the parameter value v found at path, reporting every
// bad template as a FieldError at pos.
func compileValue(v any, path string, pos domain.Pos) (node, []error) {
	switch v := v.(type) {
	case string:
		if !strings.Contains(v, "{{") && !strings.Contains(v, "{%") {
			return literal{v}, nil
		}
		t, err := compileTemplate(v, path)
		if err != nil {
			return nil, []error{&domain.FieldError{Pos: pos, Field: path, Msg: err.Error()}}
		}
		return t, nil
	case map[string]any:
		o := object{keys: slices.Sorted(maps.Keys(v))}
		var errs []error
		for _, k := range o.keys {
			n, kerrs := compileValue(v[k], path+"."+k, pos)
			o.vals, errs = append(o.vals, n), append(errs, kerrs...)
		}
		return o, errs
	case []any:
		l := make(list, len(v))
		var errs []error
		for i, e := range v {
			var ierrs []error
			l[i], ierrs = compileValue(e, path+"."+strconv.Itoa(i), pos)
			errs = append(errs, ierrs...)
		}
		return l, errs
	}
	return literal{v}, nil
}

func compileTemplate(s, path string) (*template, error) {
	if strings.Contains(s, "{%") {
		return nil, fmt.Errorf("template %q: {%% %%} blocks are not supported; use an expression such as {{ cond ? a : b }}", s)
	}
	t := &template{path: path}
	for rest := s; rest != ""; {
		start := strings.Index(rest, "{{")
		if start < 0 {
			t.parts = append(t.parts, part{text: rest})
			break
		}
		if start > 0 {
			t.parts = append(t.parts, part{text: rest[:start]})
		}
		rest = rest[start+2:]
		end := closing(rest)
		if end < 0 {
			return nil, fmt.Errorf("template %q: unclosed {{", s)
		}
		code := strings.TrimSpace(rest[:end])
		if code == "" {
			return nil, fmt.Errorf("template %q: empty {{ }}", s)
		}
		prog, err := compileExpr(code, true)
		if err != nil {
			return nil, fmt.Errorf("template {{ %s }}: %w", code, err)
		}
		t.parts = append(t.parts, part{text: code, prog: prog})
		rest = rest[end+2:]
	}
	return t, nil
}

// closing returns the offset of the `}}` that ends the expression s starts
// with, or -1. Braces and quoted strings inside are skipped, since expr map
// literals nest braces: {{ {"a": {"b": 1}} }}.
func closing(s string) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\'', '`':
			for i++; i < len(s) && s[i] != c; i++ {
				if s[i] == '\\' && c != '`' {
					i++
				}
			}
		case '{':
			depth++
		case '}':
			if depth > 0 {
				depth--
			} else if i+1 < len(s) && s[i+1] == '}' {
				return i
			}
		}
	}
	return -1
}

func (l literal) render(map[string]any) (any, error) { return l.v, nil }

func (o object) render(scope map[string]any) (any, error) {
	out := make(map[string]any, len(o.keys))
	for i, k := range o.keys {
		v, err := o.vals[i].render(scope)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

func (l list) render(scope map[string]any) (any, error) {
	out := make([]any, len(l))
	for i, n := range l {
		v, err := n.render(scope)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// render keeps the JSON type of a template that is one expression and
// nothing else; otherwise it interpolates the text of each value.
func (t *template) render(scope map[string]any) (any, error) {
	if len(t.parts) == 1 && t.parts[0].prog != nil {
		return t.eval(&t.parts[0], scope)
	}
	var b strings.Builder
	for i := range t.parts {
		p := &t.parts[i]
		if p.prog == nil {
			b.WriteString(p.text)
			continue
		}
		v, err := t.eval(p, scope)
		if err != nil {
			return nil, err
		}
		b.WriteString(text(v))
	}
	return b.String(), nil
}

func (t *template) eval(p *part, scope map[string]any) (any, error) {
	v, err := expr.Run(p.prog, scope)
	if err != nil {
		return nil, fmt.Errorf("render %s: {{ %s }}: %w", t.path, p.text, flatten(err))
	}
	if v == nil {
		return nil, fmt.Errorf("render %s: {{ %s }} is null or missing; use {{ %s ?? \"default\" }} for a default",
			t.path, p.text, p.text)
	}
	if v, err = jsonValue(v); err != nil {
		return nil, fmt.Errorf("render %s: {{ %s }}: %w", t.path, p.text, err)
	}
	return v, nil
}

// scopeEnv declares what code in a rule may name: the trigger payload, as a
// map, besides expr's builtins. Anything else, such as a Jinja filter
// (`x | default("y")` is a call of default in expr), is then an error at
// Compile rather than "cannot call nil" whenever the rule fires. The keys of
// the payload are not declared: a missing one is null at run time.
var scopeEnv = expr.Env(map[string]any{"trigger": map[string]any{}})

// scopeNames are the names scopeEnv allows, for did-you-mean hints, by
// their lower-case form (Jinja's tojson is expr's toJSON); lowerNames are
// those keys, sorted so that the hint is the same every time.
var (
	scopeNames = func() map[string]string {
		m := map[string]string{"trigger": "trigger"}
		for _, n := range builtin.Names {
			m[strings.ToLower(n)] = n
		}
		return m
	}()
	lowerNames = slices.Sorted(maps.Keys(scopeNames))
)

// compileExpr compiles an expr-lang expression whose member accesses are all
// nil-safe: payloads are schemaless, so `trigger.body.user.name` with no
// user is null rather than an error, and `?? "default"` covers any depth.
// inTemplate says how to write the hint for an unknown name.
func compileExpr(code string, inTemplate bool, opts ...expr.Option) (*vm.Program, error) {
	p, err := expr.Compile(code, append(opts, scopeEnv, expr.Patch(nilSafe{}))...)
	if err != nil {
		return nil, withHint(err, inTemplate)
	}
	return p, nil
}

// withHint flattens a compile error and, for an unknown name, says what to
// write instead.
func withHint(err error, inTemplate bool) error {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return err
	}
	name, unknown := strings.CutPrefix(fe.Message, "unknown name ")
	switch {
	case !unknown:
		return flatten(err)
	case name == "default":
		if inTemplate {
			return fmt.Errorf(`%w: use ?? for defaults: {{ x ?? "y" }}`, flatten(err))
		}
		return fmt.Errorf(`%w: use ?? for defaults: x ?? "y"`, flatten(err))
	}
	if s := domain.Suggest(strings.ToLower(name), lowerNames); s != "" {
		return fmt.Errorf("%w: did you mean %s?", flatten(err), scopeNames[s])
	}
	return fmt.Errorf("%w: a rule can name trigger and expr's builtin functions", flatten(err))
}

type nilSafe struct{}

func (nilSafe) Visit(n *ast.Node) {
	if m, ok := (*n).(*ast.MemberNode); ok && !m.Method && !m.Optional {
		m.Optional = true
		// The compiler only honours Optional inside a chain, which is where
		// a nil short-circuits to.
		ast.Patch(n, &ast.ChainNode{Node: m})
	}
}

// flatten turns expr's multi-line error (message, source line, caret) into
// one line, fit for a pack error listing or an enforcement record.
func flatten(err error) error {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return err
	}
	return fmt.Errorf("%s (column %d)", fe.Message, fe.Column+1)
}
