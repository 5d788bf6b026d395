package e2e

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troupehq/troupe/internal/troupetest"
)

// troupe runs the CLI against node n and returns its output and exit code.
func troupe(t *testing.T, n *Node, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "TROUPE_ADDR="+n.Addr)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
		t.Fatal(err)
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// startTroupe starts the CLI against node n without waiting for it, for
// commands that go on (tail, watch): its stdout is to read as it comes,
// its stderr collects in the buffer. ctx's end kills it; it is waited for
// when the test ends.
func startTroupe(t *testing.T, ctx context.Context, n *Node, args ...string) (*exec.Cmd, io.Reader, *troupetest.Buffer) {
	t.Helper()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "TROUPE_ADDR="+n.Addr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &troupetest.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, stdout, stderr
}

func TestCLIRunAndList(t *testing.T) {
	n := StartNode(t, "n1")
	for _, tc := range []struct {
		args    []string
		code    int
		mention string
	}{
		{[]string{"run", "core.echo", "message=hi from the cli"}, 0, "hi from the cli"},
		{[]string{"run", "core.local", "cmd=echo oops >&2; exit 3"}, 1, "oops"},
		{[]string{"run", "core.local", "cmd=echo tailed; exit 5", "--tail"}, 1, "tailed\nexecution "},
		{[]string{"run", "core.local", "cmd=echo slow; sleep 10", "--tail", "--timeout", "500ms"}, 2, "slow\ntroupe: stopped following at the timeout"},
		{[]string{"run", "core.nope"}, 2, "core.nope"},
		{[]string{"run", "core.echo"}, 2, "message"},
		{[]string{"execution", "list"}, 0, "core.local"},
		{[]string{"action", "list"}, 0, "core.http"},
		{[]string{"trigger", "get", "core.intervaltimer"}, 0, "core.intervaltimer"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, code := troupe(t, n, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.mention) {
				t.Errorf("exit %d, want %d; output should mention %q:\n%s", code, tc.code, tc.mention, out)
			}
		})
	}
}

// TestBadConfigurationIsRefused: a broken pack or config file stops the
// agent before it starts, listing every problem with its place.
func TestBadConfigurationIsRefused(t *testing.T) {
	pack := writePack(t, "broken", map[string]string{
		"rules/tick.yaml": `name: tick
trigger:
  type: core.intervaltimr
  parameters: {unit: seconds, delta: 1}
action:
  ref: core.echo
  parameters: {mesage: hi}
`,
	})
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "troupe.yaml")
	os.WriteFile(cfgFile, []byte("data_dir: "+dir+"\nhttp_adr: 127.0.0.1:1\n"), 0o644)
	goodCfg := filepath.Join(dir, "good.yaml")
	os.WriteFile(goodCfg, []byte("data_dir: "+dir+"\nslots: 3\n"), 0o644)

	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		mentions []string
	}{
		{"broken pack", []string{"agent", "--data-dir", dir, "--packs", pack}, 2,
			[]string{"rules/tick.yaml:3", `unknown trigger "core.intervaltimr" (did you mean core.intervaltimer?)`, "rules/tick.yaml:7", "mesage"}},
		{"unknown config key", []string{"agent", "--config", cfgFile}, 2, []string{"troupe.yaml", `unknown field "http_adr"`, "2 | http_adr", "did you mean http_addr?"}},
		{"bad flag value", []string{"agent", "--data-dir", dir, "--slots", "many"}, 2, []string{"--slots", "many"}},
		{"check-config ok", []string{"agent", "--config", goodCfg, "--check-config"}, 0, []string{"configuration ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binary, tc.args...)
			out, _ := cmd.CombinedOutput()
			if cmd.ProcessState.ExitCode() != tc.code {
				t.Errorf("exit %d, want %d:\n%s", cmd.ProcessState.ExitCode(), tc.code, out)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(string(out), m) {
					t.Errorf("output does not mention %q:\n%s", m, out)
				}
			}
		})
	}
}
