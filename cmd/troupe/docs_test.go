package main

import (
	"bufio"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// configDoc is the operator's reference for every setting of the agent.
const configDoc = "../../docs/configuration.md"

// TestDocsConfigurationTable: docs/configuration.md has one row per setting
// of agentConfig — the struct the loader reads the file, the environment and
// the flags into — naming its flag and variable as the loader derives them,
// with a default and a meaning; and no row for a setting that is gone.
func TestDocsConfigurationTable(t *testing.T) {
	rows := docTable(t, configDoc, "| YAML key |", 5)
	typ := reflect.TypeFor[agentConfig]()
	known := map[string]bool{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		key := f.Tag.Get("yaml")
		known[key] = true
		t.Run(key, func(t *testing.T) {
			row, ok := rows[key]
			if !ok {
				t.Fatalf("%s has no row for setting %q (field %s); add one with its flag, variable, default and meaning", configDoc, key, f.Name)
			}
			if want := "`--" + flagName(f) + "`"; row[1] != want {
				t.Errorf("flag column of %q is %s, want %s", key, row[1], want)
			}
			if want := "`" + envName(f) + "`"; row[2] != want {
				t.Errorf("environment column of %q is %s, want %s", key, row[2], want)
			}
			if row[3] == "" || row[4] == "" {
				t.Errorf("row of %q has an empty default or meaning: %q", key, row)
			}
		})
	}
	for key := range rows {
		if !known[key] {
			t.Errorf("%s has a row for %q, which is not a setting of agentConfig", configDoc, key)
		}
	}
}

// TestDocsAgentFlags: the flags of `troupe agent` that are not settings
// (--config, --dev, …) have a row in the table of flag-only options, and
// that table names no flag the command lacks.
func TestDocsAgentFlags(t *testing.T) {
	rows := docTable(t, configDoc, "| flag |", 3)
	settings := map[string]bool{}
	typ := reflect.TypeFor[agentConfig]()
	for i := range typ.NumField() {
		settings[flagName(typ.Field(i))] = true
	}
	cmd := newAgentCommand()
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if settings[fl.Name] {
			return
		}
		found := false
		for key := range rows {
			found = found || key == "--"+fl.Name || strings.HasPrefix(key, "--"+fl.Name+" ")
		}
		if !found {
			t.Errorf("%s has no row for flag --%s (%s)", configDoc, fl.Name, fl.Usage)
		}
	})
	for key := range rows {
		name, _, _ := strings.Cut(strings.TrimPrefix(key, "--"), " ")
		if cmd.Flags().Lookup(name) == nil {
			t.Errorf("%s has a row for %s, which is not a flag of troupe agent", configDoc, key)
		}
	}
}

// docTable reads the Markdown table of path whose header starts with
// header into its rows, keyed by the first cell without its backquotes;
// every row must have n cells, trimmed.
func docTable(t *testing.T, path, header string, n int) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string][]string{}
	in := false
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		switch {
		case strings.HasPrefix(text, header):
			in = true
		case !in:
		case !strings.HasPrefix(text, "|"):
			if len(rows) == 0 {
				t.Fatalf("%s:%d: the table %q has no rows", path, line, header)
			}
			return rows
		case strings.HasPrefix(text, "|---"):
		default:
			cells := tableCells(text)
			if len(cells) != n {
				t.Fatalf("%s:%d: %d cells, want %d: %s", path, line, len(cells), n, text)
			}
			key := strings.Trim(cells[0], "`")
			if _, dup := rows[key]; dup {
				t.Errorf("%s:%d: a second row for %q", path, line, key)
			}
			rows[key] = cells
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !in {
		t.Fatalf("%s: no table whose header starts with %q", path, header)
	}
	return rows
}

// tableCells splits a Markdown table row on the pipes that are not escaped
// (`\|` is a pipe inside a cell).
func tableCells(row string) []string {
	row = strings.TrimSpace(row)
	row = strings.TrimSuffix(strings.TrimPrefix(row, "|"), "|")
	var cells []string
	var cell strings.Builder
	for i := 0; i < len(row); i++ {
		switch {
		case row[i] == '\\' && i+1 < len(row) && row[i+1] == '|':
			cell.WriteByte('|')
			i++
		case row[i] == '|':
			cells = append(cells, strings.TrimSpace(cell.String()))
			cell.Reset()
		default:
			cell.WriteByte(row[i])
		}
	}
	return append(cells, strings.TrimSpace(cell.String()))
}
