package cluster

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
)

// fakeMemberList stands in for protoactor's *cluster.MemberList, whose own
// code is not race-clean; provider_protoactor_test.go runs the real one.
type fakeMemberList struct {
	mu    sync.Mutex
	calls int
	last  protocluster.Members
}

var _ topologySink = (*fakeMemberList)(nil)

func (f *fakeMemberList) UpdateClusterTopology(m protocluster.Members) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.last = m
}

func (f *fakeMemberList) snapshot() (int, protocluster.Members) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.last
}

// has is nil when the last topology is exactly the given members, as
// "id@host:port[kinds]".
func (f *fakeMemberList) has(want ...string) error {
	_, last := f.snapshot()
	var got []string
	for _, m := range last {
		got = append(got, fmt.Sprintf("%s@%s:%d%v", m.Id, m.Host, m.Port, m.Kinds))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("topology %v, want %v", got, want)
	}
	return nil
}

// protoMember is how a test node advertises itself: actor ID a<i>, port
// 9000+i, kinds echo and prototopic (protoactor always adds the latter).
func protoMember(i int) string {
	return fmt.Sprintf("a%d@127.0.0.1:%d[echo prototopic]", i, 9000+i)
}

func startProvider(t *testing.T, c *Cluster, i int, client bool) (*Provider, *fakeMemberList) {
	t.Helper()
	p, sink := NewProvider(c), &fakeMemberList{}
	var kinds []string
	if !client {
		kinds = []string{"prototopic", "echo"}
	}
	if err := p.start(fmt.Sprintf("a%d", i), "127.0.0.1", 9000+i, kinds, sink); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(false) })
	return p, sink
}

func TestProviderFeedsFullSnapshots(t *testing.T) {
	nodes := startN(t, 4)
	var providers []*Provider
	var sinks []*fakeMemberList
	for i, c := range nodes[:3] {
		p, sink := startProvider(t, c, i+1, false)
		providers, sinks = append(providers, p), append(sinks, sink)
	}
	_, clientSink := startProvider(t, nodes[3], 4, true)

	all := []string{protoMember(1), protoMember(2), protoMember(3)}
	for i, sink := range append(slices.Clone(sinks), clientSink) {
		waitFor(t, 5*time.Second, func() error { return prefix(fmt.Sprintf("n%d", i+1), sink.has(all...)) })
	}
	m, _ := nodes[0].Member("n1")
	if m.ActorID != "a1" || m.RemoteAddr != "127.0.0.1:9001" || !slices.Equal(m.Kinds, []string{"echo", "prototopic"}) {
		t.Errorf("n1 advertises actor %q at %q with kinds %v", m.ActorID, m.RemoteAddr, m.Kinds)
	}
	waitFor(t, 5*time.Second, func() error {
		if m, _ := nodes[0].Member("n4"); m.ActorID != "a4" || len(m.Kinds) != 0 {
			return fmt.Errorf("the client advertises actor %q with kinds %v, want a4 and none", m.ActorID, m.Kinds)
		}
		return nil
	})

	// Re-published without any change.
	calls, _ := sinks[0].snapshot()
	waitFor(t, 5*time.Second, func() error {
		if now, _ := sinks[0].snapshot(); now < calls+3 {
			return fmt.Errorf("%d topology updates since, want 3 periodic ones", now-calls)
		}
		return nil
	})

	// A hard stop drops the member once it is dead, not before.
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error { return sinks[0].has(protoMember(1), protoMember(2)) })
	if err := seesStatus(nodes[0], "n3", StatusDead); err != nil {
		t.Errorf("n3 left the topology before it was dead: %v", err)
	}

	// A graceful protoactor shutdown leaves.
	if err := providers[1].Shutdown(true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error { return sinks[0].has(protoMember(1)) })
	waitFor(t, 5*time.Second, func() error { return seesStatus(nodes[0], "n2", StatusLeft) })
}

func TestProviderRestartReplacesActorID(t *testing.T) {
	nodes := startN(t, 3)
	_, sink := startProvider(t, nodes[0], 1, false)
	startProvider(t, nodes[1], 2, false)
	startProvider(t, nodes[2], 3, false)
	waitFor(t, 5*time.Second, func() error { return sink.has(protoMember(1), protoMember(2), protoMember(3)) })

	old := nodes[2].LocalAddr()
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "n3", nodes[0].LocalAddr())
	cfg.BindAddr = old // back before it is declared dead
	restarted := start(t, cfg)
	startProvider(t, restarted, 5, false)
	waitFor(t, 5*time.Second, func() error { return sink.has(protoMember(1), protoMember(2), protoMember(5)) })
}

func TestProviderStartErrors(t *testing.T) {
	c := start(t, testConfig(t, "n1"))
	tests := []struct {
		name string
		id   string
		port int
		want string
	}{
		{"no actor id", "", 9000, "the actor system has no ID"},
		{"no remote", "a1", -1, "no remote address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := NewProvider(c).start(tt.id, "nonhost", tt.port, nil, &fakeMemberList{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("start: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	p := NewProvider(c)
	if err := p.start("a1", "127.0.0.1", 9000, []string{strings.Repeat("k", 600)}, &fakeMemberList{}); err == nil ||
		!strings.Contains(err.Error(), "advertise protoactor member a1") || !strings.Contains(err.Error(), "over memberlist's limit") {
		t.Errorf("start with oversize kinds: %v", err)
	}
	if err := p.start("a1", "127.0.0.1", 9000, []string{"echo"}, &fakeMemberList{}); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(false)
	if err := p.start("a1", "127.0.0.1", 9000, []string{"echo"}, &fakeMemberList{}); err == nil {
		t.Error("started twice")
	}
}

func TestTopology(t *testing.T) {
	member := func(name, actor string, status Status, kinds ...string) Member {
		return Member{Meta: Meta{Name: name, ActorID: actor, RemoteAddr: "10.0.0.1:8090", Kinds: kinds}, Status: status}
	}
	members := []Member{
		member("alive", "z", StatusAlive, "echo"),
		member("suspect", "y", StatusSuspect, "echo"),
		member("dead", "x", StatusDead, "echo"),
		member("left", "w", StatusLeft, "echo"),
		member("no-actor", "", StatusAlive),
		member("client", "v", StatusAlive),
		{Meta: Meta{Name: "bad-addr", ActorID: "u", RemoteAddr: "nowhere", Kinds: []string{"echo"}}, Status: StatusAlive},
	}
	var got []string
	for _, m := range Topology(members) {
		got = append(got, fmt.Sprintf("%s@%s:%d", m.Id, m.Host, m.Port))
	}
	want := []string{"y@10.0.0.1:8090", "z@10.0.0.1:8090"}
	if !slices.Equal(got, want) {
		t.Errorf("Topology = %v, want %v (live members with an actor ID and kinds, sorted by ID)", got, want)
	}
}

func prefix(who string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", who, err)
	}
	return nil
}
