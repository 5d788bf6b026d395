package packs

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/troupehq/troupe/domain"
)

// cronParser reads the 6-field (seconds first) expressions of core.crontimer.
var cronParser = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// triggerChecks hold what a JSON Schema cannot say about core trigger
// parameters, by trigger ref and parameter. They run on string values only:
// the schema has already reported values of another type. params are all
// of the rule's trigger parameters, defaults filled in, for checks that
// depend on another one.
var triggerChecks = map[string]map[string]func(s string, params map[string]any) error{
	"core.crontimer": {"expression": checkCron, "timezone": checkTimezone},
	"core.datetimer": {"date": checkDate, "timezone": checkTimezone},
}

func checkCron(s string, _ map[string]any) error {
	if _, err := cronParser.Parse(s); err != nil {
		return fmt.Errorf("invalid cron expression: %v (want 6 fields, seconds first, e.g. \"0 */5 * * * *\")", err)
	}
	return nil
}

func checkTimezone(s string, _ map[string]any) error {
	if _, err := time.LoadLocation(s); err != nil {
		return fmt.Errorf("cannot load time zone: %v", err)
	}
	return nil
}

// checkDate reads the date as the timer will (see ParseDate), in the rule's
// timezone; a timezone that is no string or no zone is reported on its own.
func checkDate(s string, params map[string]any) error {
	tz, _ := params["timezone"].(string)
	if _, err := time.LoadLocation(tz); err != nil {
		return nil
	}
	_, err := ParseDate(s, tz)
	return err
}

// link resolves references across packs and builds the catalog.
func (l *loader) link() *Catalog {
	// The first pack of a ref wins (core comes first); a later one is skipped
	// whole, so its definitions do not echo as duplicates.
	var kept []*source
	byRef := map[string]*source{}
	for _, s := range l.packs {
		if prev, ok := byRef[s.pack.Ref]; ok {
			where := prev.pack.Dir
			if where == "" {
				where = "the embedded core pack"
			}
			l.problems = append(l.problems, Problem{Pack: s.pack.Ref, Pos: s.refPos, Field: "ref", Msg: fmt.Sprintf("pack %q in %s is already loaded from %s", s.pack.Ref, s.pack.Dir, where)})
			continue
		}
		byRef[s.pack.Ref] = s
		kept = append(kept, s)
	}
	var (
		packs    []*domain.Pack
		actions  []*domain.Action
		rules    []*domain.Rule
		triggers []*domain.Trigger
		sensors  []*domain.Sensor
	)
	for _, s := range kept {
		p := s.pack
		sortByRef(p.Actions, func(a *domain.Action) string { return a.Ref })
		sortByRef(p.Rules, func(r *domain.Rule) string { return r.Ref })
		sortByRef(p.Triggers, func(t *domain.Trigger) string { return t.Ref })
		sortByRef(p.Sensors, func(s *domain.Sensor) string { return s.Ref })
		packs, actions, rules = append(packs, p), append(actions, p.Actions...), append(rules, p.Rules...)
		triggers, sensors = append(triggers, p.Triggers...), append(sensors, p.Sensors...)
	}
	c := &Catalog{
		packs:    newIndex(l, "pack", packs, func(p *domain.Pack) (string, string, domain.Pos) { return p.Ref, p.Ref, domain.Pos{} }),
		actions:  newIndex(l, "action", actions, func(a *domain.Action) (string, string, domain.Pos) { return a.Ref, a.Pack, a.Pos }),
		rules:    newIndex(l, "rule", rules, func(r *domain.Rule) (string, string, domain.Pos) { return r.Ref, r.Pack, r.Pos }),
		triggers: newIndex(l, "trigger", triggers, func(t *domain.Trigger) (string, string, domain.Pos) { return t.Ref, t.Pack, t.Pos }),
		sensors:  newIndex(l, "sensor", sensors, func(s *domain.Sensor) (string, string, domain.Pos) { return s.Ref, s.Pack, s.Pos }),
		params:   map[string]*paramSchema{},
	}
	for _, a := range c.actions.list {
		if ps := l.actionParams[a]; ps != nil {
			c.params[a.Ref] = ps
		}
	}
	for _, s := range kept {
		for _, rs := range s.rules {
			l.linkRule(c, rs)
		}
		for _, ss := range s.sensors {
			for i, t := range ss.sensor.TriggerTypes {
				if _, ok := c.triggers.byRef[t]; !ok {
					ss.f.add(ss.lines[i], fmt.Sprintf("trigger_types[%d]", i), "unknown trigger %q%s", t, didYouMean(t, c.triggers.refs()))
				}
			}
		}
	}
	return c
}

func (l *loader) linkRule(c *Catalog, rs ruleSource) {
	r, f := rs.rule, rs.f
	if t, ok := c.triggers.byRef[r.Trigger.Type]; ok {
		ps, declared := l.triggerParams[t]
		if !declared && len(r.Trigger.Parameters) > 0 {
			// Sensors emit events of such a trigger without parameters, so a
			// rule that names some would be a distinct instance nothing fires.
			f.add(lineAt(rs.trigger, []string{"parameters"}, r.Pos.Line), "trigger.parameters", "trigger %q takes no parameters", t.Ref)
		}
		if ps != nil {
			params, iss := ps.apply(r.Trigger.Parameters)
			f.issues(iss, "trigger", rs.trigger, r.Pos.Line)
			valid := len(iss) == 0
			checks := triggerChecks[t.Ref]
			for _, name := range slices.Sorted(maps.Keys(checks)) {
				if s, ok := params[name].(string); ok {
					if err := checks[name](s, params); err != nil {
						f.add(lineAt(rs.trigger, []string{"parameters", name}, r.Pos.Line), "trigger.parameters."+name, "%v", err)
						valid = false
					}
				}
			}
			if valid {
				// With defaults filled in, rules that mean the same timer name
				// the same trigger instance.
				r.Trigger.Parameters = params
			}
		}
	} else if r.Trigger.Type != "" {
		f.add(lineAt(rs.trigger, []string{"type"}, r.Pos.Line), "trigger.type", "unknown trigger %q%s", r.Trigger.Type, didYouMean(r.Trigger.Type, c.triggers.refs()))
	}
	if ps, ok := c.params[r.Action.Ref]; ok {
		_, iss := ps.apply(r.Action.Parameters)
		// A template's value is only known when the rule fires, and a bad
		// default is the action's problem, reported there. The name of a
		// parameter is known either way: an unknown one is reported even
		// when its value is a template.
		iss = slices.DeleteFunc(iss, func(is issue) bool {
			if is.missing || len(is.path) == 0 || (is.unknown && len(is.path) == 1) {
				return false
			}
			v, given := r.Action.Parameters[is.path[0]]
			return !given || hasTemplate(v)
		})
		f.issues(iss, "action", rs.action, r.Pos.Line)
	} else if _, exists := c.actions.byRef[r.Action.Ref]; !exists && r.Action.Ref != "" {
		f.add(lineAt(rs.action, []string{"ref"}, r.Pos.Line), "action.ref", "unknown action %q%s", r.Action.Ref, didYouMean(r.Action.Ref, c.actions.refs()))
	}
	if l.opts.CompileRule != nil && rs.clean {
		if err := l.opts.CompileRule(r); err != nil {
			l.compileProblems(rs, err)
		}
	}
}

// issues reports validation issues of the parameters below parent (a rule's
// trigger or action mapping) as problems of field prefix.parameters.*.
func (f *file) issues(iss []issue, prefix string, parent *node, fallback int) {
	for _, is := range iss {
		f.add(lineAt(parent, append([]string{"parameters"}, is.path...), fallback), strings.Join(append([]string{prefix, "parameters"}, is.path...), "."), "%s", is.msg)
	}
}

func hasTemplate(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, "{{")
	case map[string]any:
		for _, e := range v {
			if hasTemplate(e) {
				return true
			}
		}
	case []any:
		return slices.ContainsFunc(v, hasTemplate)
	}
	return false
}

// compileProblems turns what Options.CompileRule returned into problems: one
// per *domain.FieldError of a join, and anything else at the rule's
// position. A field error's field, when the rule file holds it, places the
// problem on that field's own line: a compiler sees only a criterion's
// position, the line of its key, while the problem may be in its type or
// pattern below.
func (l *loader) compileProblems(rs ruleSource, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			l.compileProblems(rs, e)
		}
		return
	}
	r := rs.rule
	p := Problem{Pack: r.Pack, Pos: r.Pos, Msg: err.Error()}
	if fe := (*domain.FieldError)(nil); errors.As(err, &fe) {
		p.Field, p.Msg = fe.Field, fe.Msg
		if fe.Pos.Line > 0 {
			p.Pos = domain.Pos{File: cmp.Or(fe.Pos.File, r.Pos.File), Line: fe.Pos.Line}
		}
		if line, ok := fieldLine(rs.root, fe.Field); ok && p.Pos.File == r.Pos.File {
			p.Pos.Line = line
		}
	}
	l.problems = append(l.problems, p)
}

// fieldLine finds the line of a field named the way package rules names
// them: dotted, with keys that hold dots quoted (criteria."trigger.body.x"),
// and the criteria nested in a search under items where the file has them
// under pattern. ok is false unless the whole path is in the file.
func fieldLine(root *node, field string) (line int, ok bool) {
	n := root
	for rest := field; rest != ""; {
		var key string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return 0, false
			}
			key, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			end := strings.IndexByte(rest, '.')
			if end < 0 {
				end = len(rest)
			}
			key, rest = rest[:end], rest[end:]
		}
		rest = strings.TrimPrefix(rest, ".")
		if n == nil {
			return 0, false
		}
		switch next := n.get(key); {
		case next != nil:
			n = next
		case key == "items" && n.get("pattern") != nil:
			n = n.get("pattern")
		case n.isSeq:
			i, err := strconv.Atoi(key)
			if err != nil || i < 0 || i >= len(n.items) {
				return 0, false
			}
			n = n.items[i]
		default:
			return 0, false
		}
	}
	if n == nil || n == root {
		return 0, false
	}
	return n.line, true
}

func sortByRef[T any](items []T, ref func(T) string) {
	slices.SortStableFunc(items, func(a, b T) int { return strings.Compare(ref(a), ref(b)) })
}

// index is one kind of definition, sorted by ref and looked up by ref.
type index[T any] struct {
	list  []T
	byRef map[string]T
}

// newIndex reports a second definition of a ref at its position and drops it.
func newIndex[T any](l *loader, kind string, items []T, id func(T) (ref, pack string, pos domain.Pos)) index[T] {
	ix := index[T]{byRef: make(map[string]T, len(items))}
	for _, it := range items {
		ref, pack, pos := id(it)
		if prev, ok := ix.byRef[ref]; ok {
			_, _, at := id(prev)
			l.problems = append(l.problems, Problem{Pack: pack, Pos: pos, Field: "name", Msg: fmt.Sprintf("%s %s is already defined in %s:%d", kind, ref, at.File, at.Line)})
			continue
		}
		ix.byRef[ref] = it
		ix.list = append(ix.list, it)
	}
	sortByRef(ix.list, func(t T) string { ref, _, _ := id(t); return ref })
	return ix
}

func (ix index[T]) refs() []string { return slices.Sorted(maps.Keys(ix.byRef)) }
