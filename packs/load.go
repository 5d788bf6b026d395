package packs

import (
	"cmp"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/troupehq/troupe/domain"
)

//go:embed core
var coreFiles embed.FS

// Options tunes Load.
type Options struct {
	// Runtimes lists the runtime names available in the cluster. An action or
	// sensor naming another runtime gets a warning, not an error: a node that
	// has it may join later. Empty means unknown, and nothing is checked.
	Runtimes []string
	// CompileRule, when set, compiles each rule that parsed cleanly (criteria,
	// expression, templates). Its error may be an errors.Join of
	// *domain.FieldError, each of which becomes a Problem at its position.
	CompileRule func(*domain.Rule) error
}

// Problem is one thing wrong (or, as a warning, doubtful) in a pack.
type Problem struct {
	Pack  string     // pack ref; empty for problems with a directory itself
	Pos   domain.Pos // File is relative to the pack directory
	Field string     // dotted field path, when the problem is with one field
	Msg   string
}

func (p Problem) Error() string {
	msg := (&domain.FieldError{Pos: p.Pos, Field: p.Field, Msg: p.Msg}).Error()
	if p.Pack == "" {
		return msg
	}
	return fmt.Sprintf("pack %q: %s", p.Pack, msg)
}

// LoadError reports every problem found by Load.
type LoadError struct{ Problems []Problem }

func (e *LoadError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

var (
	packRefRE   = regexp.MustCompile(`^[a-z0-9_]+$`)
	nameRE      = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	paramNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Load loads the embedded core pack and the packs in dirs. Each dir is a pack
// (it holds pack.yaml) or a folder whose subdirectories are packs. It reads
// and checks everything before answering: on any problem it returns a
// *LoadError listing all of them, sorted by pack, file and line.
func Load(dirs []string, opts Options) (*Catalog, error) {
	l := &loader{opts: opts, actionParams: map[*domain.Action]*paramSchema{}, triggerParams: map[*domain.Trigger]*paramSchema{}}
	core, err := fs.Sub(coreFiles, "core")
	if err != nil {
		return nil, fmt.Errorf("embedded core pack: %w", err)
	}
	l.loadPack(core, "")
	for _, dir := range dirs {
		for _, p := range l.discover(dir) {
			l.loadPack(os.DirFS(p), p)
		}
	}
	c := l.link()
	if len(l.problems) > 0 {
		return nil, &LoadError{Problems: sortProblems(l.problems)}
	}
	c.warnings = sortProblems(l.warnings)
	return c, nil
}

func sortProblems(ps []Problem) []Problem {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Pack, b.Pack), cmp.Compare(a.Pos.File, b.Pos.File), cmp.Compare(a.Pos.Line, b.Pos.Line))
	})
	return ps
}

// loader collects the problems of one Load.
type loader struct {
	opts          Options
	problems      []Problem
	warnings      []Problem
	packs         []*source
	actionParams  map[*domain.Action]*paramSchema
	triggerParams map[*domain.Trigger]*paramSchema
}

// source is a parsed pack plus what linking it needs: the YAML of the parts
// that refer to other definitions, for the lines of their problems.
type source struct {
	pack    *domain.Pack
	fsys    fs.FS
	refPos  domain.Pos
	rules   []ruleSource
	sensors []sensorSource
}

type ruleSource struct {
	rule            *domain.Rule
	f               *file
	root            *node // the whole rule, for the lines of compile problems
	trigger, action *node
	clean           bool // the file parsed without problems, so it is worth compiling
}

type sensorSource struct {
	sensor *domain.Sensor
	f      *file
	lines  []int // of each trigger type
}

// file reports problems in one pack file.
type file struct {
	l    *loader
	pack string
	path string
	n    int // problems reported so far
}

func (f *file) problem(line int, field, format string, args ...any) Problem {
	return Problem{Pack: f.pack, Pos: domain.Pos{File: f.path, Line: line}, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func (f *file) add(line int, field, format string, args ...any) {
	f.n++
	f.l.problems = append(f.l.problems, f.problem(line, field, format, args...))
}

func (f *file) warn(line int, field, format string, args ...any) {
	f.l.warnings = append(f.l.warnings, f.problem(line, field, format, args...))
}

func (f *file) pos(n *node) domain.Pos { return domain.Pos{File: f.path, Line: lineAt(n, nil, 1)} }

// discover returns the pack directories dir stands for.
func (l *loader) discover(dir string) []string {
	abs, err := filepath.Abs(dir)
	if err == nil && isFile(filepath.Join(abs, "pack.yaml")) {
		return []string{abs}
	}
	var entries []os.DirEntry
	if err == nil {
		entries, err = os.ReadDir(abs)
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		l.problems = append(l.problems, Problem{Pos: domain.Pos{File: dir}, Msg: fmt.Sprintf("cannot read pack directory: %v", err)})
		return nil
	}
	var out []string
	for _, e := range entries {
		if p := filepath.Join(abs, e.Name()); e.IsDir() && isFile(filepath.Join(p, "pack.yaml")) {
			out = append(out, p)
		}
	}
	if out == nil {
		l.problems = append(l.problems, Problem{Pos: domain.Pos{File: dir}, Msg: "no pack here: found neither pack.yaml nor subdirectories holding one"})
	}
	return out
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// loadPack parses one pack; dir is empty for the embedded core pack.
func (l *loader) loadPack(fsys fs.FS, dir string) {
	label := filepath.Base(dir)
	if dir == "" {
		label = "core"
	}
	f := &file{l: l, pack: label, path: "pack.yaml"}
	var root *node
	if src, err := fs.ReadFile(fsys, "pack.yaml"); err != nil {
		f.add(0, "", "%v", err)
	} else {
		root = f.parse(src)
	}
	if ref, ok := root.get("ref").valOrNil().(string); ok && packRefRE.MatchString(ref) {
		f.pack = ref // name the pack by its ref from the first problem on
	}
	o := f.object(root, "", "ref", "version", "description")
	p := &domain.Pack{Ref: o.str("ref", true), Version: o.str("version", false), Description: o.str("description", false), Dir: dir}
	if p.Ref != "" && !packRefRE.MatchString(p.Ref) {
		f.add(o.line("ref"), "ref", "invalid pack ref %q: use lower-case letters, digits and _", p.Ref)
	}
	// An invalid or missing ref falls back to the directory's name, so that
	// the rest of the pack is still checked.
	p.Ref = f.pack
	s := &source{pack: p, fsys: fsys, refPos: domain.Pos{File: "pack.yaml", Line: o.line("ref")}}
	var err error
	if p.Hash, err = hashFS(fsys); err != nil {
		f.add(0, "", "hash pack files: %v", err)
	}
	l.eachFile(s, "triggers", l.parseTrigger)
	l.eachFile(s, "actions", l.parseAction)
	l.eachFile(s, "rules", l.parseRule)
	l.eachFile(s, "sensors", l.parseSensor)
	l.packs = append(l.packs, s)
}

func (n *node) valOrNil() any {
	if n == nil {
		return nil
	}
	return n.val
}

// hashFS hashes every file (sorted relative paths and contents), skipping
// dot-files such as .git, so nodes can tell whether they load the same pack.
func hashFS(fsys fs.FS) (string, error) {
	h := sha256.New()
	err := walkPack(fsys, func(p string, d fs.DirEntry) error {
		if d.IsDir() {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b)) // lengths keep path/content boundaries unambiguous
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// eachFile parses every YAML file of one kind (a subdirectory of the pack).
func (l *loader) eachFile(s *source, sub string, parse func(*source, *file, *node)) {
	entries, err := fs.ReadDir(s.fsys, sub)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		l.problems = append(l.problems, Problem{Pack: s.pack.Ref, Pos: domain.Pos{File: sub}, Msg: err.Error()})
	}
	for _, e := range entries {
		if e.IsDir() || (path.Ext(e.Name()) != ".yaml" && path.Ext(e.Name()) != ".yml") {
			continue // scripts live next to the definitions
		}
		f := &file{l: l, pack: s.pack.Ref, path: sub + "/" + e.Name()}
		src, err := fs.ReadFile(s.fsys, f.path)
		if err != nil {
			f.add(0, "", "%v", err)
			continue
		}
		if root := f.parse(src); root != nil {
			parse(s, f, root)
		}
	}
}

// name reads the name field of a definition. A missing one falls back to the
// file name so that references to it do not echo the problem.
func (o obj) name() string {
	n := o.str("name", true)
	if n == "" {
		base := path.Base(o.f.path)
		return strings.TrimSuffix(base, path.Ext(base))
	}
	if !nameRE.MatchString(n) {
		o.f.add(o.line("name"), "name", "invalid name %q: use letters, digits, _ and -", n)
	}
	return n
}

func (l *loader) checkRuntime(o obj, runtime string) {
	rts := slices.Sorted(slices.Values(l.opts.Runtimes))
	if runtime == "" || len(rts) == 0 || slices.Contains(rts, runtime) {
		return
	}
	o.f.warn(o.line("runtime"), "runtime", "runtime %q is not available (available: %s)%s", runtime, strings.Join(rts, ", "), didYouMean(runtime, rts))
}

// entryPoint checks a script path given relative to the pack's sub folder
// and returns its absolute path (empty for the embedded pack).
func (s *source) entryPoint(o obj, sub, rel string) string {
	p, line := path.Join(sub, rel), o.line("entry_point")
	if path.IsAbs(rel) || !strings.HasPrefix(p, sub+"/") {
		o.f.add(line, "entry_point", "%q is not a path inside %s/", rel, sub)
		return ""
	}
	st, err := fs.Stat(s.fsys, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		o.f.add(line, "entry_point", "%s does not exist", p)
	case err != nil:
		o.f.add(line, "entry_point", "%v", err)
	case st.IsDir():
		o.f.add(line, "entry_point", "%s is a directory", p)
	case s.pack.Dir != "":
		return filepath.Join(s.pack.Dir, filepath.FromSlash(p))
	}
	return ""
}

// checkShebang warns of a shell script that starts with #! but is not
// executable: the shell runtime executes such a script itself, for its #!
// line, so every run of it would fail.
func (s *source) checkShebang(o obj, p string) {
	f, err := s.fsys.Open(p)
	if err != nil {
		return // entryPoint has reported it
	}
	defer f.Close()
	var head [2]byte
	if n, _ := io.ReadFull(f, head[:]); n < len(head) || head != [2]byte{'#', '!'} {
		return
	}
	if st, err := f.Stat(); err == nil && st.Mode()&0o111 == 0 {
		o.f.warn(o.line("entry_point"), "entry_point", "%s starts with #! but is not executable, so it cannot run: chmod +x it", p)
	}
}

func (l *loader) parseTrigger(s *source, f *file, root *node) {
	o := f.object(root, "", "name", "description", "payload_schema", "parameters_schema")
	t := &domain.Trigger{Pack: s.pack.Ref, Name: o.name(), Description: o.str("description", false), Pos: f.pos(o.n)}
	t.Ref = t.Pack + "." + t.Name
	if n := o.mapping("payload_schema", false); n != nil {
		b, err := json.Marshal(n.plain())
		if err == nil {
			_, err = compileSchema(b)
		}
		if err != nil {
			f.add(n.line, "payload_schema", "%v", err)
		}
		t.PayloadSchema = b
	}
	if o.get("parameters_schema", false) != nil {
		// Declared, even if broken (reported here): rules on the trigger may
		// give parameters.
		l.triggerParams[t] = nil
	}
	if n := o.mapping("parameters_schema", false); n != nil {
		ps, err := newParamSchema(n.plain().(map[string]any))
		if err != nil {
			f.add(n.line, "parameters_schema", "%v", err)
		} else {
			t.ParametersSchema, l.triggerParams[t] = ps.doc, ps
		}
	}
	s.pack.Triggers = append(s.pack.Triggers, t)
}

func (l *loader) parseAction(s *source, f *file, root *node) {
	o := f.object(root, "", "name", "description", "runtime", "entry_point", "cmd", "parameters", "timeout", "retry")
	a := &domain.Action{Pack: s.pack.Ref, Name: o.name(), Description: o.str("description", false), Runtime: o.str("runtime", true),
		Cmd: o.str("cmd", false), Timeout: domain.DefaultTimeout, Pos: f.pos(o.n)}
	a.Ref = a.Pack + "." + a.Name
	l.checkRuntime(o, a.Runtime)
	entry := o.str("entry_point", false)
	switch {
	case a.Runtime == "builtin" && (entry != "" || a.Cmd != ""):
		f.add(o.line("runtime"), "runtime", "builtin actions are implemented by Troupe itself: drop entry_point and cmd")
	case entry != "" && a.Cmd != "":
		f.add(o.line("cmd"), "cmd", "give either entry_point or cmd, not both")
	case a.Cmd != "" && a.Runtime != "shell" && a.Runtime != "":
		f.add(o.line("cmd"), "cmd", "cmd needs runtime shell, not %q: use entry_point for a script", a.Runtime)
	case entry == "" && a.Cmd == "" && a.Runtime != "builtin" && a.Runtime != "":
		f.add(o.line("entry_point"), "entry_point", "missing: an action needs entry_point (a script in actions/) or, for runtime shell, cmd")
	}
	if entry != "" {
		a.EntryPoint = s.entryPoint(o, "actions", entry)
		if a.EntryPoint != "" && a.Runtime == "shell" {
			s.checkShebang(o, path.Join("actions", entry))
		}
	}
	if t, ok := o.number("timeout"); ok {
		if t <= 0 {
			f.add(o.line("timeout"), "timeout", "must be a positive number of seconds")
		} else {
			a.Timeout = time.Duration(t * float64(time.Second))
		}
	}
	if r := o.mapping("retry", false); r != nil {
		a.Retry = f.retry(r)
	}
	params := o.mapping("parameters", false)
	if params != nil {
		a.Parameters = make(map[string]*domain.Param, len(params.entries))
	}
	for _, e := range params.entriesOrNil() {
		a.ParamOrder = append(a.ParamOrder, e.key)
		a.Parameters[e.key] = f.param(e)
	}
	ps, err := newParamSchema(actionSchema(a))
	if err != nil {
		f.add(o.line("parameters"), "parameters", "%v", err)
	} else {
		a.Schema, l.actionParams[a] = ps.doc, ps
		_, iss := ps.apply(nil) // the defaults alone must be valid
		for _, is := range iss {
			if !is.missing && len(is.path) > 0 {
				f.add(lineAt(params, []string{is.path[0], "default"}, 0), "parameters."+is.path[0]+".default", "%s", is.msg)
			}
		}
	}
	s.pack.Actions = append(s.pack.Actions, a)
}

// retryable are the final statuses a retry policy may cover.
var retryable = []string{string(domain.StatusFailed), string(domain.StatusTimeout), string(domain.StatusAbandoned)}

// retry reads `retry: {count: N, on: [failed, timeout, abandoned], delay: SECONDS}`.
func (f *file) retry(n *node) *domain.Retry {
	o := f.object(n, "retry.", "count", "on", "delay")
	r := &domain.Retry{}
	switch c, ok := o.number("count"); {
	case !ok:
		f.add(n.line, "retry.count", "missing required field: how many more attempts")
	case c < 1 || c != float64(int(c)):
		f.add(o.line("count"), "retry.count", "must be a whole number of at least 1")
	default:
		r.Count = int(c)
	}
	on, lines := o.strings("on", false)
	if on == nil {
		on = retryable // every failure kind, as most users mean by "retry"
	}
	for i, st := range on {
		if !slices.Contains(retryable, st) {
			f.add(lines[i], "retry.on", "cannot retry on %q (allowed: %s)%s", st, strings.Join(retryable, ", "), didYouMean(st, retryable))
			continue
		}
		r.On = append(r.On, domain.Status(st))
	}
	if d, ok := o.number("delay"); ok {
		if d < 0 {
			f.add(o.line("delay"), "retry.delay", "must not be negative")
		}
		r.Delay = time.Duration(d * float64(time.Second))
	}
	return r
}

func (f *file) param(e entry) *domain.Param {
	field := "parameters." + e.key
	if !paramNameRE.MatchString(e.key) {
		f.add(e.val.line, field, "invalid parameter name: use letters, digits and _, not starting with a digit (it becomes TROUPE_PARAM_%s)", strings.ToUpper(e.key))
	}
	o := f.object(e.val, field+".", "type", "description", "default", "required", "enum", "secret")
	p := &domain.Param{Type: o.str("type", false), Description: o.str("description", false), Required: o.boolean("required", false), Secret: o.boolean("secret", false)}
	if p.Type != "" && !slices.Contains(paramTypes, p.Type) {
		f.add(o.line("type"), field+".type", "unknown type %q (known: %s)%s", p.Type, strings.Join(paramTypes, ", "), didYouMean(p.Type, paramTypes))
		p.Type = ""
	}
	p.Default = o.get("default", false).plain()
	if en := o.get("enum", false); en != nil {
		if !en.isSeq || len(en.items) == 0 {
			f.add(en.line, field+".enum", "must be a non-empty list, got %s", en.typeName())
		} else {
			p.Enum = en.plain().([]any)
		}
	}
	return p
}

func (l *loader) parseRule(s *source, f *file, root *node) {
	o := f.object(root, "", "name", "description", "enabled", "trigger", "criteria", "expression", "action")
	r := &domain.Rule{Pack: s.pack.Ref, Name: o.name(), Description: o.str("description", false), Enabled: o.boolean("enabled", true),
		Expression: o.str("expression", false), Pos: f.pos(o.n)}
	r.Ref = r.Pack + "." + r.Name
	trigger := o.mapping("trigger", true)
	t := f.object(trigger, "trigger.", "type", "parameters")
	r.Trigger.Type = t.str("type", true)
	if n := t.mapping("parameters", false); n != nil {
		r.Trigger.Parameters = n.plain().(map[string]any)
	}
	for _, e := range o.mapping("criteria", false).entriesOrNil() {
		r.Criteria = append(r.Criteria, f.criterion(e, "criteria.", true))
	}
	action := o.mapping("action", true)
	a := f.object(action, "action.", "ref", "parameters")
	r.Action.Ref = a.str("ref", true)
	if n := a.mapping("parameters", false); n != nil {
		r.Action.Parameters = n.plain().(map[string]any)
	}
	s.rules = append(s.rules, ruleSource{rule: r, f: f, root: root, trigger: trigger, action: action, clean: f.n == 0})
	s.pack.Rules = append(s.pack.Rules, r)
}

// criterion reads one criteria entry; the search operator's pattern holds
// nested criteria on item.* keys.
func (f *file) criterion(e entry, prefix string, top bool) domain.Criterion {
	field := fmt.Sprintf("%s%q", prefix, e.key)
	fields := []string{"type", "pattern"}
	if top {
		fields = append(fields, "condition")
	}
	o := f.object(e.val, field+".", fields...)
	c := domain.Criterion{Key: e.key, Type: o.str("type", true), Condition: o.str("condition", false), Pos: f.pos(e.val)}
	if c.Type != "search" || !top {
		c.Pattern = o.get("pattern", false).plain()
		return c
	}
	for _, it := range o.mapping("pattern", true).entriesOrNil() {
		c.Items = append(c.Items, f.criterion(it, field+".pattern.", false))
	}
	return c
}

func (l *loader) parseSensor(s *source, f *file, root *node) {
	o := f.object(root, "", "name", "description", "runtime", "entry_point", "trigger_types", "enabled")
	sn := &domain.Sensor{Pack: s.pack.Ref, Name: o.name(), Description: o.str("description", false), Runtime: o.str("runtime", true),
		Enabled: o.boolean("enabled", true), Pos: f.pos(o.n)}
	sn.Ref = sn.Pack + "." + sn.Name
	l.checkRuntime(o, sn.Runtime)
	if entry := o.str("entry_point", true); entry != "" {
		sn.EntryPoint = s.entryPoint(o, "sensors", entry)
	}
	var lines []int
	sn.TriggerTypes, lines = o.strings("trigger_types", true)
	s.sensors = append(s.sensors, sensorSource{sensor: sn, f: f, lines: lines})
	s.pack.Sensors = append(s.pack.Sensors, sn)
}
