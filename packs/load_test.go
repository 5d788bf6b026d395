package packs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/troupehq/troupe/domain"
)

// want is a problem a test expects. In testdata, a YAML comment
// `# want FIELD: MESSAGE` expects a problem on that line, in that file, of the
// pack whose directory holds the file, with MESSAGE a substring of its Msg.
type want struct {
	pack, file string
	line       int
	field, msg string
}

func (w want) String() string {
	return fmt.Sprintf("pack %q: %s:%d: field %q: …%s…", w.pack, w.file, w.line, w.field, w.msg)
}

// wantsIn reads the `# want` comments of every YAML file below dirs.
func wantsIn(t *testing.T, dirs ...string) []want {
	t.Helper()
	var out []want
	for _, dir := range dirs {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
				return err
			}
			packDir := filepath.Dir(p)
			for !isFile(filepath.Join(packDir, "pack.yaml")) {
				packDir = filepath.Dir(packDir)
			}
			rel, _ := filepath.Rel(packDir, p)
			src, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for i, line := range strings.Split(string(src), "\n") {
				for _, w := range strings.Split(line, "# want ")[1:] {
					field, msg, ok := strings.Cut(strings.TrimSpace(w), ": ")
					if !ok {
						t.Fatalf("%s:%d: malformed want %q", p, i+1, w)
					}
					out = append(out, want{filepath.Base(packDir), filepath.ToSlash(rel), i + 1, field, msg})
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// match checks that got holds exactly the wanted problems.
func match(t *testing.T, got []Problem, wants []want) {
	t.Helper()
	used := make([]bool, len(got))
	for _, w := range wants {
		found := false
		for i, p := range got {
			if !used[i] && p.Pack == w.pack && p.Pos.File == w.file && p.Pos.Line == w.line && p.Field == w.field && strings.Contains(p.Msg, w.msg) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("not reported: %s", w)
		}
	}
	for i, p := range got {
		if !used[i] {
			t.Errorf("unexpected: %s", p.Error())
		}
	}
}

// fakeCompile stands in for package rules: it rejects the operator "bogus"
// and the expression "fail", the way the real compiler reports problems.
func fakeCompile(r *domain.Rule) error {
	var errs []error
	for _, c := range r.Criteria {
		if c.Type == "bogus" {
			errs = append(errs, &domain.FieldError{Pos: c.Pos, Field: fmt.Sprintf("criteria.%q.type", c.Key), Msg: `unknown operator "bogus"`})
		}
	}
	if r.Expression == "fail" {
		errs = append(errs, errors.New("expression: boom"),
			fmt.Errorf("wrapped: %w", &domain.FieldError{Field: "expression", Msg: "wrapped field error without a position"}))
	}
	return errors.Join(errs...)
}

func TestLoadReportsEveryProblem(t *testing.T) {
	for _, tc := range []struct {
		name  string
		dirs  []string
		opts  Options
		extra []want // problems no YAML line can carry
	}{
		{name: "broken", dirs: []string{"testdata/broken"}, opts: Options{Runtimes: []string{"builtin", "python", "shell"}}},
		{name: "duplicates", dirs: []string{"testdata/dup/one", "testdata/dup/two"}},
		{name: "compile errors", dirs: []string{"testdata/compile"}, opts: Options{CompileRule: fakeCompile}},
		{name: "no packs", dirs: []string{"testdata/nopack", "testdata/absent"}, extra: []want{
			{file: "testdata/nopack", msg: "no pack here: found neither pack.yaml nor subdirectories holding one"},
			{file: "testdata/absent", msg: "cannot read pack directory: no such file or directory"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.dirs, tc.opts)
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Load returned %v, %v; want a *LoadError", c, err)
			}
			match(t, le.Problems, append(wantsIn(t, tc.dirs...), tc.extra...))
			if !slices.IsSortedFunc(le.Problems, func(a, b Problem) int {
				return strings.Compare(fmt.Sprintf("%s\x00%s\x00%09d", a.Pack, a.Pos.File, a.Pos.Line), fmt.Sprintf("%s\x00%s\x00%09d", b.Pack, b.Pos.File, b.Pos.Line))
			}) {
				t.Errorf("problems are not sorted by pack, file and line:\n%v", err)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(le.Problems) {
				t.Errorf("error has %d lines for %d problems", n, len(le.Problems))
			}
			if t.Failed() {
				t.Logf("all problems:\n%v", err)
			}
		})
	}
}

func TestProblemFormat(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{Pack: "hello", Pos: domain.Pos{File: "rules/tick.yaml", Line: 7}, Field: "trigger.type", Msg: `unknown trigger "core.intervaltimr" (did you mean core.intervaltimer?)`},
			`pack "hello": rules/tick.yaml:7: field "trigger.type": unknown trigger "core.intervaltimr" (did you mean core.intervaltimer?)`},
		{Problem{Pack: "hello", Pos: domain.Pos{File: "actions"}, Msg: "permission denied"}, `pack "hello": actions: permission denied`},
		{Problem{Pos: domain.Pos{File: "/srv/packs"}, Msg: "no pack here"}, `/srv/packs: no pack here`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.p.Error(); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestLoadExamples(t *testing.T) {
	// A warning whatever the runtimes: the shell runtime executes a script
	// with a #! line itself, so it must be executable.
	const nox = `pack "good": actions/nox.yaml:5: field "entry_point": actions/nox.sh starts with #! but is not executable, so it cannot run: chmod +x it`
	for _, tc := range []struct {
		name     string
		runtimes []string
		warnings []string
	}{
		{name: "runtimes unknown", warnings: []string{nox}},
		{name: "all runtimes", runtimes: []string{"shell", "python", "builtin"}, warnings: []string{nox}},
		{name: "no python", runtimes: []string{"shell", "builtin"}, warnings: []string{nox,
			`pack "hello": actions/deploy.yaml:3: field "runtime": runtime "python" is not available (available: builtin, shell)`,
			`pack "hello": sensors/watcher.yaml:3: field "runtime": runtime "python" is not available (available: builtin, shell)`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load([]string{"examples", "testdata/good"}, Options{Runtimes: tc.runtimes, CompileRule: func(*domain.Rule) error { return nil }})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range c.Warnings() {
				got = append(got, w.Error())
			}
			if !slices.Equal(got, tc.warnings) {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.warnings, "\n"))
			}
		})
	}
}

func TestCatalogContents(t *testing.T) {
	c, err := Load([]string{"examples/hello", "testdata/good"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	refs := func(n int, ref func(int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = ref(i)
		}
		return out
	}
	packs, actions, rules, triggers, sensors := c.Packs(), c.Actions(), c.Rules(), c.Triggers(), c.Sensors()
	for _, tc := range []struct {
		kind string
		got  []string
		want []string
	}{
		{"packs", refs(len(packs), func(i int) string { return packs[i].Ref }), []string{"core", "good", "hello"}},
		{"actions", refs(len(actions), func(i int) string { return actions[i].Ref }),
			[]string{"core.echo", "core.http", "core.local", "core.noop", "core.sleep", "good.nox", "good.opts", "hello.deploy", "hello.greet"}},
		{"rules", refs(len(rules), func(i int) string { return rules[i].Ref }), []string{"good.newyear", "good.nightly", "hello.deploy", "hello.file_changed", "hello.heartbeat"}},
		{"triggers", refs(len(triggers), func(i int) string { return triggers[i].Ref }),
			[]string{"core.crontimer", "core.datetimer", "core.intervaltimer", "core.webhook", "hello.file_changed"}},
		{"sensors", refs(len(sensors), func(i int) string { return sensors[i].Ref }), []string{"hello.watcher"}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			if !slices.Equal(tc.got, tc.want) {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}

	t.Run("core pack", func(t *testing.T) {
		core, ok := c.Pack("core")
		if !ok || core.Dir != "" || len(core.Hash) != 64 || core.Version == "" {
			t.Fatalf("core pack: %+v", core)
		}
		echo, _ := c.Action("core.echo")
		if echo.Runtime != "shell" || echo.Cmd != `printf '%s\n' "$TROUPE_PARAM_MESSAGE"` || echo.EntryPoint != "" {
			t.Errorf("core.echo: %+v", echo)
		}
		for _, a := range core.Actions {
			if a.Description == "" || a.Timeout <= 0 || len(a.Schema) == 0 {
				t.Errorf("%s: description, timeout and schema are required of core actions: %+v", a.Ref, a)
			}
		}
		if tr, ok := c.Trigger("core.intervaltimer"); !ok || !strings.Contains(string(tr.ParametersSchema), `"enum":["seconds","minutes","hours","days"]`) {
			t.Errorf("core.intervaltimer: %+v", tr)
		}
		for _, tr := range core.Triggers {
			if len(tr.ParametersSchema) == 0 || len(tr.PayloadSchema) == 0 {
				t.Errorf("%s lacks a schema", tr.Ref)
			}
		}
	})

	t.Run("hello pack", func(t *testing.T) {
		hello, _ := c.Pack("hello")
		again, err := Load([]string{"examples"}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if h, _ := again.Pack("hello"); h.Hash != hello.Hash || !filepath.IsAbs(hello.Dir) {
			t.Errorf("hash %s then %s, dir %s", hello.Hash, h.Hash, hello.Dir)
		}
		for _, ref := range []string{"hello.deploy", "hello.greet"} {
			a, _ := c.Action(ref)
			if !isFile(a.EntryPoint) {
				t.Errorf("%s: entry point %q is not a file", ref, a.EntryPoint)
			}
		}
		if s, _ := c.Sensor("hello.watcher"); !isFile(s.EntryPoint) || !s.Enabled || !slices.Equal(s.TriggerTypes, []string{"hello.file_changed"}) {
			t.Errorf("hello.watcher: %+v", s)
		}
		hb, _ := c.Rule("hello.heartbeat")
		if got := domain.TriggerInstance(hb.Trigger.Type, hb.Trigger.Parameters); got != `core.intervaltimer{"delta":10,"unit":"seconds"}` {
			t.Errorf("heartbeat instance %s", got)
		}
		d, _ := c.Rule("hello.deploy")
		if len(d.Criteria) != 2 || d.Criteria[0].Key != "trigger.body.env" || d.Criteria[1].Pattern != 0 ||
			d.Criteria[0].Pos != (domain.Pos{File: "rules/deploy.yaml", Line: 8}) || d.Pos != (domain.Pos{File: "rules/deploy.yaml", Line: 1}) {
			t.Errorf("deploy criteria: %+v at %+v", d.Criteria, d.Pos)
		}
	})

	t.Run("defaults and search criteria", func(t *testing.T) {
		r, _ := c.Rule("good.nightly")
		if r.Enabled || r.Trigger.Parameters["timezone"] != "UTC" || r.Expression == "" {
			t.Errorf("nightly: %+v", r)
		}
		search := r.Criteria[1]
		if search.Condition != "all" || len(search.Items) != 2 || search.Items[1].Key != "item.size" || search.Items[1].Pattern != 2 || search.Items[1].Pos.Line != 18 {
			t.Errorf("search criterion: %+v", search)
		}
		a, _ := c.Action("good.opts")
		if !slices.Equal(a.ParamOrder, []string{"options", "level", "password"}) || !slices.Equal(a.SecretParams(), []string{"password"}) || a.Timeout != domain.DefaultTimeout {
			t.Errorf("good.opts: %+v", a)
		}
	})
}

// TestFieldLine: a compile problem lands on the line of the field package
// rules names, not on the line of the criterion's key or of the rule.
func TestFieldLine(t *testing.T) {
	const rule = `name: r
criteria:
  trigger.body.a:
    type: bogus
  trigger.f:
    type: search
    condition: some
    pattern:
      item.name:
        type: regex
        pattern: "("
expression: "("
action:
  ref: core.noop
  parameters:
    user: "{{ trigger.body. }}"
    hosts:
      - ok
      - "{{ trigger.x"
    nested: {a.b: "{{ x }}"}
`
	f := &file{l: &loader{}, path: "rules/r.yaml"}
	root := f.parse([]byte(rule))
	if root == nil {
		t.Fatalf("parse: %v", f.l.problems)
	}
	for _, tc := range []struct {
		field string
		line  int // 0: not in the file, so the compiler's position stands
	}{
		{`criteria."trigger.body.a"`, 3},
		{`criteria."trigger.body.a".type`, 4},
		{`criteria."trigger.body.a".pattern`, 0},
		{`criteria."trigger.f".condition`, 7},
		{`criteria."trigger.f".items`, 8},
		{`criteria."trigger.f".items."item.name"`, 9},
		{`criteria."trigger.f".items."item.name".pattern`, 11},
		{`criteria."trigger.nope".type`, 0},
		{`criteria."unclosed`, 0},
		{"expression", 12},
		{"action.parameters.user", 16},
		{"action.parameters.hosts.1", 19},
		{"action.parameters.hosts.2", 0},
		{"action.parameters.nested.a.b", 0},
		{"", 0},
	} {
		t.Run(tc.field, func(t *testing.T) {
			line, ok := fieldLine(root, tc.field)
			if ok != (tc.line > 0) || line != tc.line {
				t.Errorf("line %d, %v; want %d", line, ok, tc.line)
			}
		})
	}
}
