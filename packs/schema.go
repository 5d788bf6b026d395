package packs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/troupehq/troupe/domain"
)

var printer = message.NewPrinter(language.English)

// paramTypes are the JSON types an action parameter may declare.
var paramTypes = []string{"string", "integer", "number", "boolean", "object", "array"}

// compileSchema compiles a JSON Schema (draft 2020-12 unless it says
// otherwise) given as JSON.
func compileSchema(doc []byte) (*jsonschema.Schema, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, err
	}
	const url = "mem:///schema.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(url, v); err != nil {
		return nil, err
	}
	sch, err := c.Compile(url)
	if err == nil {
		return sch, nil
	}
	var sve *jsonschema.SchemaValidationError
	if errors.As(err, &sve) {
		// The metaschema's report is a tree; one line per wrong keyword reads better.
		var msgs []string
		seen := map[string]bool{}
		for _, is := range issues(sve.Err, v, nil) {
			if at := "/" + strings.Join(is.path, "/"); !seen[at] { // the first reason per place is the telling one
				seen[at] = true
				msgs = append(msgs, fmt.Sprintf("at %s: %s", at, is.msg))
			}
		}
		return nil, fmt.Errorf("invalid JSON Schema: %s", strings.Join(msgs, "; "))
	}
	return nil, err
}

// paramSchema validates a parameters object: an action's, or a rule's
// trigger parameters. It is compiled once, at load.
type paramSchema struct {
	schema   *jsonschema.Schema
	doc      json.RawMessage
	names    []string // known parameters, for did-you-mean hints
	defaults []param  // applied to absent parameters, in name order
}

type param struct {
	name  string
	value any
}

// newParamSchema compiles doc, the JSON Schema of an object, and reads the
// names and defaults of its top-level properties.
func newParamSchema(doc map[string]any) (*paramSchema, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	sch, err := compileSchema(b)
	if err != nil {
		return nil, err
	}
	props, _ := doc["properties"].(map[string]any)
	ps := &paramSchema{schema: sch, doc: b, names: slices.Sorted(maps.Keys(props))}
	for _, name := range ps.names {
		if p, ok := props[name].(map[string]any); ok && p["default"] != nil {
			ps.defaults = append(ps.defaults, param{name, p["default"]})
		}
	}
	return ps, nil
}

// actionSchema is the JSON Schema of an action's parameters object.
func actionSchema(a *domain.Action) map[string]any {
	props := map[string]any{}
	var required []string
	for _, name := range a.ParamOrder {
		p := a.Parameters[name]
		prop := map[string]any{}
		if p.Type != "" {
			prop["type"] = p.Type
		}
		if p.Description != "" {
			prop["description"] = p.Description
		}
		if p.Default != nil {
			prop["default"] = p.Default
		}
		if len(p.Enum) > 0 {
			prop["enum"] = p.Enum
		}
		if p.Secret {
			prop["secret"] = true // an annotation: validators ignore it, readers of the schema see it
		}
		props[name] = prop
		if p.Required && p.Default == nil {
			required = append(required, name) // with a default it cannot be missing
		}
	}
	doc := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if required != nil {
		doc["required"] = required
	}
	return doc
}

// issue is one thing wrong with a validated value, at path below its root.
type issue struct {
	path    []string
	msg     string
	missing bool // a required property is absent
	unknown bool // a property the schema does not have
}

// apply copies params, fills in defaults for absent (or null) parameters and
// validates the result.
func (s *paramSchema) apply(params map[string]any) (map[string]any, []issue) {
	out := make(map[string]any, len(params)+len(s.defaults))
	for k, v := range params {
		if v != nil { // JSON null means "not given", so a default may apply
			out[k] = v
		}
	}
	for _, d := range s.defaults {
		if _, ok := out[d.name]; !ok {
			out[d.name] = deepCopy(d.value)
		}
	}
	if err := s.schema.Validate(out); err != nil {
		return out, issues(err, out, s.names)
	}
	return out, nil
}

// deepCopy keeps callers that mutate their parameters from changing a
// default shared by every execution.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}

// issues flattens a jsonschema validation error of value into one issue per
// problem; names are the known top-level properties, for did-you-mean hints.
func issues(err error, value any, names []string) []issue {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []issue{{msg: err.Error()}}
	}
	var out []issue
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		for _, c := range e.Causes {
			walk(c)
		}
		if len(e.Causes) > 0 {
			return
		}
		at := func(name string) []string { return append(slices.Clone(e.InstanceLocation), name) }
		switch k := e.ErrorKind.(type) {
		case *kind.Required:
			for _, m := range k.Missing {
				out = append(out, issue{path: at(m), msg: "missing required parameter", missing: true})
			}
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				msg := "unknown parameter"
				if len(e.InstanceLocation) == 0 {
					msg += didYouMean(p, names)
				}
				out = append(out, issue{path: at(p), msg: msg, unknown: true})
			}
		case *kind.Type:
			got := k.Got
			if v, ok := valueAt(value, e.InstanceLocation); ok && got == "number" {
				got = jsonType(v) // jsonschema calls every number a number, even 3
			}
			out = append(out, issue{path: e.InstanceLocation, msg: fmt.Sprintf("must be %s, got %s", strings.Join(k.Want, " or "), got)})
		case *kind.Enum:
			want := make([]string, len(k.Want))
			for i, w := range k.Want {
				want[i] = fmt.Sprint(w)
			}
			out = append(out, issue{path: e.InstanceLocation, msg: fmt.Sprintf("must be one of %s, got %s", strings.Join(want, ", "), show(k.Got))})
		default:
			out = append(out, issue{path: e.InstanceLocation, msg: k.LocalizedString(printer)})
		}
	}
	walk(ve)
	slices.SortStableFunc(out, func(a, b issue) int { return slices.Compare(a.path, b.path) })
	return out
}

// valueAt finds the value at a JSON Schema instance location.
func valueAt(v any, path []string) (any, bool) {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false // arrays do not occur in the places this is asked about
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

func show(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
