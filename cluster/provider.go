package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
)

var _ protocluster.ClusterProvider = (*Provider)(nil)

// topologySink is what the Provider feeds: protoactor's *cluster.MemberList,
// or a fake in tests.
type topologySink interface {
	UpdateClusterTopology(members protocluster.Members)
}

// Provider is a protoactor-go ClusterProvider whose membership is the
// gossiped view of a Cluster. StartMember and StartClient advertise this
// process's protoactor member ID (and, for a member, its grain kinds) in the
// node's metadata; from then on protoactor is given the full set of live
// protoactor members on every membership change and, as a safety net for a
// lost change, every Timing.ProbeInterval.
//
// The set is of Live members (alive or suspect): protoactor blocks a member
// ID forever once it leaves the topology, so a false suspicion must not
// remove one. A member is dropped when it is dead or has left, or when it
// restarted (its new life has a new ID, and the old ID is rightly blocked).
// Protoactor clients are not put in the topology: they host no kinds and do
// not gossip, so protoactor would block them for missing heartbeats.
type Provider struct {
	c      *Cluster
	logger *slog.Logger

	mu      sync.Mutex
	started bool
	cancel  func()
	stop    chan struct{}
	done    chan struct{}
}

// NewProvider returns a Provider on top of c. c must outlive protoactor's
// cluster; Provider.Shutdown(true) leaves c but does not shut it down.
func NewProvider(c *Cluster) *Provider {
	return &Provider{c: c, logger: c.cfg.Logger.With("component", "cluster-provider", "node", c.cfg.Meta.Name)}
}

// StartMember advertises this process as a protoactor member hosting the
// actor system's kinds, and starts feeding protoactor the topology.
func (p *Provider) StartMember(pc *protocluster.Cluster) error {
	host, port, err := pc.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("start cluster member: read remote address: %w", err)
	}
	return p.start(pc.ActorSystem.ID, host, port, pc.GetClusterKinds(), pc.MemberList)
}

// StartClient advertises this process's protoactor ID without kinds (so it
// is not a member of the topology) and starts feeding it the topology, so
// that it can reach grains.
func (p *Provider) StartClient(pc *protocluster.Cluster) error {
	host, port, err := pc.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("start cluster client: read remote address: %w", err)
	}
	return p.start(pc.ActorSystem.ID, host, port, nil, pc.MemberList)
}

func (p *Provider) start(id, host string, port int, kinds []string, sink topologySink) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("start cluster provider: already started")
	}
	if id == "" {
		return errors.New("start cluster provider: the actor system has no ID")
	}
	if port <= 0 {
		return fmt.Errorf("start cluster provider: the actor system has no remote address (host %q, port %d); start remoting first", host, port)
	}
	remote := net.JoinHostPort(host, strconv.Itoa(port))
	err := p.c.EditMeta(func(m *Meta) {
		m.ActorID, m.RemoteAddr, m.Kinds = id, remote, slices.Sorted(slices.Values(kinds))
	})
	if err != nil {
		return fmt.Errorf("start cluster provider: advertise protoactor member %s: %w", id, err)
	}
	changes, cancel := p.c.Subscribe()
	p.started, p.cancel = true, cancel
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	p.publish(sink)
	go p.run(sink, changes)
	p.logger.Info("protoactor provider started", "actor_id", id, "remote", remote, "kinds", kinds)
	return nil
}

func (p *Provider) run(sink topologySink, changes <-chan Change) {
	defer close(p.done)
	tick := time.NewTicker(p.c.cfg.Timing.ProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case _, ok := <-changes:
			if !ok {
				return // the Cluster shut down
			}
			// Every change, resync included, gets a fresh full
			// snapshot; drain the burst first.
			for drained := false; !drained; {
				select {
				case _, ok := <-changes:
					if !ok {
						return
					}
				default:
					drained = true
				}
			}
			p.publish(sink)
		case <-tick.C:
			p.publish(sink)
		}
	}
}

func (p *Provider) publish(sink topologySink) {
	sink.UpdateClusterTopology(Topology(p.c.Members()))
}

// Topology turns members into protoactor's view: every Live member that
// advertises a protoactor member ID and kinds, sorted by ID.
func Topology(members []Member) protocluster.Members {
	out := protocluster.Members{}
	for _, m := range members {
		if !m.Status.Live() || m.ActorID == "" || len(m.Kinds) == 0 {
			continue
		}
		host, port, err := splitHostPort(m.RemoteAddr)
		if err != nil || port == 0 {
			continue // StartMember always sets it; a stranger's is unusable
		}
		out = append(out, &protocluster.Member{
			Id: m.ActorID, Host: host, Port: int32(port), Kinds: slices.Clone(m.Kinds),
		})
	}
	slices.SortFunc(out, func(a, b *protocluster.Member) int { return strings.Compare(a.Id, b.Id) })
	return out
}

// Shutdown stops feeding protoactor; when graceful it also leaves the
// gossip cluster (Config.LeaveTimeout), so the others see this node as left.
func (p *Provider) Shutdown(graceful bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		close(p.stop)
		<-p.done
		p.cancel()
		p.started = false
	}
	if !graceful {
		return nil
	}
	if err := p.c.Leave(p.c.cfg.LeaveTimeout); err != nil {
		return fmt.Errorf("shut down cluster provider: %w", err)
	}
	return nil
}
