package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
)

// Cluster is a set of troupe agents on 127.0.0.1 joined by gossip: n1
// starts the cluster, every other node joins n1. Each node has its own data
// dir and its own HTTP, gossip and remote ports, kept across restarts.
type Cluster struct {
	t     *testing.T
	Nodes []*Node // in start order; extra nodes (AddNode, SpawnNode) too
	seed  string  // n1's gossip address

	cfg   clusterConfig
	mu    sync.Mutex
	ports map[int]bool
}

type clusterConfig struct {
	all  []string            // flags of every node
	node map[string][]string // flags of one node, by name
}

// ClusterOption adjusts how a cluster's nodes are started.
type ClusterOption func(*clusterConfig)

// WithClusterArgs adds agent flags to every node of the cluster, including
// nodes added later with AddNode and SpawnNode.
func WithClusterArgs(args ...string) ClusterOption {
	return func(c *clusterConfig) { c.all = append(c.all, args...) }
}

// WithNodeArgs adds agent flags to the named node only ("n1", "n2", …); a
// flag given here overrides the same flag from WithClusterArgs.
func WithNodeArgs(name string, args ...string) ClusterOption {
	return func(c *clusterConfig) { c.node[name] = append(c.node[name], args...) }
}

// StartCluster starts n1, then n2…nN joining it, and waits until every
// node lists every node alive. Processes are killed when the test ends;
// when it failed, each node's log is saved and its tail printed.
func StartCluster(t *testing.T, size int, opts ...ClusterOption) *Cluster {
	t.Helper()
	c := newCluster(t, opts)
	began := time.Now()
	first := c.newNode("n1", nil)
	c.seed = first.GossipAddr
	first.spawn()
	first.waitReady()
	var rest []*Node
	for i := 2; i <= size; i++ {
		n := c.newNode(fmt.Sprintf("n%d", i), nil)
		n.spawn()
		rest = append(rest, n)
	}
	for _, n := range rest {
		n.waitReady()
	}
	want := map[string]string{}
	for _, n := range c.Nodes {
		want[n.Name] = "alive"
	}
	for _, n := range c.Nodes {
		c.WaitMembers(n, want, 20*time.Second)
	}
	t.Logf("cluster of %d nodes formed in %s", size, time.Since(began).Round(time.Millisecond))
	return c
}

func newCluster(t *testing.T, opts []ClusterOption) *Cluster {
	c := &Cluster{t: t, cfg: clusterConfig{node: map[string][]string{}}, ports: map[int]bool{}}
	for _, o := range opts {
		o(&c.cfg)
	}
	t.Cleanup(c.cleanup)
	return c
}

// NewCluster prepares nodes n1…nN without starting any. Every node is
// given the same --join list, the gossip addresses of all of them (its
// own included), as one config file shared by the whole cluster would.
// Start them with Start or Spawn, in any order; AddNode and SpawnNode join
// n1.
func NewCluster(t *testing.T, size int, opts ...ClusterOption) *Cluster {
	t.Helper()
	c := newCluster(t, opts)
	var seeds []string
	for i := 1; i <= size; i++ {
		seeds = append(seeds, c.newNode(fmt.Sprintf("n%d", i), nil).GossipAddr)
	}
	for _, n := range c.Nodes {
		n.args = append(n.args, "--join", strings.Join(seeds, ","))
	}
	c.seed = seeds[0]
	return c
}

// Start starts node n, prepared by NewCluster, and waits until it takes
// work: until it is ready, or, when none of its seeds is up yet, until it
// runs alone and keeps trying them.
func (c *Cluster) Start(n *Node) {
	c.t.Helper()
	n.spawn()
	n.waitUp()
}

// Spawn starts node n, prepared by NewCluster, without waiting for it.
func (c *Cluster) Spawn(n *Node) {
	c.t.Helper()
	n.spawn()
}

// WaitReady waits until node n, spawned, is ready.
func (c *Cluster) WaitReady(n *Node) {
	c.t.Helper()
	n.waitReady()
}

// newNode prepares (does not start) a node of this cluster.
func (c *Cluster) newNode(name string, extra []string) *Node {
	c.t.Helper()
	n := &Node{t: c.t, Name: name, DataDir: filepath.Join(c.t.TempDir(), name),
		port:       c.freePort(),
		GossipAddr: fmt.Sprintf("127.0.0.1:%d", c.freePort()),
		RemoteAddr: fmt.Sprintf("127.0.0.1:%d", c.freePort())}
	n.args = []string{"--gossip-addr", n.GossipAddr, "--remote-addr", n.RemoteAddr}
	if c.seed != "" {
		n.args = append(n.args, "--join", c.seed)
	}
	n.args = append(n.args, c.cfg.all...)
	n.args = append(n.args, c.cfg.node[name]...)
	n.args = append(n.args, extra...)
	c.mu.Lock()
	c.Nodes = append(c.Nodes, n)
	c.mu.Unlock()
	return n
}

// freePort is a free port not yet handed to another node of this cluster.
func (c *Cluster) freePort() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		p := freePort(c.t)
		if !c.ports[p] {
			c.ports[p] = true
			return p
		}
	}
}

// AddNode starts another node that joins n1, with the cluster's flags and
// extra ones, and waits until it is ready (not until others list it).
func (c *Cluster) AddNode(name string, extra ...string) *Node {
	c.t.Helper()
	n := c.SpawnNode(name, extra...)
	n.waitReady()
	return n
}

// SpawnNode starts another node that joins n1 and does not wait for it: it
// may be refused and exit, which Exited reports.
func (c *Cluster) SpawnNode(name string, extra ...string) *Node {
	c.t.Helper()
	n := c.newNode(name, extra)
	n.spawn()
	return n
}

// Node is the node of that name; the test fails if there is none.
func (c *Cluster) Node(name string) *Node {
	c.t.Helper()
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	c.t.Fatalf("no node %q in the cluster", name)
	return nil
}

// NodeWithRuntime is the one live node that advertises runtime rt, as the
// first live node's member list says; it fails unless exactly one does.
func (c *Cluster) NodeWithRuntime(rt string) *Node {
	c.t.Helper()
	var names []string
	for _, m := range c.Members(c.Live()[0]) {
		if m.Status == "alive" && slices.Contains(m.Runtimes, rt) {
			names = append(names, m.Name)
		}
	}
	if len(names) != 1 {
		c.t.Fatalf("members advertising runtime %q: %v, want exactly one", rt, names)
	}
	return c.Node(names[0])
}

// Live is the nodes whose process is running.
func (c *Cluster) Live() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// Running reports whether the node's process is running.
func (n *Node) Running() bool {
	if n.exited == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Exited waits up to within for the process to exit and returns its exit
// code, or -1 with false if it is still running.
func (n *Node) Exited(within time.Duration) (int, bool) {
	select {
	case <-n.exited:
		return n.cmd.ProcessState.ExitCode(), true
	case <-time.After(within):
		return -1, false
	}
}

// Kill sends SIGKILL to node n and waits for it to exit.
func (c *Cluster) Kill(n *Node) {
	c.t.Helper()
	n.Kill()
	c.t.Logf("killed %s (SIGKILL)", n.Name)
}

// Restart starts node n again on the same data dir, name and ports, and
// waits until it is ready.
func (c *Cluster) Restart(n *Node) {
	c.t.Helper()
	n.Restart()
}

// Rejoin starts node n again on the same data dir, name and ports, joining
// the gossip addresses of the live nodes (a node restarted with its
// original --join would run alone while that seed is down, retrying it),
// and waits until it is ready.
func (c *Cluster) Rejoin(n *Node) {
	c.t.Helper()
	var seeds []string
	for _, m := range c.Live() {
		seeds = append(seeds, m.GossipAddr)
	}
	saved := n.args
	n.args = append(slices.Clip(n.args), "--join", strings.Join(seeds, ","))
	defer func() { n.args = saved }()
	n.Restart()
}

// WaitAllAlive waits until every live node lists every live node alive
// (and nobody else, except members that are dead or left).
func (c *Cluster) WaitAllAlive(within time.Duration) {
	c.t.Helper()
	waitFor(c.t, within, c.allAlive)
}

// AllAlive is WaitAllAlive that reports instead of failing: whether every
// live node listed every live node alive within that time.
func (c *Cluster) AllAlive(within time.Duration) bool {
	deadline := time.Now().Add(within)
	for c.allAlive() != nil {
		if time.Now().After(deadline) {
			c.t.Logf("after %s: %v", within, c.allAlive())
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func (c *Cluster) allAlive() error {
	live := c.Live()
	for _, n := range live {
		ctx, cancel := context.WithTimeout(c.t.Context(), 2*time.Second)
		ms, err := n.members(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("members of %s: %w", n.Name, err)
		}
		got := map[string]string{}
		for _, m := range ms {
			got[m.Name] = m.Status
		}
		for _, m := range live {
			if got[m.Name] != "alive" {
				return fmt.Errorf("%s lists %s", n.Name, describe(got))
			}
		}
	}
	return nil
}

// Members is the member list node n serves.
func (c *Cluster) Members(n *Node) []api.MemberView {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 5*time.Second)
	defer cancel()
	ms, err := n.members(ctx)
	if err != nil {
		c.t.Fatalf("members of %s: %v", n.Name, err)
	}
	return ms
}

// WaitMembers waits until node n lists exactly the members of want, each
// with the wanted status (alive, suspect, dead, left), and returns the list.
func (c *Cluster) WaitMembers(n *Node, want map[string]string, within time.Duration) []api.MemberView {
	c.t.Helper()
	var ms []api.MemberView
	waitFor(c.t, within, func() error {
		ctx, cancel := context.WithTimeout(c.t.Context(), 2*time.Second)
		defer cancel()
		var err error
		if ms, err = n.members(ctx); err != nil {
			return fmt.Errorf("members of %s: %w", n.Name, err)
		}
		got := map[string]string{}
		for _, m := range ms {
			got[m.Name] = m.Status
		}
		for name, st := range want {
			if got[name] != st {
				return fmt.Errorf("%s lists %s, want %s", n.Name, describe(got), describe(want))
			}
		}
		if len(got) != len(want) {
			return fmt.Errorf("%s lists %s, want exactly %s", n.Name, describe(got), describe(want))
		}
		return nil
	})
	return ms
}

// members is node n's member list, asked the way members ask each other
// (?local=true), so that a node without the api role answers too.
func (n *Node) members(ctx context.Context) ([]api.MemberView, error) {
	c := *n.Client
	c.Local = true
	return c.Members(ctx)
}

func describe(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return "[" + strings.Join(parts, " ") + "]"
}

// cleanup kills every node; after a failure (or always, with
// TROUPE_E2E_KEEP_LOGS=1) it saves each node's log in a directory that
// outlives the test and prints the last lines.
func (c *Cluster) cleanup() {
	for _, n := range c.Nodes {
		n.Kill()
	}
	// protoactor's remote drops, with this log line, any message it cannot
	// carry between nodes: a plain Go struct sent to another member by
	// mistake fails every cluster test that exercises it.
	for _, n := range c.Nodes {
		for _, l := range strings.Split(n.Log(), "\n") {
			if strings.Contains(l, "failed to serialize message") || strings.Contains(l, "failed to deserialize") {
				c.t.Errorf("%s could not carry an actor message between nodes (not protobuf?): %s", n.Name, l)
			}
		}
	}
	if !c.t.Failed() && os.Getenv("TROUPE_E2E_KEEP_LOGS") == "" {
		return
	}
	dir, err := os.MkdirTemp("", "troupe-cluster-logs-")
	if err != nil {
		c.t.Log(err)
		return
	}
	for _, n := range c.Nodes {
		log := n.Log()
		path := filepath.Join(dir, n.Name+".log")
		if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
			c.t.Log(err)
		}
		// The tail without the test's own polling of the API.
		var lines []string
		for _, l := range strings.Split(strings.TrimRight(log, "\n"), "\n") {
			if !strings.Contains(l, "msg=request ") {
				lines = append(lines, l)
			}
		}
		c.t.Logf("--- node %s: full log in %s; last lines ---\n%s", n.Name, path, strings.Join(lines[max(0, len(lines)-30):], "\n"))
	}
}
