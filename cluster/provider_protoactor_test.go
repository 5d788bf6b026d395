//go:build !race

// protoactor-go's cluster package has data races of its own (MemberList
// reads its member set without its lock, among others), so this test of the
// Provider inside a real protoactor cluster is left out of -race builds;
// provider_test.go covers the Provider against a fake MemberList under -race.

package cluster

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// actorNode is one node: gossip, and a protoactor cluster member on top of
// it whose "echo" grains answer with their node's name.
type actorNode struct {
	name   string
	gossip *Cluster
	proto  *protocluster.Cluster
}

func startActorNode(t *testing.T, name string, join ...string) *actorNode {
	t.Helper()
	g := start(t, testConfig(t, name, join...))
	quiet := slog.New(slog.DiscardHandler)
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	echo := protocluster.NewKind("echo", actor.PropsFromFunc(func(ctx actor.Context) {
		if msg, ok := ctx.Message().(*wrapperspb.StringValue); ok {
			ctx.Respond(wrapperspb.String(name + ":" + msg.Value))
		}
	}))
	cfg := protocluster.Configure("test", NewProvider(g), disthash.New(), remote.Configure("127.0.0.1", 0),
		protocluster.WithKinds(echo), protocluster.WithRequestTimeout(2*time.Second))
	pc := protocluster.New(system, cfg)
	pc.StartMember() // blocks a second, by protoactor's design
	n := &actorNode{name: name, gossip: g, proto: pc}
	t.Cleanup(n.stop)
	return n
}

// stop is a hard stop: no graceful leave.
func (n *actorNode) stop() {
	if n.proto != nil {
		n.proto.Shutdown(false)
		n.proto = nil
	}
	_ = n.gossip.Shutdown()
}

func (n *actorNode) topology() []string {
	var ids []string
	for _, m := range n.proto.MemberList.Members().Members() {
		ids = append(ids, m.Id)
	}
	slices.Sort(ids)
	return ids
}

func (n *actorNode) hasTopology(want ...*actorNode) error {
	var ids []string
	for _, w := range want {
		ids = append(ids, w.proto.ActorSystem.ID)
	}
	slices.Sort(ids)
	if got := n.topology(); !slices.Equal(got, ids) {
		return fmt.Errorf("%s's protoactor topology is %v, want %v", n.name, got, ids)
	}
	return nil
}

// echoFrom asks grain id and returns which node answered.
func (n *actorNode) echoFrom(id string) (string, error) {
	res, err := n.proto.Request(id, "echo", wrapperspb.String(id))
	if err != nil {
		return "", fmt.Errorf("request grain %s from %s: %w", id, n.name, err)
	}
	s, ok := res.(*wrapperspb.StringValue)
	if !ok {
		return "", fmt.Errorf("grain %s answered %T", id, res)
	}
	return s.Value, nil
}

func TestProviderInProtoactorCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three protoactor clusters")
	}
	n1 := startActorNode(t, "n1")
	n2 := startActorNode(t, "n2", n1.gossip.LocalAddr())
	n3 := startActorNode(t, "n3", n1.gossip.LocalAddr())
	nodes := []*actorNode{n1, n2, n3}
	for _, n := range nodes {
		waitFor(t, 10*time.Second, func() error { return n.hasTopology(nodes...) })
	}

	// Grains spread over the members, and answer across nodes.
	answered := map[string]bool{}
	waitFor(t, 20*time.Second, func() error {
		for i := range 30 {
			who, err := n1.echoFrom(fmt.Sprintf("g%d", i))
			if err != nil {
				return err
			}
			answered[who[:2]] = true
		}
		if len(answered) < 3 {
			return fmt.Errorf("grains answered only from %v, want all three nodes", answered)
		}
		return nil
	})

	// A hard-stopped member leaves the topology once gossip declares it
	// dead, and its grains come back on the others.
	stopped := time.Now()
	n3.stop()
	for _, n := range nodes[:2] {
		waitFor(t, 15*time.Second, func() error { return n.hasTopology(n1, n2) })
	}
	t.Logf("n3 out of the protoactor topology %s after a hard stop", time.Since(stopped).Round(time.Millisecond))
	waitFor(t, 20*time.Second, func() error {
		for i := range 30 {
			who, err := n2.echoFrom(fmt.Sprintf("g%d", i))
			if err != nil {
				return err
			}
			if who[:2] == "n3" {
				return fmt.Errorf("grain g%d still answered by n3", i)
			}
		}
		return nil
	})
}
