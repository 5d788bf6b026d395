package runtimes

import (
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/internal/troupetest"
)

// waitFor polls cond until it returns nil; on timeout the failure is cond's
// account of what is not yet true.
var waitFor = troupetest.WaitFor

func testConfig(t *testing.T) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.HTTPClient.Timeout = 30 * time.Second
	return cfg
}

func needPython(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 on PATH")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		wants []string // every problem must be reported
	}{
		{"default", func(*Config) {}, nil},
		{"empty", func(c *Config) { *c = Config{} }, []string{"max output must be positive, got 0", "shell is empty", "python is empty", "http client is nil"}},
		{"bad env", func(c *Config) { c.Env = []string{"OK=1", "=x", "NOEQUALS"} }, []string{"env[1] is not KEY=value", "env[2] is not KEY=value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			tc.edit(&cfg)
			err := cfg.Validate()
			if len(tc.wants) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("config accepted")
			}
			for _, want := range tc.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not report %q", err, want)
				}
			}
		})
	}
}

func TestRegistry(t *testing.T) {
	noPython := testConfig(t)
	noPython.Python = "/nonexistent/python3"
	for _, tc := range []struct {
		name      string
		cfg       Config
		names     []string
		wantNames []string
		wantErr   string
	}{
		{"explicit", testConfig(t), []string{"shell", "builtin", "shell"}, []string{"builtin", "shell"}, ""},
		{"unknown name", testConfig(t), []string{"shell", "java"}, nil, `build runtime registry: runtime "java" not found (available: builtin, python, python-warm, shell)`},
		{"explicit runtime that cannot work", noPython, []string{"python"}, nil, `build runtime registry: new python runtime: resolve interpreter "/nonexistent/python3": `},
		{"explicit warm runtime that cannot work", noPython, []string{"python-warm"}, nil, `build runtime registry: new python-warm runtime: resolve interpreter "/nonexistent/python3": `},
		{"every runtime that works", noPython, nil, []string{"builtin", "shell"}, ""},
		{"invalid config", Config{}, nil, nil, "build runtime registry: invalid runtimes config: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := NewRegistry(tc.cfg, tc.names)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one starting %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := reg.Names(); !slices.Equal(got, tc.wantNames) {
				t.Fatalf("names %v, want %v", got, tc.wantNames)
			}
			for _, n := range tc.wantNames {
				if rt, err := reg.Get(n); err != nil || rt.Name() != n {
					t.Errorf("Get(%q) = %v, %v", n, rt, err)
				}
			}
			if un := reg.Unavailable(); tc.names == nil && (un["python"] == nil || un["python-warm"] == nil) {
				t.Errorf("python or python-warm is missing from Unavailable() = %v", un)
			}
		})
	}
}

func TestRegistryGetUnknown(t *testing.T) {
	needPython(t)
	reg, err := NewRegistry(testConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = reg.Get("java")
	if want := `runtime "java" not found (available: builtin, python, python-warm, shell)`; err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("error %v wraps neither ErrNotFound nor domain.ErrNotFound", err)
	}
}

// TestRegistryInterpreter: script sensors of python-warm run under the same
// binary as python ones; a runtime without an interpreter says so.
func TestRegistryInterpreter(t *testing.T) {
	needPython(t)
	reg, err := NewRegistry(testConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	py, err := reg.Interpreter("python")
	if err != nil || len(py) != 1 || !filepath.IsAbs(py[0]) {
		t.Fatalf("Interpreter(python) = %q, %v", py, err)
	}
	if warm, err := reg.Interpreter("python-warm"); err != nil || !slices.Equal(warm, py) {
		t.Errorf("Interpreter(python-warm) = %q, %v; want %q", warm, err, py)
	}
	if _, err := reg.Interpreter("builtin"); err == nil || err.Error() != `runtime "builtin" cannot run scripts` {
		t.Errorf("Interpreter(builtin): %v", err)
	}
}
