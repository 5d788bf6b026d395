package main

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/troupehq/troupe/actors/execution"
	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/actors/sensor"
	"github.com/troupehq/troupe/actors/worker"
	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/cluster"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/packs"
)

// joinCluster starts gossip and the protoactor cluster member on top of
// it. A single node is a cluster of one: the same code runs either way.
func (n *node) joinCluster() error {
	key, _ := n.cfg.gossipKey() // validated with the config
	var roles []cluster.Role
	for _, r := range n.cfg.Roles {
		roles = append(roles, cluster.Role(r))
	}
	gc := cluster.DefaultConfig()
	gc.Meta = cluster.Meta{Name: n.cfg.NodeName, Cluster: n.cfg.Cluster, APIAddr: n.listener.Addr().String(),
		Roles: roles, Runtimes: n.runtimes.Names(), Slots: n.cfg.Slots, Packs: n.packs.Digest()}
	gc.BindAddr, gc.Join, gc.JoinRetry, gc.GossipKey, gc.Logger = n.cfg.Gossip, n.cfg.Join, n.cfg.JoinRetry, key, n.log
	if len(gc.Join) == 0 {
		// A node restarted without --join (the one that founded the cluster)
		// would otherwise come back as a cluster of its own, firing the
		// timers the others took over; it rejoins the members it last saw,
		// and waits for them if none answers, whatever join_retry says,
		// since it was never told to fail without them.
		gc.Join = n.savedPeers()
		gc.JoinRetry = cmp.Or(gc.JoinRetry, cluster.DefaultConfig().JoinRetry)
	}
	g, err := cluster.New(gc)
	if err != nil {
		return err
	}
	n.gossip = g
	// Read at each scrape: the cluster ends the join retries on its own.
	n.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_cluster_seeds_unanswered",
		Help: "Seeds this node keeps trying because none of them has answered and no member has joined it; it runs alone, is not ready and fires no timers meanwhile. 0 once it has met a member."},
		func() float64 { return float64(len(g.Joining())) }))

	host, port, err := splitAddr(n.cfg.Remote)
	if err != nil {
		return fmt.Errorf("remote_addr: %w", err)
	}
	if port != 0 { // protoactor panics on a taken port; say which instead
		l, err := net.Listen("tcp", n.cfg.Remote)
		if err != nil {
			return fmt.Errorf("remote_addr: %w", err)
		}
		l.Close()
	}
	var kinds []*protocluster.Kind
	if n.cfg.hasRole(cluster.RoleSensor) {
		n.sensors = sensor.NewSet(n.sensorConfig())
		kinds = append(kinds, n.sensors.Kind())
	}
	pc := protocluster.Configure(n.cfg.Cluster, cluster.NewProvider(g), disthash.New(), remote.Configure(host, port, remote.WithServerOptions(grpc.MaxRecvMsgSize(maxActorMessage))),
		protocluster.WithKinds(kinds...), protocluster.WithRequestTimeout(5*time.Second),
		// A loaded 2-core machine misses protoactor's own heartbeats; memberlist
		// already decides who is alive, so this only needs to be lenient.
		protocluster.WithHeartbeatExpiration(time.Minute))
	n.proto = protocluster.New(n.system, pc)
	n.proto.StartMember()
	// After StartMember: it advertises this member's remote address, without
	// which placement would not see this node as a worker.
	n.workers.refresh(g)
	return nil
}

// maxActorMessage bounds what protoactor's gRPC accepts in one message (a
// batch of them, in fact): gRPC's 4 MiB default is below a pack archive.
const maxActorMessage = 2*packs.MaxArchive + 1<<20

// fenced says why this member must not fire timers: it sees fewer than
// half of the members it knows (left ones excepted) alive, so it may be on
// the losing side of a partition while the others re-placed its timers.
// Exactly half is not fenced, so the survivor of a two-node cluster keeps
// its timers. A node that has not yet met any of its seeds counts them as
// members it cannot reach: nodes of a new cluster started at the same
// moment each run alone until their retries meet, and must not all fire.
func (n *node) fenced() string {
	alive, known := 0, 0
	for _, m := range n.gossip.Members() {
		switch {
		case m.Status == cluster.StatusLeft:
		case m.Status.Live():
			alive++
			known++
		default:
			known++
		}
	}
	seeds := n.gossip.Joining()
	known += len(seeds)
	switch {
	case 2*alive >= known:
	case len(seeds) > 0:
		return fmt.Sprintf("not yet joined any of its seeds %s (%d of %d members reachable)", strings.Join(seeds, ", "), alive, known)
	default:
		return fmt.Sprintf("only %d of %d members reachable", alive, known)
	}
	return ""
}

// rulesFor is the rules actor that evaluates and stores the event of that
// ID, accepted on this member: its own when it has the rule role, since
// ownership follows acceptance; otherwise that of a live rule member picked
// by the event ID. A tick fired twice has one ID, so both firings reach the
// same store, where the second is a duplicate.
func (n *node) rulesFor(id domain.ID) (*actor.PID, error) {
	if n.cfg.hasRole(cluster.RoleRule) {
		return n.pid(protocol.RulesActor), nil
	}
	var candidates []cluster.Member
	for _, m := range n.gossip.Alive() {
		if m.HasRole(cluster.RoleRule) && m.RemoteAddr != "" {
			candidates = append(candidates, m)
		}
	}
	m, ok := cluster.Pick(id.String(), candidates)
	if !ok {
		return nil, api.NewError(api.CodeNoMember, "no live member has the rule role, which evaluates events; node %s has roles %s",
			n.cfg.NodeName, strings.Join(n.cfg.Roles, ", "))
	}
	return actor.NewPID(m.RemoteAddr, protocol.RulesActor), nil
}

// remoteAddr is the actor address of the named member, "" if unknown or
// not live. The worker asks it for every report it sends, so it reads the
// view rather than copying the member list (~1 % of the node's CPU).
func (n *node) remoteAddr(name string) string {
	return n.workers.current.Load().remote[name]
}

func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	return host, port, err
}

// watchMembers turns membership changes into what the rest of the node
// must know: executions on a member that is gone end, and metrics move.
func (n *node) watchMembers() {
	changes, cancel := n.gossip.Subscribe()
	n.unwatch = cancel
	go func() {
		for ch := range changes {
			n.metrics.MembershipChanges.WithLabelValues(string(ch.Kind)).Inc()
			switch ch.Kind {
			case cluster.ChangeDead, cluster.ChangeLeft, cluster.ChangeRestarted:
				// A restarted member lost whatever its previous process ran.
				n.system.Root.Send(n.pid(protocol.ExecutionsActor), &protocol.MemberDown{Node: ch.Member.Name, Status: string(ch.Kind)})
			}
			n.workers.refresh(n.gossip)
			n.countMembers()
			n.savePeers()
		}
	}()
	go n.gossipLoad()
	n.countMembers()
}

// peersFile lists the gossip addresses of the other members this node last
// saw alive, one a line, for rejoining after a restart.
func (n *node) peersFile() string { return filepath.Join(n.cfg.DataDir, "peers") }

func (n *node) savedPeers() []string {
	b, err := os.ReadFile(n.peersFile())
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

func (n *node) savePeers() {
	var addrs []string
	for _, m := range n.gossip.Alive() {
		if !m.Self && m.GossipAddr != "" {
			addrs = append(addrs, m.GossipAddr)
		}
	}
	if len(addrs) == 0 {
		return // alone: keep the last peers known, to find them again
	}
	tmp := n.peersFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(addrs, "\n")+"\n"), 0o600); err == nil {
		os.Rename(tmp, n.peersFile())
	}
}

func (n *node) countMembers() {
	counts := map[cluster.Status]int{}
	for _, m := range n.gossip.Members() {
		counts[m.Status]++
	}
	for _, st := range []cluster.Status{cluster.StatusAlive, cluster.StatusSuspect, cluster.StatusDead, cluster.StatusLeft} {
		n.metrics.ClusterMembers.WithLabelValues(string(st)).Set(float64(counts[st]))
	}
}

// gossipLoad shares this worker's slot usage every few seconds (only when
// it changed), which placement on other members uses to prefer idle ones.
func (n *node) gossipLoad() {
	n.every(2*time.Second, func() {
		res, err := n.system.Root.RequestFuture(n.pid(protocol.WorkerActor), &worker.Stats{}, time.Second).Result()
		stats, ok := res.(*worker.SlotStats)
		if err != nil || !ok {
			return
		}
		if err := n.gossip.EditMeta(func(m *cluster.Meta) { m.SlotsUsed = stats.Used }); err != nil {
			n.log.Debug("gossip slot usage", "err", err)
		}
		// This node's own load reaches its view only through here.
		n.workers.refresh(n.gossip)
	})
}

// placement chooses workers among the live members that advertise the
// runtime, preferring those with more free slots (power of two choices: two
// different random candidates, the less loaded wins), so no member is
// flooded between two load reports. This node's own worker wins ties: its
// slot request, grant, assignment and report then cross no network (on
// three nodes sharing two cores, a quarter less CPU per execution). Work
// still spreads when this node's worker reports fewer free slots.
type placement struct{ n *node }

var _ execution.Placement = placement{}

// noWorkerError is the user-facing reason no member can run a runtime; it
// may resolve when such a member joins.
type noWorkerError struct {
	runtime string
	have    []string
}

func (e *noWorkerError) Error() string {
	return fmt.Sprintf("no member runs runtime %q (cluster runtimes: %s)", e.runtime, strings.Join(e.have, ", "))
}

func (e *noWorkerError) Unwrap() error { return execution.ErrNoWorker }

func (p placement) Worker(runtime string) (*actor.PID, error) {
	w := p.n.workers.current.Load()
	candidates := w.byRuntime[runtime]
	if len(candidates) == 0 && len(p.n.cfg.Join) == 0 && w.members == 1 {
		// Nobody else is coming: a node started without seeds that has never
		// seen another member fails at once, the way a single node always
		// did, instead of waiting for a member.
		_, err := p.n.runtimes.Get(runtime)
		return nil, err
	}
	if len(candidates) == 0 {
		return nil, &noWorkerError{runtime: runtime, have: w.runtimes}
	}
	best := candidates[0]
	if n := len(candidates); n > 1 {
		// Two different candidates: one picked twice would be no choice.
		i, j := rand.IntN(n), rand.IntN(n-1)
		if j >= i {
			j++
		}
		if best = candidates[i]; free(candidates[j]) > free(best) {
			best = candidates[j]
		}
	}
	if self, ok := w.self[runtime]; ok && free(self) >= free(best) {
		best = self
	}
	return actor.NewPID(best.RemoteAddr, protocol.WorkerActor), nil
}

// workerView is what placement and the worker's reports read per
// execution: the live workers by runtime and the members' actor addresses,
// rebuilt when membership or a member's load changes, since copying the
// member list for every execution cost ~3 % of the node's CPU under
// webhook-noop (docs/performance.md).
type workerView struct {
	mu      sync.Mutex // orders rebuilds, so an older one never replaces a newer
	current atomic.Pointer[workers]
}

type workers struct {
	byRuntime map[string][]cluster.Member // alive members with the worker role
	self      map[string]cluster.Member   // this node, by the runtimes its worker runs
	runtimes  []string                    // what they offer together, sorted
	members   int                         // members known, whatever their status
	remote    map[string]string           // actor address of each live member, by name
}

// refresh rebuilds the view from what g knows now.
func (v *workerView) refresh(g *cluster.Cluster) {
	v.mu.Lock()
	defer v.mu.Unlock()
	members := g.Members()
	w := &workers{byRuntime: map[string][]cluster.Member{}, self: map[string]cluster.Member{},
		members: len(members), remote: map[string]string{}}
	self := g.Self().Name
	for _, m := range members {
		if m.Status.Live() {
			w.remote[m.Name] = m.RemoteAddr
		}
	}
	for _, m := range g.Alive() {
		if !m.HasRole(cluster.RoleWorker) || m.RemoteAddr == "" {
			continue
		}
		for _, r := range m.Runtimes {
			w.byRuntime[r] = append(w.byRuntime[r], m)
			w.runtimes = append(w.runtimes, r)
			if m.Name == self {
				w.self[r] = m
			}
		}
	}
	slices.Sort(w.runtimes)
	w.runtimes = slices.Compact(w.runtimes)
	v.current.Store(w)
}

func free(m cluster.Member) int { return m.Slots - m.SlotsUsed }

func (p placement) Alive(node string) bool {
	m, ok := p.n.gossip.Member(node)
	return ok && m.Status.Live()
}
