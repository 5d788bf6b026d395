package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/packs"
)

func (o *cli) client() *api.Client { return api.NewClient(o.addr) }

// paramsHelp is how `run` and `execution rerun` read key=value arguments.
const paramsHelp = `A value is JSON when it parses as JSON (42, true, null, "quoted", {"a": 1}, [1, 2]),
otherwise the text itself. key=@file reads the value from file, typed the same way;
key=@@text passes the literal text @text.

Exit codes: 0 succeeded; 1 another terminal status; 2 usage or API error, or
--timeout passed before the execution ended (it goes on).`

func newRunCommand(o *cli) *cobra.Command {
	return startCommand(o, &cobra.Command{
		Use:     "run REF [key=value | key=@file ...]",
		Short:   "Run an action and wait for its result",
		Long:    "Run an action and wait for its result.\n\n" + paramsHelp,
		Example: "  troupe run core.local cmd='uname -a'\n  troupe run demo.deploy hosts='[\"a\",\"b\"]' config=@deploy.json --timeout 5m",
	}, (*api.Client).Run)
}

// rerunCommand is `troupe execution rerun`.
func rerunCommand(o *cli) *cobra.Command {
	return startCommand(o, &cobra.Command{
		Use:   "rerun ID [key=value | key=@file ...]",
		Short: "Run an execution's action again with its parameters, and wait for the result",
		Long: `Run an execution's action again with the same parameters, secret ones
included, and wait for the result. key=value arguments replace single
parameters. The new execution is kept on the node that owns the first
one, and names it as rerun_of.

` + paramsHelp,
		Example: "  troupe execution rerun 01M8B0Q5ZC7J3RB3XG5AW0N3PZ\n  troupe execution rerun 01M8B0Q5ZC7J3RB3XG5AW0N3PZ hosts='[\"b\"]'",
	}, (*api.Client).Rerun)
}

// startCommand completes cmd, whose first argument names what start
// starts (an action, an execution to run again) and whose others are
// parameters: it starts an execution, then waits for it and prints it.
func startCommand(o *cli, cmd *cobra.Command, start func(*api.Client, context.Context, string, map[string]any) (*api.ExecutionView, error)) *cobra.Command {
	var async, follow bool
	var timeout time.Duration
	cmd.Args = cobra.MinimumNArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		params, err := parseParams(args[1:], os.ReadFile)
		if err != nil {
			return err
		}
		c := o.client()
		e, err := start(c, cmd.Context(), args[0], params)
		if err != nil {
			return err
		}
		switch {
		case async:
			if o.output == "json" {
				return writeJSON(o.stdout, e)
			}
			_, err := fmt.Fprintln(o.stdout, e.ID)
			return err
		}
		ctx := cmd.Context()
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		if follow {
			return tail(ctx, o, c, e.ID.String())
		}
		final, err := c.Wait(ctx, e.ID.String())
		switch {
		case err != nil && cmd.Context().Err() != nil:
			return fmt.Errorf("interrupted; execution %s goes on (troupe execution get %s)", e.ID, e.ID)
		case errors.Is(err, context.DeadlineExceeded):
			// The poll in flight was cut short, so ask once more for the
			// status to report.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), 5*time.Second)
			defer cancel()
			if cur, err := c.Execution(ctx, e.ID.String(), 0); err == nil {
				final = cur
			}
			return fmt.Errorf("gave up after %s: execution %s is still %s (troupe execution get %s)", timeout, e.ID, cmp.Or(final, e).Status, e.ID)
		case err != nil:
			return err
		}
		if o.output == "json" {
			err = writeJSON(o.stdout, final)
		} else {
			err = printExecution(o.stdout, final, false)
		}
		return cmp.Or(err, outcome(final.Status))
	}
	cmd.Flags().BoolVar(&async, "async", false, "print the execution ID and return without waiting")
	cmd.Flags().BoolVar(&follow, "tail", false, "print the action's output as it prints it (as troupe execution tail), not the result at the end")
	cmd.MarkFlagsMutuallyExclusive("async", "tail")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "stop waiting (or following) after this long (0 waits until the execution ends)")
	return cmd
}

// outcome is the error, hence exit code, a terminal status maps to.
func outcome(st domain.Status) error {
	if st == domain.StatusSucceeded {
		return nil
	}
	return &statusError{st}
}

// parseParams turns key=value arguments into action parameters; see the
// help of `troupe run` for the typing rules.
func parseParams(args []string, readFile func(string) ([]byte, error)) (map[string]any, error) {
	params := make(map[string]any, len(args))
	for _, arg := range args {
		key, val, ok := strings.Cut(arg, "=")
		if !ok || key == "" {
			return nil, fmt.Errorf("argument %q: want key=value, key=@file or key=@@text", arg)
		}
		if _, dup := params[key]; dup {
			return nil, fmt.Errorf("parameter %q is given twice", key)
		}
		switch {
		case strings.HasPrefix(val, "@@"):
			params[key] = val[1:]
			continue
		case strings.HasPrefix(val, "@"):
			b, err := readFile(val[1:])
			if err != nil {
				return nil, fmt.Errorf("parameter %q: %w", key, err)
			}
			val = string(b)
		}
		params[key] = typed(val)
	}
	return params, nil
}

// typed is s as one JSON value when it is one, else s. Numbers stay
// json.Number so they reach the node exactly as typed.
func typed(s string) any {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return s
	}
	if _, err := dec.Token(); err != io.EOF {
		return s
	}
	return v
}

// resource is one kind of thing the API lists and shows; every
// `troupe <name> list|get` is built from one.
type resource[T any] struct {
	name    string   // the command, singular
	key     string   // what get takes: ID or REF
	filters []string // list flags, named as the API's query parameters
	list    func(*api.Client, context.Context, api.ListQuery) (api.Page[T], error)
	get     func(*api.Client, context.Context, string) (T, error)
	columns []column[T]
	show    func(io.Writer, T) error // get's human form
}

func (r resource[T]) command(o *cli) *cobra.Command {
	cmd := &cobra.Command{Use: r.name, Short: fmt.Sprintf("List and show %ss", r.name)}
	var q api.ListQuery
	list := &cobra.Command{
		Use:   "list",
		Short: fmt.Sprintf("List %ss", r.name),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := r.list(o.client(), cmd.Context(), q)
			if err != nil {
				return err
			}
			if p.Partial {
				fmt.Fprintf(o.stderr, "troupe: warning: partial list; unreachable nodes: %s\n", strings.Join(p.Unreachable, ", "))
			}
			if o.output == "json" {
				return writeJSON(o.stdout, p)
			}
			if err := printTable(o.stdout, p.Items, r.columns); err != nil {
				return err
			}
			if p.Next != "" {
				_, err = fmt.Fprintf(o.stdout, "\nmore: --cursor %s\n", p.Next)
			}
			return err
		},
	}
	for _, f := range r.filters {
		list.Flags().StringVar(q.Field(f), f, "", fmt.Sprintf("only %ss with this %s", r.name, f))
	}
	list.Flags().IntVar(&q.Limit, "limit", 0, fmt.Sprintf("at most this many (0: the node's default, %d)", api.DefaultLimit))
	list.Flags().StringVar(&q.Cursor, "cursor", "", "resume after the page that printed this cursor")
	get := &cobra.Command{
		Use:   "get " + r.key,
		Short: fmt.Sprintf("Show one %s", r.name),
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := r.get(o.client(), cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if o.output == "json" {
				return writeJSON(o.stdout, v)
			}
			return r.show(o.stdout, v)
		},
	}
	cmd.AddCommand(list, get)
	return cmd
}

// watchCommand is `troupe execution watch`: the node's stream of finished
// executions, one line (or one JSON object) each, as they finish.
func watchCommand(o *cli) *cobra.Command {
	var action string
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Print executions as they finish on the node, until interrupted",
		Long: `Print each execution that the node finishes from now on, as it finishes:
one line each, or one JSON object per line with -o json. Each node streams
the executions it owns (those of the events and runs it accepted); in a
cluster, watch every member to see them all.

When the connection breaks, watch connects again and resumes after the
last execution it printed, so none is missed; when the node cannot resume
(it restarted, or this watch fell too far behind), it says so on stderr
and goes on from then.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var last string
			var printErr error // stdout failed: stop rather than reconnect
			connected, pause := false, watchRetryMin
			for {
				err := o.client().Stream(cmd.Context(), action, last, func() { connected, pause = true, watchRetryMin },
					func(ev api.StreamEvent) error {
						if printErr = printFinished(o, ev); printErr == nil {
							last = ev.ID
						}
						return printErr
					})
				_, answered := errors.AsType[*api.Error](err)
				switch {
				case err == nil || cmd.Context().Err() != nil:
					return nil
				case printErr != nil:
					return printErr
				case errors.Is(err, api.ErrStreamOverflow):
					fmt.Fprintf(o.stderr, "troupe: warning: %v; going on from now (troupe execution list shows them)\n", err)
					last = ""
					continue
				case !connected || answered:
					return err
				}
				fmt.Fprintf(o.stderr, "troupe: warning: %v; connecting again in %s\n", err, pause)
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(pause):
				}
				pause = min(2*pause, watchRetryMax)
			}
		},
	}
	cmd.Flags().StringVar(&action, "action", "", "only executions of this action")
	return cmd
}

// How long watch waits before connecting again, doubling from one to the other.
const (
	watchRetryMin = 500 * time.Millisecond
	watchRetryMax = 10 * time.Second
)

// printFinished prints one execution of the stream as watch does.
func printFinished(o *cli, ev api.StreamEvent) error {
	if o.output == "json" {
		_, err := fmt.Fprintf(o.stdout, "%s\n", ev.Data)
		return err
	}
	e, err := ev.View()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(o.stdout, "%s  %-10s  %-8s  %-30s  %s\n", timePtrText(e.FinishedAt), e.Status,
		durationText(e), e.Action, e.ID)
	return err
}

// tailCommand is `troupe execution tail`: an execution's output as its
// action prints it.
func tailCommand(o *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "tail ID",
		Short: "Print an execution's output as its action prints it, until the execution ends",
		Long: `Print what an execution's action prints, its stdout on stdout and its stderr
on stderr, from the start and as it prints it; then, on stderr, how the
execution ended. When a retry runs the action again, a line on stderr
says which attempt follows. An execution that has ended prints what its
record kept (of its last attempt).
Any member answers; the output comes from the member that runs the action.
Builtin actions print nothing until they end.

Exit codes: 0 succeeded; 1 another terminal status; 2 usage or API error.`,
		Example: "  troupe execution tail 01M8B0Q5ZC7J3RB3XG5AW0N3PZ\n  troupe run demo.deploy --async | xargs troupe execution tail",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return tail(cmd.Context(), o, o.client(), args[0])
		},
	}
}

// tail prints execution id's output as its action prints it, then how it
// ended, and returns the error (exit code) of that end.
func tail(ctx context.Context, o *cli, c *api.Client, id string) error {
	final, err := c.Output(ctx, id, api.OutputFrom{}, func(stream string, chunk []byte) error {
		var err error
		switch stream {
		case "attempt":
			_, err = fmt.Fprintf(o.stderr, "--- attempt %s ---\n", chunk)
		case "stderr":
			_, err = o.stderr.Write(chunk)
		default:
			_, err = o.stdout.Write(chunk)
		}
		return err
	})
	switch {
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("stopped following at the timeout; execution %s goes on (troupe execution get %s)", id, id)
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("interrupted; execution %s goes on (troupe execution get %s)", id, id)
	case err != nil:
		return err
	}
	end := fmt.Sprintf("execution %s %s", final.ID, final.Status)
	if d := durationText(final); d != "" {
		end += " after " + d
	}
	if final.Error != "" {
		end += ": " + final.Error
	}
	fmt.Fprintln(o.stderr, end)
	return outcome(final.Status)
}

func resourceCommands(o *cli) []*cobra.Command {
	executions := resource[*api.ExecutionView]{
		name: "execution", key: "ID", filters: []string{"action", "status", "rule", "event"},
		list: (*api.Client).Executions,
		get: func(c *api.Client, ctx context.Context, id string) (*api.ExecutionView, error) {
			return c.Execution(ctx, id, 0)
		},
		columns: []column[*api.ExecutionView]{
			{"ID", func(e *api.ExecutionView) string { return e.ID.String() }},
			{"ACTION", func(e *api.ExecutionView) string { return e.Action }},
			{"STATUS", func(e *api.ExecutionView) string { return e.Status.String() }},
			{"RULE", func(e *api.ExecutionView) string { return e.Rule }},
			{"CREATED", func(e *api.ExecutionView) string { return timeText(e.CreatedAt) }},
			{"DURATION", durationText},
		},
		show: func(w io.Writer, e *api.ExecutionView) error { return printExecution(w, e, true) },
	}.command(o)
	executions.AddCommand(watchCommand(o), rerunCommand(o), tailCommand(o))
	return []*cobra.Command{
		executions,
		resource[*domain.Event]{
			name: "event", key: "ID", filters: []string{"trigger"},
			list: (*api.Client).Events, get: (*api.Client).Event,
			columns: []column[*domain.Event]{
				{"ID", func(e *domain.Event) string { return e.ID.String() }},
				{"TRIGGER", func(e *domain.Event) string { return e.Trigger }},
				{"SOURCE", func(e *domain.Event) string { return e.Source }},
				{"NODE", func(e *domain.Event) string { return e.Node }},
				{"CREATED", func(e *domain.Event) string { return timeText(e.CreatedAt) }},
			},
			show: fields(func(e *domain.Event) []field {
				return []field{{"id", e.ID.String()}, {"trigger", e.Trigger}, {"instance", e.Instance}, {"source", e.Source},
					{"node", e.Node}, {"created", timeText(e.CreatedAt)}, {"payload", jsonText(e.Payload)}}
			}),
		}.command(o),
		resource[*domain.Enforcement]{
			name: "enforcement", key: "ID", filters: []string{"rule", "event"},
			list: (*api.Client).Enforcements, get: (*api.Client).Enforcement,
			columns: []column[*domain.Enforcement]{
				{"ID", func(e *domain.Enforcement) string { return e.ID.String() }},
				{"RULE", func(e *domain.Enforcement) string { return e.Rule }},
				{"STATUS", func(e *domain.Enforcement) string { return string(e.Status) }},
				{"EVENT", func(e *domain.Enforcement) string { return e.Event.String() }},
				{"EXECUTION", func(e *domain.Enforcement) string { return idText(e.Execution) }},
				{"CREATED", func(e *domain.Enforcement) string { return timeText(e.CreatedAt) }},
			},
			show: fields(func(e *domain.Enforcement) []field {
				return []field{{"id", e.ID.String()}, {"rule", e.Rule}, {"action", e.Action}, {"status", string(e.Status)},
					{"event", e.Event.String()}, {"execution", idText(e.Execution)}, {"node", e.Node},
					{"created", timeText(e.CreatedAt)}, {"error", e.Error}}
			}),
		}.command(o),
		resource[*domain.Rule]{
			name: "rule", key: "REF", filters: []string{"pack"},
			list: (*api.Client).Rules, get: (*api.Client).Rule,
			columns: []column[*domain.Rule]{
				{"REF", func(r *domain.Rule) string { return r.Ref }},
				{"ENABLED", func(r *domain.Rule) string { return strconv.FormatBool(r.Enabled) }},
				{"TRIGGER", func(r *domain.Rule) string { return r.Trigger.Type }},
				{"ACTION", func(r *domain.Rule) string { return r.Action.Ref }},
				{"DESCRIPTION", func(r *domain.Rule) string { return r.Description }},
			},
			show: fields(func(r *domain.Rule) []field {
				return []field{{"ref", r.Ref}, {"description", r.Description}, {"enabled", strconv.FormatBool(r.Enabled)},
					{"trigger", r.Trigger.Type}, {"trigger parameters", jsonText(r.Trigger.Parameters)},
					{"criteria", jsonText(r.Criteria)}, {"expression", r.Expression},
					{"action", r.Action.Ref}, {"action parameters", jsonText(r.Action.Parameters)}}
			}),
		}.command(o),
		resource[*domain.Action]{
			name: "action", key: "REF", filters: []string{"pack"},
			list: (*api.Client).Actions, get: (*api.Client).Action,
			columns: []column[*domain.Action]{
				{"REF", func(a *domain.Action) string { return a.Ref }},
				{"RUNTIME", func(a *domain.Action) string { return a.Runtime }},
				{"TIMEOUT", func(a *domain.Action) string { return a.Timeout.String() }},
				{"DESCRIPTION", func(a *domain.Action) string { return a.Description }},
			},
			show: fields(func(a *domain.Action) []field {
				return []field{{"ref", a.Ref}, {"description", a.Description}, {"runtime", a.Runtime},
					{"entry point", a.EntryPoint}, {"cmd", a.Cmd}, {"timeout", a.Timeout.String()},
					{"parameters", jsonText(a.Parameters)}}
			}),
		}.command(o),
		resource[*domain.Trigger]{
			name: "trigger", key: "REF", filters: []string{"pack"},
			list: (*api.Client).Triggers, get: (*api.Client).Trigger,
			columns: []column[*domain.Trigger]{
				{"REF", func(t *domain.Trigger) string { return t.Ref }},
				{"DESCRIPTION", func(t *domain.Trigger) string { return t.Description }},
			},
			show: fields(func(t *domain.Trigger) []field {
				return []field{{"ref", t.Ref}, {"description", t.Description},
					{"parameters schema", jsonText(t.ParametersSchema)}, {"payload schema", jsonText(t.PayloadSchema)}}
			}),
		}.command(o),
		resource[*domain.Sensor]{
			name: "sensor", key: "REF", filters: []string{"pack"},
			list: (*api.Client).Sensors, get: (*api.Client).Sensor,
			columns: []column[*domain.Sensor]{
				{"REF", func(s *domain.Sensor) string { return s.Ref }},
				{"RUNTIME", func(s *domain.Sensor) string { return s.Runtime }},
				{"ENABLED", func(s *domain.Sensor) string { return strconv.FormatBool(s.Enabled) }},
				{"TRIGGERS", func(s *domain.Sensor) string { return strings.Join(s.TriggerTypes, ",") }},
			},
			show: fields(func(s *domain.Sensor) []field {
				return []field{{"ref", s.Ref}, {"description", s.Description}, {"runtime", s.Runtime},
					{"entry point", s.EntryPoint}, {"enabled", strconv.FormatBool(s.Enabled)},
					{"triggers", strings.Join(s.TriggerTypes, ", ")}}
			}),
		}.command(o),
		packCommand(o),
	}
}

func packCommand(o *cli) *cobra.Command {
	cmd := resource[*domain.Pack]{
		name: "pack", key: "REF",
		list: (*api.Client).Packs, get: (*api.Client).Pack,
		columns: []column[*domain.Pack]{
			{"REF", func(p *domain.Pack) string { return p.Ref }},
			{"VERSION", func(p *domain.Pack) string { return p.Version }},
			{"SOURCE", func(p *domain.Pack) string { return p.Source }},
			{"MEMBERS", membersText},
			{"ACTIONS", func(p *domain.Pack) string { return strconv.Itoa(len(p.Actions)) }},
			{"RULES", func(p *domain.Pack) string { return strconv.Itoa(len(p.Rules)) }},
			{"SENSORS", func(p *domain.Pack) string { return strconv.Itoa(len(p.Sensors)) }},
		},
		show: fields(func(p *domain.Pack) []field {
			installed := ""
			if p.InstalledAt != nil {
				installed = timeText(*p.InstalledAt) + " on " + p.InstalledOn
			}
			fs := []field{{"ref", p.Ref}, {"version", p.Version}, {"description", p.Description},
				{"source", p.Source}, {"installed", installed}, {"dir", p.Dir}, {"hash", p.Hash},
				{"actions", refs(p.Actions, func(a *domain.Action) string { return a.Ref })},
				{"rules", refs(p.Rules, func(r *domain.Rule) string { return r.Ref })},
				{"triggers", refs(p.Triggers, func(t *domain.Trigger) string { return t.Ref })},
				{"sensors", refs(p.Sensors, func(s *domain.Sensor) string { return s.Ref })}}
			for _, m := range p.Members {
				fs = append(fs, field{"member " + m.Node, strings.TrimSpace(fmt.Sprintf("%s %s %s %s", m.State, m.Version, short(m.Hash), m.Error))})
			}
			return fs
		}),
	}.command(o)
	install := &cobra.Command{
		Use:   "install DIR | FILE.tgz",
		Short: "Install a pack on every member (or upgrade it)",
		Long: `Install a pack on every member of the cluster, or replace its installed version.

DIR is a pack directory (holding pack.yaml); FILE.tgz a gzipped tar of one. The node
checks the pack against every other installed pack first and refuses it, naming
file, line and field, if it does not load. The other members fetch it within seconds;
'troupe pack get REF' shows each member's version and hash.`,
		Example: "  troupe pack install ./mypack\n  troupe pack install mypack-1.2.0.tgz",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			archive, err := readPack(args[0])
			if err != nil {
				return err
			}
			p, changed, err := o.client().InstallPack(cmd.Context(), archive)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return writeJSON(o.stdout, p)
			}
			what := "installed"
			if !changed {
				what = "already installed, unchanged"
			}
			_, err = fmt.Fprintf(o.stdout, "pack %s %s %s (hash %s)\n", p.Ref, p.Version, what, short(p.Hash))
			return err
		},
	}
	remove := &cobra.Command{
		Use:   "remove REF",
		Short: "Uninstall a pack from every member",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.client().RemovePack(cmd.Context(), args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(o.stdout, "pack %s removed\n", args[0])
			return err
		},
	}
	cmd.AddCommand(install, remove)
	return cmd
}

// readPack is the archive to upload for a pack directory or archive file.
func readPack(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return packs.Archive(path)
	}
	return os.ReadFile(path)
}

// membersText sums up the members' copies: "3 same", or the odd ones out.
func membersText(p *domain.Pack) string {
	var same int
	var odd []string
	for _, m := range p.Members {
		if m.State == "same" {
			same++
		} else {
			odd = append(odd, m.Node+" "+m.State)
		}
	}
	return strings.Join(append([]string{strconv.Itoa(same) + " same"}, odd...), ", ")
}
