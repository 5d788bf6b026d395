package packs

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/troupehq/troupe/domain"
)

// node is a YAML value together with the line it was written on. Pack files
// are read through it rather than decoded into structs so that every problem
// can name its line and every unknown field can be reported, not just the
// first.
type node struct {
	line    int
	isMap   bool
	isSeq   bool
	val     any     // scalars: nil, bool, int, float64 or string
	entries []entry // mappings, in file order
	items   []*node // sequences
}

type entry struct {
	key string
	val *node
}

func (n *node) get(key string) *node {
	if n == nil {
		return nil
	}
	for _, e := range n.entries {
		if e.key == key {
			return e.val
		}
	}
	return nil
}

// typeName names n's type in the words of the pack format's errors.
func (n *node) typeName() string {
	switch {
	case n.isMap:
		return "mapping"
	case n.isSeq:
		return "list"
	}
	return jsonType(n.val)
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return "integer"
	case float32, float64, json.Number:
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

// plain turns n into the values encoding/json would produce, with integers
// kept as int.
func (n *node) plain() any {
	switch {
	case n == nil:
		return nil
	case n.isMap:
		m := make(map[string]any, len(n.entries))
		for _, e := range n.entries {
			m[e.key] = e.val.plain()
		}
		return m
	case n.isSeq:
		s := make([]any, len(n.items))
		for i, it := range n.items {
			s[i] = it.plain()
		}
		return s
	}
	return n.val
}

// lineAt is the line of the value at path below n, or of its deepest
// ancestor that exists, or fallback when n is nil.
func lineAt(n *node, path []string, fallback int) int {
	if n != nil {
		fallback = n.line
	}
	for _, k := range path {
		if n = n.get(k); n == nil {
			break
		}
		fallback = n.line
	}
	return fallback
}

// parse reads one YAML document; it reports syntax errors and returns nil.
func (f *file) parse(src []byte) *node {
	doc, err := parser.ParseBytes(src, 0)
	if err != nil {
		var ye yaml.Error
		if !errors.As(err, &ye) {
			f.add(1, "", "invalid YAML: %v", err)
			return nil
		}
		line := ye.GetToken().Position.Line
		hint := ""
		if lines := strings.Split(string(src), "\n"); line >= 1 && line <= len(lines) && strings.Contains(lines[line-1], "{{") {
			hint = ` (quote values that hold templates: "{{ ... }}")`
		}
		f.add(line, "", "invalid YAML: %s%s", ye.GetMessage(), hint)
		return nil
	}
	var bodies []ast.Node
	for _, d := range doc.Docs {
		if d.Body != nil {
			bodies = append(bodies, d.Body)
		}
	}
	switch len(bodies) {
	case 0:
		f.add(1, "", "file is empty")
		return nil
	case 1:
		c := converter{f: f, anchors: map[string]*node{}}
		return c.convert(bodies[0], 0)
	}
	f.add(bodies[1].GetToken().Position.Line, "", "a pack file holds one YAML document, found %d", len(bodies))
	return nil
}

type converter struct {
	f       *file
	anchors map[string]*node
}

// convert turns an AST node into a node; line, when not zero, is the line of
// the key the value belongs to, which is where a reader looks for it.
func (c *converter) convert(n ast.Node, line int) *node {
	if line == 0 {
		line = n.GetToken().Position.Line
	}
	out := &node{line: line}
	switch n := n.(type) {
	case *ast.MappingNode:
		out.isMap = true
		for _, mv := range n.Values {
			c.addEntry(out, mv)
		}
	case *ast.MappingValueNode:
		out.isMap = true
		c.addEntry(out, n)
	case *ast.SequenceNode:
		out.isSeq = true
		for _, v := range n.Values {
			out.items = append(out.items, c.convert(v, 0))
		}
	case *ast.AnchorNode:
		out = c.convert(n.Value, line)
		c.anchors[n.Name.GetToken().Value] = out
	case *ast.AliasNode:
		name := n.Value.GetToken().Value
		a, ok := c.anchors[name]
		if !ok {
			c.f.add(line, "", "unknown YAML alias *%s", name)
			break
		}
		cp := *a
		cp.line = line
		out = &cp
	case *ast.TagNode:
		if n.Start.Value == "!!str" {
			out.val = n.Value.GetToken().Value
			break
		}
		out = c.convert(n.Value, line)
	case *ast.LiteralNode:
		out.val = n.Value.Value
	case *ast.IntegerNode:
		switch v := n.Value.(type) {
		case int64:
			out.val = int(v)
		case uint64:
			if v <= math.MaxInt {
				out.val = int(v)
			} else {
				out.val = float64(v)
			}
		}
	case *ast.InfinityNode, *ast.NanNode:
		c.f.add(line, "", "infinite and NaN numbers are not supported")
	case *ast.NullNode:
	case ast.ScalarNode:
		out.val = n.GetValue()
	default:
		c.f.add(line, "", "unsupported YAML construct %s", n.Type().YAMLName())
	}
	return out
}

func (c *converter) addEntry(m *node, mv *ast.MappingValueNode) {
	tok := mv.Key.GetToken()
	switch {
	case mv.Key.IsMergeKey():
		c.f.add(tok.Position.Line, "", "YAML merge keys (<<) are not supported")
	case !isScalarKey(mv.Key):
		c.f.add(tok.Position.Line, "", "mapping keys must be plain scalars")
	default:
		m.entries = append(m.entries, entry{tok.Value, c.convert(mv.Value, tok.Position.Line)})
	}
}

func isScalarKey(k ast.MapKeyNode) bool {
	_, ok := k.(ast.ScalarNode)
	return ok
}

// obj reads the fields of one mapping of a pack file. Every getter reports
// what is wrong with its field and returns the zero value, so a decoder reads
// straight through a broken file and collects all of its problems.
type obj struct {
	f      *file
	n      *node  // nil when absent or not a mapping (already reported)
	prefix string // field path of n, with a trailing dot
}

// object checks that n is a mapping holding only the given fields.
func (f *file) object(n *node, prefix string, fields ...string) obj {
	if n != nil && !n.isMap {
		f.add(n.line, strings.TrimSuffix(prefix, "."), "must be a mapping, got %s", n.typeName())
		n = nil
	}
	for _, e := range n.entriesOrNil() {
		if !slices.Contains(fields, e.key) {
			f.add(e.val.line, prefix+e.key, "unknown field%s", didYouMean(e.key, fields))
		}
	}
	return obj{f: f, n: n, prefix: prefix}
}

func (n *node) entriesOrNil() []entry {
	if n == nil {
		return nil
	}
	return n.entries
}

// get returns the field's value, treating null as absent.
func (o obj) get(name string, required bool) *node {
	v := o.n.get(name)
	if v != nil && !v.isMap && !v.isSeq && v.val == nil {
		v = nil
	}
	if v == nil && required && o.n != nil {
		o.f.add(o.n.line, o.prefix+name, "missing required field")
	}
	return v
}

func (o obj) wrongType(v *node, name, want string) {
	hint := ""
	if want == "a string" && v.val != nil {
		hint = " (quote it)"
	}
	o.f.add(v.line, o.prefix+name, "must be %s, got %s%s", want, v.typeName(), hint)
}

func (o obj) str(name string, required bool) string {
	v := o.get(name, required)
	if v == nil {
		return ""
	}
	s, ok := v.val.(string)
	switch {
	case !ok:
		o.wrongType(v, name, "a string")
	case required && strings.TrimSpace(s) == "":
		o.f.add(v.line, o.prefix+name, "must not be empty")
	}
	return s
}

func (o obj) boolean(name string, def bool) bool {
	v := o.get(name, false)
	if v == nil {
		return def
	}
	b, ok := v.val.(bool)
	if !ok {
		o.wrongType(v, name, "a boolean")
		return def
	}
	return b
}

func (o obj) number(name string) (float64, bool) {
	v := o.get(name, false)
	if v == nil {
		return 0, false
	}
	switch n := v.val.(type) {
	case int:
		return float64(n), true
	case float64:
		return n, true
	}
	o.wrongType(v, name, "a number")
	return 0, false
}

// mapping returns the field when it is a mapping.
func (o obj) mapping(name string, required bool) *node {
	v := o.get(name, required)
	if v != nil && !v.isMap {
		o.wrongType(v, name, "a mapping")
		return nil
	}
	return v
}

// strings reads a list of strings and the line of each.
func (o obj) strings(name string, required bool) ([]string, []int) {
	v := o.get(name, required)
	if v == nil {
		return nil, nil
	}
	if !v.isSeq {
		o.wrongType(v, name, "a list of strings")
		return nil, nil
	}
	var out []string
	var lines []int
	for i, it := range v.items {
		if s, ok := it.val.(string); ok {
			out, lines = append(out, s), append(lines, it.line)
		} else {
			o.f.add(it.line, fmt.Sprintf("%s%s[%d]", o.prefix, name, i), "must be a string, got %s", it.typeName())
		}
	}
	if required && len(v.items) == 0 {
		o.f.add(v.line, o.prefix+name, "must not be empty")
	}
	return out, lines
}

// line is the line of the named field, or of the object when it is absent.
func (o obj) line(name string) int {
	return lineAt(o.n, []string{name}, 0)
}

func didYouMean(word string, candidates []string) string {
	if s := domain.Suggest(word, candidates); s != "" {
		return fmt.Sprintf(" (did you mean %s?)", s)
	}
	return ""
}
