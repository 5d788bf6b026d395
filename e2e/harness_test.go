package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/internal/troupetest"
)

// binary is the troupe binary built once for the whole package.
var binary string

func TestMain(m *testing.M) { troupetest.Main(m, &binary) }

// Node is one troupe agent process under test.
type Node struct {
	t       *testing.T
	Name    string
	DataDir string
	Addr    string // http://127.0.0.1:PORT
	Client  *api.Client
	// GossipAddr and RemoteAddr are the cluster addresses of a node the
	// cluster harness started (ip:port); empty otherwise.
	GossipAddr string
	RemoteAddr string
	port       int // HTTP port kept across restarts; 0 picks a free one at each start
	args       []string
	env        []string // added to the test's environment
	cmd        *exec.Cmd
	exited     chan struct{}
	logMu      sync.Mutex
	log        bytes.Buffer
}

// NodeOption adjusts how a node is started.
type NodeOption func(*Node)

// WithPacks loads the given pack directories (besides the core pack).
func WithPacks(dirs ...string) NodeOption {
	return func(n *Node) { n.args = append(n.args, "--packs", strings.Join(dirs, ",")) }
}

// WithArgs adds raw agent flags.
func WithArgs(args ...string) NodeOption {
	return func(n *Node) { n.args = append(n.args, args...) }
}

// WithEnv adds KEY=value pairs to the agent's environment.
func WithEnv(kv ...string) NodeOption {
	return func(n *Node) { n.env = append(n.env, kv...) }
}

// StartNode starts an agent with a fresh data dir and a free port and waits
// until it is ready. The process is killed when the test ends.
func StartNode(t *testing.T, name string, opts ...NodeOption) *Node {
	t.Helper()
	n := &Node{t: t, Name: name, DataDir: filepath.Join(t.TempDir(), name)}
	for _, o := range opts {
		o(n)
	}
	n.start()
	t.Cleanup(func() {
		n.Kill()
		if t.Failed() {
			t.Logf("--- log of node %s ---\n%s", n.Name, n.Log())
		}
	})
	return n
}

func (n *Node) start() {
	n.t.Helper()
	n.spawn()
	n.waitReady()
}

// spawn starts the process without waiting for it to be ready.
func (n *Node) spawn() {
	n.t.Helper()
	port := n.port
	if port == 0 {
		port = freePort(n.t)
	}
	n.Addr = fmt.Sprintf("http://127.0.0.1:%d", port)
	n.Client = api.NewClient(n.Addr)
	args := append([]string{"agent", "--node-name", n.Name, "--data-dir", n.DataDir,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", port), "--log-format", "text", "--log-level", "debug"}, n.args...)
	n.cmd = exec.Command(binary, args...)
	n.cmd.Env = append(os.Environ(), n.env...)
	n.cmd.Stdout, n.cmd.Stderr = n.logWriter(), n.logWriter()
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatalf("start node %s: %v", n.Name, err)
	}
	n.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(n.cmd, n.exited)
}

// waitReady waits until the spawned process answers /readyz; it fails the
// test when the process exits first.
func (n *Node) waitReady() {
	n.t.Helper()
	n.waitStarted(func(err error) error { return err })
}

// waitUp waits until the spawned process takes work: it is ready, or not
// ready only because none of its seeds has answered yet, as a node whose
// seeds are not started is.
func (n *Node) waitUp() {
	n.t.Helper()
	n.waitStarted(func(err error) error {
		if err != nil && strings.Contains(err.Error(), notJoined) {
			return nil
		}
		return err
	})
}

// notJoined is what /readyz says of a node still trying its seeds.
const notJoined = "not yet joined any of its seeds"

// waitStarted waits until ok accepts what /readyz answers; it fails the
// test when the process exits first.
func (n *Node) waitStarted(ok func(error) error) {
	n.t.Helper()
	waitFor(n.t, 30*time.Second, func() error {
		select {
		case <-n.exited:
			n.t.Fatalf("node %s exited during start: %v\n%s", n.Name, n.cmd.ProcessState, n.Log())
		default:
		}
		return ok(n.Client.Ready(context.Background()))
	})
}

type logWriter struct{ n *Node }

func (w logWriter) Write(p []byte) (int, error) {
	w.n.logMu.Lock()
	defer w.n.logMu.Unlock()
	return w.n.log.Write(p)
}

func (n *Node) logWriter() logWriter { return logWriter{n} }

// Log is everything the node printed so far.
func (n *Node) Log() string {
	n.logMu.Lock()
	defer n.logMu.Unlock()
	return n.log.String()
}

// Kill sends SIGKILL to the node and everything it started, and waits.
func (n *Node) Kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.exited
}

// Stop sends SIGTERM and waits for a clean exit.
func (n *Node) Stop() {
	n.t.Helper()
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(60 * time.Second):
		n.t.Fatalf("node %s did not stop within 60s of SIGTERM", n.Name)
	}
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		n.t.Fatalf("node %s exited with %d after SIGTERM", n.Name, code)
	}
}

// Restart starts the node again on the same data dir (after Kill or Stop).
func (n *Node) Restart() {
	n.t.Helper()
	n.start()
}

// WaitExecution waits until execution id is in status want.
func (n *Node) WaitExecution(id string, want domain.Status, within time.Duration) *api.ExecutionView {
	n.t.Helper()
	var ex *api.ExecutionView
	waitFor(n.t, within, func() error {
		var err error
		if ex, err = n.Client.Execution(context.Background(), id, 0); err != nil {
			return err
		}
		if ex.Status != want {
			return fmt.Errorf("execution %s is %s (error %q), want %s", id, ex.Status, ex.Error, want)
		}
		return nil
	})
	return ex
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond until it returns nil or the time is up; the failure
// says what was still not true.
var waitFor = troupetest.WaitFor

// writePack writes files (path relative to the pack dir → content) into a
// new pack directory and returns it.
func writePack(t *testing.T, ref string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), ref)
	files["pack.yaml"] = fmt.Sprintf("ref: %s\nversion: 0.1.0\ndescription: e2e test pack\n", ref)
	troupetest.WriteFiles(t, dir, files)
	return dir
}

// executionOf waits for the one execution that event evID caused.
func executionOf(t *testing.T, n *Node, evID string) *api.ExecutionView {
	t.Helper()
	var ex *api.ExecutionView
	waitFor(t, 10*time.Second, func() error {
		enfs, err := n.Client.Enforcements(context.Background(), api.ListQuery{Event: evID})
		if err != nil {
			return err
		}
		if len(enfs.Items) != 1 || enfs.Items[0].Execution.IsZero() {
			return fmt.Errorf("event %s has enforcements %+v, want one with an execution", evID, enfs.Items)
		}
		ex, err = n.Client.Execution(context.Background(), enfs.Items[0].Execution.String(), 0)
		return err
	})
	return ex
}
