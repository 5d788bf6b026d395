package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// column is one column of a human table.
type column[T any] struct {
	name  string
	value func(T) string
}

// printTable is the one printer of every human list.
func printTable[T any](w io.Writer, items []T, cols []column[T]) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	cells := make([]string, len(cols))
	for i, c := range cols {
		cells[i] = c.name
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
	for _, it := range items {
		for i, c := range cols {
			cells[i] = cell(c.value(it))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// cell fits v on one line of a table: a tab or newline would break the
// layout, and long text would push every later column off screen.
func cell(v string) string {
	v = strings.Join(strings.Fields(v), " ")
	if r := []rune(v); len(r) > 60 {
		v = string(r[:59]) + "…"
	}
	return cmpOr(v, "-")
}

func cmpOr(v, dflt string) string {
	if v == "" {
		return dflt
	}
	return v
}

// field is one line of a human key: value block; a value with a newline
// (pretty JSON, program output) is printed as a section below the aligned
// lines.
type field struct{ name, value string }

func fields[T any](f func(T) []field) func(io.Writer, T) error {
	return func(w io.Writer, v T) error { return printFields(w, f(v)) }
}

// printFields prints non-empty fields.
func printFields(w io.Writer, fs []field) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	var sections []field
	for _, f := range fs {
		switch {
		case f.value == "":
		case strings.Contains(f.value, "\n"):
			sections = append(sections, f)
		default:
			fmt.Fprintf(tw, "%s:\t%s\n", f.name, strings.TrimRight(f.value, "\n"))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range sections {
		if _, err := fmt.Fprintf(w, "\n%s:\n%s\n", s.name, strings.TrimRight(s.value, "\n")); err != nil {
			return err
		}
	}
	return nil
}

// printExecution prints the summary `troupe run` ends with or, when full,
// everything `troupe execution get` knows.
func printExecution(w io.Writer, e *api.ExecutionView, full bool) error {
	fs := []field{{"id", e.ID.String()}, {"action", e.Action}, {"status", e.Status.String()}, {"duration", durationText(e)}}
	if full {
		fs = append(fs, field{"runtime", e.Runtime}, field{"attempt", strconv.Itoa(e.Attempt)},
			field{"rule", e.Rule}, field{"event", idText(e.Event)}, field{"enforcement", idText(e.Enforcement)},
			field{"rerun of", idText(e.RerunOf)},
			field{"node", e.Node}, field{"worker", e.Worker}, field{"created", timeText(e.CreatedAt)},
			field{"started", timePtrText(e.StartedAt)}, field{"finished", timePtrText(e.FinishedAt)},
			field{"parameters", jsonText(e.Parameters)})
	}
	fs = append(fs, field{"error", e.Error})
	if r := e.Result; r != nil {
		if r.ExitCode != 0 || full {
			fs = append(fs, field{"exit code", strconv.Itoa(r.ExitCode)})
		}
		if len(r.Output) > 0 {
			fs = append(fs, field{"output", section(indented(r.Output))})
		} else {
			fs = append(fs, field{"stdout", section(r.Stdout)})
		}
		fs = append(fs, field{"stderr", section(r.Stderr)})
	}
	if err := printFields(w, fs); err != nil || !full || len(e.History) == 0 {
		return err
	}
	fmt.Fprintln(w, "\nhistory:")
	return printTable(w, e.History, []column[domain.HistoryEntry]{
		{"AT", func(h domain.HistoryEntry) string { return h.At.Local().Format("2006-01-02 15:04:05.000") }},
		{"STATUS", func(h domain.HistoryEntry) string { return h.Status.String() }},
		{"ATTEMPT", func(h domain.HistoryEntry) string { return strconv.Itoa(h.Attempt) }},
		{"NODE", func(h domain.HistoryEntry) string { return h.Node }},
		{"ERROR", func(h domain.HistoryEntry) string { return h.Error }},
	})
}

// section makes non-empty text print as a section of its own even when it
// is one line, so program output never mixes with the aligned fields.
func section(s string) string {
	if s == "" {
		return ""
	}
	return strings.TrimRight(s, "\n") + "\n"
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // commands and URLs in output must read as typed
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// jsonText renders v compactly when that fits a line, else indented; empty
// values render as "" so that their field is left out.
func jsonText(v any) string {
	if rv := reflect.ValueOf(v); !rv.IsValid() || (rv.Kind() == reflect.Map || rv.Kind() == reflect.Slice) && rv.Len() == 0 {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("(not JSON: %v)", err)
	}
	if len(b) <= 72 {
		return string(b)
	}
	return indented(b)
}

func indented(b []byte) string {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return string(b)
	}
	return out.String()
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format(time.DateTime)
}

func timePtrText(t *time.Time) string {
	if t == nil {
		return ""
	}
	return timeText(*t)
}

func idText(id domain.ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

func durationText(e *api.ExecutionView) string {
	d := e.Duration()
	switch {
	case e.StartedAt == nil:
		return ""
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func refs[T any](items []T, ref func(T) string) string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = ref(it)
	}
	return strings.Join(out, ", ")
}
