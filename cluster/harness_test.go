package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupehq/troupe/internal/troupetest"
)

// waitFor polls cond until it returns nil; on timeout the failure is cond's
// account of what is not yet true.
var waitFor = troupetest.WaitFor

// logRecorder is a slog handler that keeps every record for assertions and
// shows those at Info and above (all with TROUPE_TEST_DEBUG=1) through t.Log
// — until the test ends, since memberlist goroutines may still log while
// shutting down.
type logRecorder struct {
	mu      sync.Mutex
	t       testing.TB
	ended   bool
	records []string
	attrs   []slog.Attr
	shared  *logRecorder
}

func newLogRecorder(t testing.TB) *logRecorder {
	r := &logRecorder{t: t}
	r.shared = r
	t.Cleanup(func() { r.mu.Lock(); r.ended = true; r.mu.Unlock() })
	return r
}

func (r *logRecorder) logger() *slog.Logger { return slog.New(r) }

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	for _, a := range r.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	rec.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	line := b.String()
	s := r.shared
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, line)
	if !s.ended && (rec.Level >= slog.LevelInfo || os.Getenv("TROUPE_TEST_DEBUG") == "1") {
		s.t.Log(line)
	}
	return nil
}

func (r *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logRecorder{attrs: append(slices.Clone(r.attrs), attrs...), shared: r.shared}
}

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

// find returns an error unless some record contains every one of parts.
func (r *logRecorder) find(parts ...string) error {
	s := r.shared
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range s.records {
		if containsAll(line, parts) {
			return nil
		}
	}
	return fmt.Errorf("no log record contains all of %q (%d records)", parts, len(s.records))
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// testConfig is one node on loopback with the fast timing preset.
func testConfig(t testing.TB, name string, join ...string) Config {
	cfg := DefaultConfig()
	cfg.Meta.Name = name
	cfg.Meta.Cluster = "test"
	cfg.Meta.Runtimes = []string{"shell"}
	cfg.Meta.Slots = 4
	cfg.BindAddr = "127.0.0.1:0"
	cfg.Join = join
	cfg.Timing = TestTiming()
	cfg.RejoinInterval = time.Second
	cfg.Logger = newLogRecorder(t).logger()
	return cfg
}

// patient slows the probes of a test that expects a member to be seen
// left: on a stalled host a probe of TestTiming's can time out while the
// member leaves, and memberlist then lets the suspicion's dead message
// replace the member's own leave notice in its queue, so the others see it
// dead, not left. Dead detection takes ~5 s instead of ~1.5.
func patient(cfg Config) Config {
	cfg.Timing.ProbeInterval, cfg.Timing.ProbeTimeout = time.Second, 900*time.Millisecond
	return cfg
}

// freeAddrs returns n loopback addresses whose port was free a moment ago,
// for nodes that must know each other's address before they start.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close() // held until all are chosen, so none repeats
		out = append(out, l.Addr().String())
	}
	return out
}

// start starts a node and shuts it down when the test ends.
func start(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("start node %s: %v", cfg.Meta.Name, err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	return c
}

// startN starts n joined nodes named n1…nN and waits until each sees all.
func startN(t testing.TB, n int, adjust ...func(Config) Config) []*Cluster {
	t.Helper()
	var nodes []*Cluster
	for i := range n {
		var join []string
		if i > 0 {
			join = []string{nodes[0].LocalAddr()}
		}
		cfg := testConfig(t, fmt.Sprintf("n%d", i+1), join...)
		for _, f := range adjust {
			cfg = f(cfg)
		}
		nodes = append(nodes, start(t, cfg))
	}
	for _, c := range nodes {
		waitFor(t, 10*time.Second, func() error { return seesAlive(c, names(nodes)...) })
	}
	return nodes
}

func names(nodes []*Cluster) []string {
	var out []string
	for _, c := range nodes {
		out = append(out, c.Self().Name)
	}
	return out
}

// seesAlive is nil when c sees every named node alive.
func seesAlive(c *Cluster, want ...string) error {
	for _, name := range want {
		if err := seesStatus(c, name, StatusAlive); err != nil {
			return err
		}
	}
	return nil
}

func seesStatus(c *Cluster, name string, want Status) error {
	m, ok := c.Member(name)
	if !ok {
		return fmt.Errorf("%s does not know %s (knows %s)", c.Self().Name, name, describe(c.Members()))
	}
	if m.Status != want {
		return fmt.Errorf("%s sees %s %s, want %s", c.Self().Name, name, m.Status, want)
	}
	return nil
}

func describe(members []Member) string {
	var parts []string
	for _, m := range members {
		parts = append(parts, m.Name+":"+string(m.Status))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// recorder collects one subscription's changes.
type recorder struct {
	mu      sync.Mutex
	changes []Change
}

func record(t testing.TB, c *Cluster) *recorder {
	r := &recorder{}
	ch, cancel := c.Subscribe()
	t.Cleanup(cancel)
	go func() {
		for change := range ch {
			r.mu.Lock()
			r.changes = append(r.changes, change)
			r.mu.Unlock()
		}
	}()
	return r
}

// kinds lists the kinds of the changes about name, in order.
func (r *recorder) kinds(name string) []ChangeKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ChangeKind
	for _, c := range r.changes {
		if c.Member.Name == name {
			out = append(out, c.Kind)
		}
	}
	return out
}

// has is nil when the changes about name include want in that order
// (other kinds may come between).
func (r *recorder) has(name string, want ...ChangeKind) error {
	got := r.kinds(name)
	i := 0
	for _, k := range got {
		if i < len(want) && k == want[i] {
			i++
		}
	}
	if i < len(want) {
		return fmt.Errorf("changes about %s are %v, want %v in order", name, got, want)
	}
	return nil
}
