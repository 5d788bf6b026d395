package bench

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/troupehq/troupe/api"
)

// node is one `troupe agent` process Run started.
type node struct {
	name, dataDir, logFile, addr string
	cmd                          *exec.Cmd
	exited                       chan struct{}
}

// startNodes starts n agents on 127.0.0.1 under dir, the second and later
// joining the first, and waits until all are ready.
func startNodes(ctx context.Context, cfg Config, dir, pack string) ([]*node, error) {
	var nodes []*node
	var join string
	for i := range cfg.Nodes {
		n, err := startNode(ctx, cfg, dir, pack, fmt.Sprintf("bench-%d", i+1), join)
		if err != nil {
			stopNodes(nodes)
			return nil, err
		}
		nodes = append(nodes, n)
		if i == 0 && cfg.Nodes > 1 {
			if join, err = gossipAddr(ctx, n); err != nil {
				stopNodes(nodes)
				return nil, err
			}
		}
	}
	if cfg.Nodes > 1 {
		if err := waitMembers(ctx, nodes); err != nil {
			stopNodes(nodes)
			return nil, err
		}
	}
	return nodes, nil
}

func startNode(ctx context.Context, cfg Config, dir, pack, name, join string) (*node, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	n := &node{name: name, dataDir: filepath.Join(dir, name, "data"), logFile: filepath.Join(dir, name+".log"),
		addr: fmt.Sprintf("http://127.0.0.1:%d", port)}
	log, err := os.Create(n.logFile)
	if err != nil {
		return nil, fmt.Errorf("start node %s: %w", name, err)
	}
	defer log.Close()
	args := []string{"agent", "--node-name", name, "--data-dir", n.dataDir,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", port), "--gossip-addr", "127.0.0.1:0",
		// The default log level: the figures are those of a node as shipped.
		"--remote-addr", "127.0.0.1:0", "--packs", pack, "--log-format", "text"}
	if join != "" {
		args = append(args, "--join", join)
	}
	args = append(args, cfg.AgentArgs...)
	n.cmd = exec.Command(cfg.Binary, args...)
	n.cmd.Stdout, n.cmd.Stderr = log, log
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node %s: %w", name, err)
	}
	n.exited = make(chan struct{})
	go func() { n.cmd.Wait(); close(n.exited) }()
	c := api.NewClient(n.addr)
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := c.Ready(ctx)
		if err == nil {
			return n, nil
		}
		select {
		case <-n.exited:
			return nil, fmt.Errorf("node %s exited during start (%v): %s", name, n.cmd.ProcessState, n.logTail())
		case <-ctx.Done():
			n.kill()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.kill()
			return nil, fmt.Errorf("node %s not ready after 60s: %v: %s", name, err, n.logTail())
		}
	}
}

func gossipAddr(ctx context.Context, n *node) (string, error) {
	ms, err := api.NewClient(n.addr).Members(ctx)
	if err != nil {
		return "", fmt.Errorf("members of %s: %w", n.name, err)
	}
	for _, m := range ms {
		if m.Self {
			return m.GossipAddr, nil
		}
	}
	return "", fmt.Errorf("node %s does not list itself among its members", n.name)
}

// waitMembers waits until every node sees all of them alive.
func waitMembers(ctx context.Context, nodes []*node) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		var bad error
		for _, n := range nodes {
			ms, err := api.NewClient(n.addr).Members(ctx)
			alive := 0
			for _, m := range ms {
				if m.Status == "alive" {
					alive++
				}
			}
			if err != nil || alive != len(nodes) {
				bad = fmt.Errorf("node %s sees %d alive members, want %d (%v)", n.name, alive, len(nodes), err)
				break
			}
		}
		if bad == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster did not form within 60s: %w", bad)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// kill stops the node and every process it started, and waits.
func (n *node) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.exited
}

func stopNodes(nodes []*node) {
	for _, n := range nodes {
		n.kill()
	}
}

func (n *node) logTail() string {
	b, _ := os.ReadFile(n.logFile)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return strings.TrimSpace(string(b))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// dirSize is the bytes of the files under dir.
func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total, err
}
