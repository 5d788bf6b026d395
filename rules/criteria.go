package rules

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/troupehq/troupe/domain"
)

// Operators lists the known criteria types: StackStorm's names and its short
// aliases (eq, neq, ieq, lt, gt, td_lt, td_gt, in, nin).
var Operators = slices.Sorted(maps.Keys(builders))

// A test reports whether a present, non-null value satisfies a criterion.
type test func(v any) bool

// A builder turns a criterion's pattern, already in encoding/json's types,
// into its test; its error is reported against the pattern.
type builder func(pattern any) (test, error)

var builders = map[string]builder{
	"equals":        equals,
	"eq":            equals,
	"nequals":       negate(equals),
	"neq":           negate(equals),
	"iequals":       textual(true, identical),
	"ieq":           textual(true, identical),
	"contains":      contains(false),
	"icontains":     contains(true),
	"ncontains":     negate(contains(false)),
	"incontains":    negate(contains(true)),
	"startswith":    textual(false, strings.HasPrefix),
	"istartswith":   textual(true, strings.HasPrefix),
	"endswith":      textual(false, strings.HasSuffix),
	"iendswith":     textual(true, strings.HasSuffix),
	"lessthan":      ordered(below),
	"lt":            ordered(below),
	"greaterthan":   ordered(above),
	"gt":            ordered(above),
	"matchwildcard": matchWildcard,
	"matchregex":    regex(`(?s)\A(?:`, `)`), // Python's re.match with DOTALL
	"regex":         regex("", ""),           // re.search
	"iregex":        regex("(?i)", ""),
	"timediff_lt":   timediff(below),
	"td_lt":         timediff(below),
	"timediff_gt":   timediff(above),
	"td_gt":         timediff(above),
	"exists":        constant(true),
	"nexists":       constant(false), // a missing value is what matches; see criterion.missing
	"inside":        inside,
	"in":            inside,
	"ninside":       negate(inside),
	"nin":           negate(inside),
	"search":        nil, // nests criteria, so compileSearch builds it
}

// criterion is one compiled criteria entry. path starts below the scope it
// is evaluated against: the whole scope at top level, the list element for
// the items of a search.
type criterion struct {
	path    []segment
	test    test
	missing bool // the result for a missing or null value
}

func (c *criterion) match(root any) bool {
	v, _ := lookup(root, c.path)
	if v == nil {
		return c.missing
	}
	return c.test(v)
}

// problems collects the errors found in one criterion.
type problems struct {
	pos   domain.Pos
	field string // e.g. criteria."trigger.body.env"
	errs  []error
}

func (p *problems) add(sub, format string, args ...any) {
	p.errs = append(p.errs, &domain.FieldError{Pos: p.pos, Field: p.field + sub, Msg: fmt.Sprintf(format, args...)})
}

// compileCriterion compiles c, naming it under parent in errors. A non-empty
// root is the segment every key must start with and that is then dropped
// (`item` for the items of a search).
func compileCriterion(c *domain.Criterion, parent, root string) (criterion, []error) {
	p := &problems{pos: c.Pos, field: fmt.Sprintf("%s.%q", parent, c.Key)}
	typ := strings.ToLower(c.Type)
	cr := criterion{missing: typ == "nexists"}
	path, err := parsePath(c.Key)
	switch {
	case err != nil:
		p.add("", "%v", err)
	case root != "" && path[0].key != root:
		p.add("", "key of a search item must start with %q", root+".")
	case root != "":
		path = path[1:]
	}
	cr.path = path
	build, known := builders[typ]
	switch {
	case !known:
		if s := domain.Suggest(typ, Operators); s != "" {
			p.add(".type", "unknown criteria type %q (did you mean %s?)", c.Type, s)
		} else {
			p.add(".type", "unknown criteria type %q (known: %s)", c.Type, strings.Join(Operators, ", "))
		}
		return cr, p.errs
	case typ == "search":
		cr.test = compileSearch(c, p)
		return cr, p.errs
	case c.Condition != "" || len(c.Items) > 0:
		p.add("", "condition and items belong to the search type, not %s", typ)
	}
	pattern, err := jsonValue(c.Pattern)
	switch {
	case err != nil:
		p.add(".pattern", "pattern is not a JSON value: %v", err)
	case pattern == nil && typ != "exists" && typ != "nexists":
		p.add(".pattern", "%s needs a pattern", typ)
	default:
		if cr.test, err = build(pattern); err != nil {
			p.add(".pattern", "%v", err)
		}
	}
	return cr, p.errs
}

// compileSearch builds StackStorm's search: the value is a list, and an
// element matches when it satisfies every item criterion.
func compileSearch(c *domain.Criterion, p *problems) test {
	all := false
	switch strings.ToLower(c.Condition) {
	case "any":
	case "all":
		all = true
	default:
		p.add(".condition", "search condition %q is neither any nor all", c.Condition)
	}
	if len(c.Items) == 0 {
		p.add(".items", "search needs at least one item criterion")
	}
	items := make([]criterion, len(c.Items))
	for i := range c.Items {
		var errs []error
		items[i], errs = compileCriterion(&c.Items[i], p.field+".items", "item")
		p.errs = append(p.errs, errs...)
	}
	return func(v any) bool {
		list, ok := v.([]any)
		if !ok {
			return false
		}
		// any stops at the first matching element, all at the first that
		// does not match; an empty list is all but not any, as in Python.
		for _, e := range list {
			if matchesAll(items, e) != all {
				return !all
			}
		}
		return all
	}
}

func matchesAll(cs []criterion, root any) bool {
	for i := range cs {
		if !cs[i].match(root) {
			return false
		}
	}
	return true
}

func negate(b builder) builder {
	return func(p any) (test, error) {
		t, err := b(p)
		if err != nil {
			return nil, err
		}
		return func(v any) bool { return !t(v) }, nil
	}
}

func constant(result bool) builder {
	return func(any) (test, error) { return func(any) bool { return result }, nil }
}

func equals(p any) (test, error) {
	return func(v any) bool { return equal(v, p) }, nil
}

// textual compares the text of the value with the text of the pattern,
// both lower-cased when fold is set.
func textual(fold bool, f func(v, p string) bool) builder {
	lower := func(s string) string { return s }
	if fold {
		lower = strings.ToLower
	}
	return func(p any) (test, error) {
		ps := lower(text(p))
		return func(v any) bool { return f(lower(text(v)), ps) }, nil
	}
}

func contains(fold bool) builder {
	return func(p any) (test, error) {
		return func(v any) bool { return has(v, p, fold) }, nil
	}
}

func inside(p any) (test, error) {
	switch p.(type) {
	case []any, map[string]any, string:
		return func(v any) bool { return has(p, v, false) }, nil
	}
	return nil, errors.New("pattern must be a list, a map or a string")
}

// has reports whether container holds x, as Python's `x in container`: an
// element of a list, a key of a map, a substring of the text of anything else.
func has(container, x any, fold bool) bool {
	same := equal
	if fold {
		same = func(a, b any) bool { return strings.EqualFold(text(a), text(b)) }
	}
	switch c := container.(type) {
	case []any:
		return slices.ContainsFunc(c, func(e any) bool { return same(e, x) })
	case map[string]any:
		for k := range c {
			if same(k, x) {
				return true
			}
		}
		return false
	}
	if fold {
		return strings.Contains(strings.ToLower(text(container)), strings.ToLower(text(x)))
	}
	return strings.Contains(text(container), text(x))
}

func identical(v, p string) bool { return v == p }
func below(c int) bool           { return c < 0 }
func above(c int) bool           { return c > 0 }

func ordered(ok func(c int) bool) builder {
	return func(p any) (test, error) {
		switch p.(type) {
		case float64, string:
			return func(v any) bool {
				c, comparable := compare(v, p)
				return comparable && ok(c)
			}, nil
		}
		return nil, errors.New("pattern must be a number or a string")
	}
}

// regex tests the text of the value against the pattern as a regular
// expression, between prefix and suffix.
func regex(prefix, suffix string) builder {
	return func(p any) (test, error) {
		ps := text(p)
		// Compiling the pattern alone first keeps our wrapping out of the message.
		if _, err := regexp.Compile(ps); err != nil {
			return nil, fmt.Errorf("invalid regular expression: %w", err)
		}
		re, err := regexp.Compile(prefix + ps + suffix)
		if err != nil {
			return nil, fmt.Errorf("invalid regular expression: %w", err)
		}
		return matching(re), nil
	}
}

func matchWildcard(p any) (test, error) {
	re, err := regexp.Compile(wildcard(text(p)))
	if err != nil {
		return nil, fmt.Errorf("invalid wildcard: %w", err)
	}
	return matching(re), nil
}

func matching(re *regexp.Regexp) test {
	return func(v any) bool { return re.MatchString(text(v)) }
}

// wildcard translates a Python fnmatch pattern to a regular expression:
// `*` and `?` match any characters including `/`, `[...]` and `[!...]` are
// character classes, and an unclosed `[` is literal.
func wildcard(pattern string) string {
	var b strings.Builder
	b.WriteString(`(?s)\A`)
	rs := []rune(pattern)
	for i := 0; i < len(rs); i++ {
		switch rs[i] {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '[':
			j := i + 1
			if j < len(rs) && rs[j] == '!' {
				j++
			}
			if j < len(rs) && rs[j] == ']' {
				j++
			}
			for j < len(rs) && rs[j] != ']' {
				j++
			}
			if j >= len(rs) {
				b.WriteString(`\[`)
				continue
			}
			class := rs[i+1 : j]
			b.WriteByte('[')
			if class[0] == '!' {
				b.WriteByte('^')
				class = class[1:]
			}
			for _, r := range class {
				if r == '-' {
					b.WriteRune(r)
				} else {
					b.WriteString(regexp.QuoteMeta(string(r)))
				}
			}
			b.WriteByte(']')
			i = j
		default:
			b.WriteString(regexp.QuoteMeta(string(rs[i])))
		}
	}
	b.WriteString(`\z`)
	return b.String()
}

// timediff compares the age of the value, now minus its time, with the
// pattern's number of seconds.
func timediff(ok func(c int) bool) builder {
	return func(p any) (test, error) {
		limit, isNum := numeric(p)
		if !isNum {
			return nil, errors.New("pattern must be a number of seconds")
		}
		return func(v any) bool {
			t, valid := timestamp(v)
			return valid && ok(cmp.Compare(time.Since(t).Seconds(), limit))
		}, nil
	}
}

// timeLayouts are tried in order on timestamp strings; the ones without a
// zone are Python's isoformat() of a naive datetime, which StackStorm
// payloads carry in UTC.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999",
	time.DateOnly,
}

// timestamp reads v as RFC 3339 text or as a number of Unix seconds.
func timestamp(v any) (time.Time, bool) {
	if secs, ok := numeric(v); ok {
		return time.UnixMicro(int64(secs * 1e6)), true
	}
	s, ok := v.(string)
	if !ok {
		return time.Time{}, false
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
