package cluster

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Cluster is this node's membership: it gossips this node's metadata and
// keeps the view of everyone else's.
type Cluster struct {
	cfg       Config
	logger    *slog.Logger
	ml        *memberlist.Memberlist
	d         *delegate
	queue     *memberlist.TransmitLimitedQueue
	events    *inbox
	localAddr string

	// local is this node's metadata, the authority for Self and for what is
	// gossiped; updateMu serialises UpdateMeta.
	updateMu sync.Mutex
	localMu  sync.RWMutex
	local    Meta

	snapshot atomic.Pointer[[]Member] // the view as last published by the loop
	live     atomic.Int32             // live members, for the broadcast queue
	seq      atomic.Uint64            // notice sequence

	subsMu sync.Mutex
	subs   map[*subscription]struct{}
	closed bool

	stateMu  sync.Mutex // orders Leave and Shutdown
	left     atomic.Bool
	shutdown atomic.Bool

	// joiningSince is when this node, none of whose seeds answered, began
	// retrying them (Unix nanoseconds); 0 once it has met a member, and when
	// it never had to retry.
	joiningSince atomic.Int64

	rejoin chan []string
	quit   chan struct{}
	done   sync.WaitGroup
}

// New starts gossip on cfg.BindAddr, joins the seeds in cfg.Join (when there
// are any), and starts the event loop. When every seed fails it logs each
// seed and why, and starts alone, retrying them in the background
// (cfg.JoinRetry); it fails with that error instead when JoinRetry is 0, or
// when a seed answered and turned this node away (another cluster name or
// gossip key: a misconfiguration no retry mends).
func New(cfg Config) (*Cluster, error) {
	if cfg.Meta.Started == 0 {
		cfg.Meta.Started = time.Now().UnixNano()
	}
	cfg.Meta = cfg.Meta.Clone()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Cluster{
		cfg:    cfg,
		logger: cfg.Logger.With("component", "cluster", "node", cfg.Meta.Name),
		events: newInbox(),
		local:  cfg.Meta,
		subs:   map[*subscription]struct{}{},
		rejoin: make(chan []string, 1),
		quit:   make(chan struct{}),
	}
	c.snapshot.Store(&[]Member{})
	// Notices are deduplicated by origin name and sequence number; starting
	// from the start time keeps a restarted node's numbers clear of its
	// previous life's.
	c.seq.Store(uint64(cfg.Meta.Started))
	c.queue = &memberlist.TransmitLimitedQueue{
		// Not memberlist.NumMembers: this is called from GetBroadcasts, a
		// delegate, where calling memberlist is not safe.
		NumNodes:       func() int { return max(1, int(c.live.Load())) },
		RetransmitMult: memberlist.DefaultLANConfig().RetransmitMult,
	}
	encoded, err := cfg.Meta.Encode()
	if err != nil {
		return nil, err
	}
	c.d = &delegate{
		self: cfg.Meta.Name, cluster: cfg.Meta.Cluster, logger: c.logger,
		events: c.events, queue: c.queue, meta: encoded, refused: map[string]time.Time{},
	}

	mlLogger := log.New(&logBridge{logger: c.logger, events: c.events}, "", 0)
	transport, err := newTransport(cfg.BindAddr, mlLogger)
	if err != nil {
		return nil, err
	}
	mc, err := c.memberlistConfig(transport, mlLogger)
	if err != nil {
		_ = transport.Shutdown()
		return nil, err
	}
	ip, port, err := transport.FinalAdvertiseAddr(mc.AdvertiseAddr, mc.AdvertisePort)
	if err != nil {
		_ = transport.Shutdown()
		return nil, fmt.Errorf("choose gossip advertise address: %w (set AdvertiseAddr)", err)
	}
	c.localAddr = net.JoinHostPort(ip.String(), strconv.Itoa(port))
	mc.AdvertiseAddr, mc.AdvertisePort = ip.String(), port

	// Create calls our delegates for this node itself (alive, join); they
	// only enqueue, so the loop can start afterwards.
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = transport.Shutdown()
		return nil, fmt.Errorf("start gossip on %s: %w", c.localAddr, err)
	}
	c.ml = ml

	// Take in what Create reported (this node's own join) before the loop
	// starts, so that Members and Self include this node from the start.
	v := newView(cfg.Meta.Name, cfg.KeepDead, c.suspectFor)
	l := &loop{c: c, v: v, seen: map[string]time.Time{}, lastRejoin: time.Now()}
	for _, ev := range c.events.take() {
		l.handle(ev, time.Now())
	}
	c.publish(v)
	c.done.Add(2)
	go c.run(l)
	go c.rejoiner()

	if refused, err := c.join(); err != nil {
		if cfg.JoinRetry == 0 || refused {
			_ = c.Shutdown()
			return nil, err
		}
		c.logger.Warn("no seed answered; running alone and retrying them in the background",
			"seeds", c.seeds(), "retry_every", cfg.JoinRetry, "error", oneLine(err))
		c.joiningSince.Store(time.Now().UnixNano())
	}
	c.logger.Info("gossip started", "addr", c.localAddr, "cluster", cfg.Meta.Cluster,
		"seeds", cfg.Join, "encrypted", len(cfg.GossipKey) > 0)
	return c, nil
}

// newTransport binds gossip. With port 0 it retries, because the UDP socket
// must take the port the TCP listener picked, and another process may hold it.
func newTransport(bindAddr string, logger *log.Logger) (*memberlist.NetTransport, error) {
	host, port, err := bindHostPort(bindAddr)
	if err != nil {
		return nil, err
	}
	tries := 1
	if port == 0 {
		tries = 10
	}
	for i := 0; ; i++ {
		t, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{host}, BindPort: port, Logger: logger,
		})
		if err == nil {
			return t, nil
		}
		if i+1 >= tries {
			return nil, fmt.Errorf("bind gossip on %s: %w", bindAddr, err)
		}
	}
}

func (c *Cluster) memberlistConfig(t *memberlist.NetTransport, logger *log.Logger) (*memberlist.Config, error) {
	cfg, tm := c.cfg, c.cfg.Timing
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Meta.Name
	mc.Transport = t
	mc.BindAddr, _, _ = bindHostPort(cfg.BindAddr)
	mc.BindPort = t.GetAutoBindPort()
	mc.AdvertisePort = mc.BindPort
	if cfg.AdvertiseAddr != "" {
		host, port, err := advertiseHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, err
		}
		mc.AdvertiseAddr = host
		if port != 0 {
			mc.AdvertisePort = port
		}
	}
	mc.ProbeInterval = tm.ProbeInterval
	mc.ProbeTimeout = tm.ProbeTimeout
	mc.SuspicionMult = tm.SuspicionMult
	mc.GossipInterval = tm.GossipInterval
	mc.PushPullInterval = tm.PushPullInterval
	mc.GossipToTheDeadTime = tm.PushPullInterval
	mc.TCPTimeout = tm.TCPTimeout
	// memberlist's default 0 never lets a name move to a new address while
	// the old one is remembered dead (PushPullInterval, or forever if it
	// keeps being re-learnt). A node restarted on a new port must be taken
	// back as soon as its old life is declared dead.
	mc.DeadNodeReclaimTime = tm.ProbeInterval
	if len(cfg.GossipKey) > 0 {
		mc.SecretKey = slices.Clone(cfg.GossipKey)
	}
	mc.Delegate, mc.Events, mc.Alive, mc.Merge, mc.Conflict, mc.Ping = c.d, c.d, c.d, c.d, c.d, c.d
	mc.Logger = logger
	return mc, nil
}

// join contacts every seed on its own, so that a failure names its seed.
// refused reports whether a seed answered and turned this node away.
func (c *Cluster) join() (refused bool, err error) {
	var errs []error
	joined, tried := 0, 0
	for _, seed := range c.seeds() {
		tried++
		if _, err := c.ml.Join([]string{seed}); err != nil {
			err = joinError(seed, err)
			c.logger.Warn("could not join seed", "seed", seed, "error", err)
			errs = append(errs, err)
			refused = refused || isRefusal(err.Error())
			continue
		}
		joined++
	}
	if tried > 0 && joined == 0 {
		return refused, fmt.Errorf("join cluster %q: %w", c.cfg.Meta.Cluster, errors.Join(errs...))
	}
	return false, nil
}

// isRefusal reports whether a join failed because the seed turned this
// node away (our delegates' refusal, or gossip it could not decrypt)
// rather than because nobody answered.
func isRefusal(cause string) bool {
	return strings.Contains(cause, refusalMarker) || strings.Contains(cause, "crypt")
}

// seeds are the seeds of Config.Join other than this node itself.
func (c *Cluster) seeds() []string {
	return slices.DeleteFunc(slices.Clone(c.cfg.Join), c.isSelf)
}

// Joining returns the seeds this node keeps trying while none of them has
// answered and no member has joined it; nil once it has met a member. A
// node that is still joining knows the cluster it was told to be part of
// is larger than what it sees.
func (c *Cluster) Joining() []string {
	// The loop ends the retrying at its next tick; the view knows earlier.
	if c.joiningSince.Load() == 0 || c.live.Load() > 1 {
		return nil
	}
	return c.seeds()
}

// Fast join retries: the nodes of a new cluster are started within a
// minute of each other, and should find each other within seconds.
const (
	joinFastFor   = time.Minute
	joinFastEvery = 2 * time.Second
)

// joinRetryAfter is the pause before the next try of a node that has been
// retrying its seeds for waited.
func (c *Cluster) joinRetryAfter(waited time.Duration) time.Duration {
	if waited < joinFastFor {
		return min(joinFastEvery, c.cfg.JoinRetry)
	}
	return c.cfg.JoinRetry
}

func (c *Cluster) isSelf(seed string) bool {
	if seed == c.localAddr {
		return true
	}
	host, port, err := splitHostPort(seed)
	if err != nil || strconv.Itoa(port) != portOf(c.localAddr) {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsUnspecified() || ip.Equal(net.ParseIP(hostOf(c.localAddr))))
}

var mlJoinPrefix = regexp.MustCompile(`failed to join \S+: `)

// joinError says which seed failed and why, in words an operator can act on.
// memberlist wraps per-seed errors in a multierror of formatted strings, so
// the cause is recovered from its text.
func joinError(seed string, err error) error {
	cause := err.Error()
	if w, ok := err.(interface{ WrappedErrors() []error }); ok && len(w.WrappedErrors()) > 0 {
		cause = w.WrappedErrors()[0].Error()
	}
	cause = strings.TrimSpace(mlJoinPrefix.ReplaceAllString(cause, ""))
	switch {
	case strings.Contains(cause, "crypt"):
		cause += " (is the gossip key the same on every node?)"
	case strings.Contains(cause, "connection refused"):
		cause += " (is a troupe node listening there?)"
	}
	return fmt.Errorf("join %s: %s", seed, cause)
}

// suspectFor bounds how long memberlist can keep a member suspect before it
// declares it dead: its maximum suspicion timeout (6 × the nominal one), plus
// two probe rounds for the death to reach us.
func (c *Cluster) suspectFor(live int) time.Duration {
	tm := c.cfg.Timing
	scale := math.Max(1, math.Log10(math.Max(1, float64(live))))
	nominal := time.Duration(float64(tm.SuspicionMult) * scale * float64(tm.ProbeInterval))
	return time.Duration(memberlist.DefaultLANConfig().SuspicionMaxTimeoutMult)*nominal + 2*tm.ProbeInterval
}

// run is the event loop: the only goroutine that touches the view.
func (c *Cluster) run(l *loop) {
	defer c.done.Done()
	tick := time.NewTicker(c.cfg.Timing.ProbeInterval)
	defer tick.Stop()
	v := l.v
	for {
		var changes []Change
		select {
		case <-c.quit:
			return
		case <-c.events.wake:
			now := time.Now()
			for _, ev := range c.events.take() {
				changes = append(changes, l.handle(ev, now)...)
			}
		case now := <-tick.C:
			changes = v.tick(now)
			l.tick(now)
		}
		if len(changes) > 0 {
			c.publish(v)
			for _, ch := range changes {
				c.logChange(ch)
			}
		}
		c.deliver(changes)
	}
}

// publish makes the view what Members returns. Subscribers are told after
// it, so that a change they receive is already in Members.
func (c *Cluster) publish(v *view) {
	members := v.members()
	c.snapshot.Store(&members)
	c.live.Store(int32(v.live()))
}

// loop is the event loop's own state besides the view.
type loop struct {
	c          *Cluster
	v          *view
	seen       map[string]time.Time // notices seen, by origin and sequence
	pushUntil  time.Time            // push our state to every live peer each round until then
	lastRejoin time.Time
	nextJoin   time.Time // of a node still joining (Cluster.Joining)
}

func (l *loop) handle(ev event, now time.Time) []Change {
	c, v := l.c, l.v
	switch ev.kind {
	case evAlive:
		meta, err := DecodeMeta(ev.meta)
		if err != nil {
			// NotifyAlive let it in, so this is our own bug or a race
			// with a metadata change; keep the member, log the problem.
			c.logger.Warn("bad metadata from a member", "peer", ev.name, "error", err)
		}
		return v.alive(ev.name, ev.addr, meta, now)
	case evGone:
		return v.gone(ev.name, now)
	case evProbeFailed:
		m, ok := v.get(ev.name)
		changes := v.suspect(ev.name, 0, now)
		if ok && len(changes) > 0 {
			l.notify(notice{Kind: noticeSuspect, Node: ev.name, Started: m.Started})
		}
		return changes
	case evAck:
		return v.clear(ev.name, 0, now)
	case evRefuted:
		// A peer holds us suspect or dead — possibly our previous life,
		// at another address, which it will not let us replace until
		// our state reaches it after that life's death.
		l.refute()
		l.pushUntil = now.Add(3 * c.cfg.Timing.ProbeInterval)
	case evSelfConflict:
		l.pushUntil = now.Add(3 * c.cfg.Timing.ProbeInterval)
	case evLeaving:
		return v.leaveIntent(ev.name, ev.started, now)
	case evNotice:
		n, err := decodeNotice(ev.raw)
		if err != nil {
			c.logger.Debug("ignored a gossip message", "error", err)
			return nil
		}
		if n.From == c.cfg.Meta.Name || !l.firstSight(n, now) {
			return nil
		}
		c.queue.QueueBroadcast(newBroadcast(ev.raw)) // pass it on, once
		switch n.Kind {
		case noticeLeave:
			return v.leaveIntent(n.Node, n.Started, now)
		case noticeSuspect:
			if n.Node == c.cfg.Meta.Name {
				// Someone cannot reach us (memberlist refutes by
				// itself; we tell the suspicion's audience) — unless
				// it is our previous life they cannot reach.
				if n.Started == 0 || n.Started == c.cfg.Meta.Started {
					l.refute()
				}
				return nil
			}
			return v.suspect(n.Node, n.Started, now)
		case noticeRefute:
			return v.clear(n.Node, n.Started, now)
		}
	}
	return nil
}

func (l *loop) refute() {
	l.notify(notice{Kind: noticeRefute, Node: l.c.cfg.Meta.Name, Started: l.c.cfg.Meta.Started})
}

func (l *loop) notify(n notice) { l.c.notify(n) }

// firstSight reports whether the notice is new, remembering it if so.
func (l *loop) firstSight(n notice, now time.Time) bool {
	k := n.key()
	if _, ok := l.seen[k]; ok {
		return false
	}
	l.seen[k] = now
	return true
}

func (l *loop) tick(now time.Time) {
	c := l.c
	for k, at := range l.seen {
		// Long after any retransmission of it could still arrive.
		if now.Sub(at) > 10*c.cfg.Timing.PushPullInterval {
			delete(l.seen, k)
		}
	}
	members := l.v.members()
	var peers, dead []string
	for _, m := range members {
		switch {
		case m.Self:
		case m.Status.Live():
			peers = append(peers, m.GossipAddr)
		case m.Status == StatusDead:
			dead = append(dead, m.GossipAddr)
		}
	}
	if l.retryJoin(now, len(peers)) {
		return
	}
	// A peer holds our name at our previous address, or holds us
	// suspect or dead: push our state to the live members every round, so
	// that we are taken back as soon as they let the previous life go
	// (memberlist accepts a new address only after the old one has been
	// dead for DeadNodeReclaimTime), not a push/pull interval later.
	if now.Before(l.pushUntil) && len(peers) > 0 {
		c.requestRejoin(peers)
		return
	}
	if c.cfg.RejoinInterval == 0 || now.Sub(l.lastRejoin) < c.cfg.RejoinInterval {
		return
	}
	l.lastRejoin = now
	targets := dead
	if len(peers) == 0 {
		targets = append(targets, c.seeds()...)
	}
	if len(targets) > 0 {
		c.requestRejoin(targets)
	}
}

// retryJoin tries the seeds again, on the JoinRetry schedule, while this
// node has met no member; it reports whether it still has not.
func (l *loop) retryJoin(now time.Time, peers int) bool {
	c := l.c
	since := c.joiningSince.Load()
	if since == 0 {
		return false
	}
	began := time.Unix(0, since)
	if peers > 0 {
		c.joiningSince.Store(0)
		c.logger.Info("joined the cluster", "waited", now.Sub(began).Round(time.Millisecond))
		return false
	}
	if now.Before(l.nextJoin) {
		return true
	}
	c.requestRejoin(c.seeds())
	l.nextJoin = now.Add(c.joinRetryAfter(now.Sub(began)))
	return true
}

func (c *Cluster) requestRejoin(addrs []string) {
	select {
	case c.rejoin <- slices.Clone(addrs):
	default: // one is running; the next round asks again
	}
}

// rejoiner joins off the loop: a join to an unreachable address can take a
// whole TCPTimeout.
func (c *Cluster) rejoiner() {
	defer c.done.Done()
	for {
		select {
		case <-c.quit:
			return
		case addrs := <-c.rejoin:
			if c.hasLeft() {
				continue
			}
			n, err := c.ml.Join(addrs)
			var reason string
			if err != nil {
				reason = oneLine(err)
			}
			msg, level := "rejoin", slog.LevelDebug
			switch since := c.joiningSince.Load(); {
			case since == 0 || err == nil:
			case isRefusal(reason):
				msg, level = "a seed turned this node away; retrying", slog.LevelWarn
			case time.Since(time.Unix(0, since)) >= joinFastFor:
				// Past the start of a new cluster: someone should look.
				msg, level = "still no seed answers; retrying", slog.LevelWarn
			}
			c.logger.Log(context.Background(), level, msg, "addrs", addrs, "reached", n, "error", reason)
		}
	}
}

// notify gossips a notice of ours and returns when memberlist stopped
// transmitting it.
func (c *Cluster) notify(n notice) <-chan struct{} {
	n.From = c.cfg.Meta.Name
	n.Seq = c.seq.Add(1)
	b := newBroadcast(n.encode())
	c.queue.QueueBroadcast(b)
	return b.done
}

func (c *Cluster) logChange(ch Change) {
	m := ch.Member
	args := []any{"peer", m.Name, "change", ch.Kind, "addr", m.GossipAddr}
	switch ch.Kind {
	case ChangeJoined, ChangeRestarted:
		args = append(args, "roles", m.Roles, "runtimes", m.Runtimes, "slots", m.Slots, "started", time.Unix(0, m.Started).UTC())
	}
	level := slog.LevelInfo
	switch ch.Kind {
	case ChangeUpdated, ChangeRecovered:
		level = slog.LevelDebug
	case ChangeSuspect, ChangeDead:
		level = slog.LevelWarn
	}
	c.logger.Log(context.Background(), level, "member "+string(ch.Kind), args...)
}

// Members returns every member this node knows, this node included, dead and
// left ones for Config.KeepDead after they went, sorted by name.
func (c *Cluster) Members() []Member {
	members := slices.Clone(*c.snapshot.Load())
	for i := range members {
		members[i].Meta = members[i].Meta.Clone()
		if members[i].Self {
			members[i].Meta = c.LocalMeta()
		}
	}
	return members
}

// Alive returns the members to give new work to: status alive, this node
// included. Suspect members are left out: one may be dead, and new work can
// wait for a member that is not in doubt. A suspect member still owns what it
// owns (see Status.Live); only dead or left moves that.
func (c *Cluster) Alive() []Member {
	return slices.DeleteFunc(c.Members(), func(m Member) bool { return m.Status != StatusAlive })
}

// Member returns the member of that name, if this node knows it.
func (c *Cluster) Member(name string) (Member, bool) {
	for _, m := range c.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// Self returns this node as a member.
func (c *Cluster) Self() Member {
	if m, ok := c.Member(c.cfg.Meta.Name); ok {
		return m
	}
	return Member{Meta: c.LocalMeta(), GossipAddr: c.localAddr, Status: StatusAlive, Self: true}
}

// LocalMeta returns this node's metadata as currently gossiped.
func (c *Cluster) LocalMeta() Meta {
	c.localMu.RLock()
	defer c.localMu.RUnlock()
	return c.local.Clone()
}

// LocalAddr returns the gossip host:port this node is reached at.
func (c *Cluster) LocalAddr() string { return c.localAddr }

// UpdateMeta gossips new metadata for this node (runtimes, slots, the
// protoactor fields). Name, Cluster and Started cannot change; a zero Started
// keeps the current one. It waits until the update has been gossiped, at
// most Timing.TCPTimeout; a timeout is only logged, since the new metadata is
// in place and push/pull spreads it anyway.
func (c *Cluster) UpdateMeta(m Meta) error {
	c.updateMu.Lock()
	defer c.updateMu.Unlock()
	return c.updateMeta(m)
}

// EditMeta changes some fields of this node's metadata and gossips it as
// UpdateMeta does; unlike a LocalMeta + UpdateMeta pair, it cannot undo a
// concurrent edit of other fields.
func (c *Cluster) EditMeta(edit func(*Meta)) error {
	c.updateMu.Lock()
	defer c.updateMu.Unlock()
	m := c.LocalMeta()
	edit(&m)
	return c.updateMeta(m)
}

func (c *Cluster) updateMeta(m Meta) error {
	if c.hasLeft() {
		return errors.New("update node metadata: this node has left the cluster")
	}
	cur := c.LocalMeta()
	if m.Started == 0 {
		m.Started = cur.Started
	}
	m = m.Clone()
	var errs []error
	if m.Name != cur.Name {
		errs = append(errs, fmt.Errorf("name cannot change from %q to %q", cur.Name, m.Name))
	}
	if m.Cluster != cur.Cluster {
		errs = append(errs, fmt.Errorf("cluster cannot change from %q to %q", cur.Cluster, m.Cluster))
	}
	if m.Started != cur.Started {
		errs = append(errs, fmt.Errorf("started cannot change from %d to %d", cur.Started, m.Started))
	}
	if err := m.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("update node metadata: %w", err)
	}
	if m.equal(cur) {
		return nil
	}
	b, err := m.Encode()
	if err != nil {
		return fmt.Errorf("update node metadata: %w", err)
	}
	c.localMu.Lock()
	c.local = m
	c.localMu.Unlock()
	c.d.setMeta(b)
	if err := c.ml.UpdateNode(c.cfg.Timing.TCPTimeout); err != nil {
		c.logger.Warn("metadata update not yet gossiped; push/pull will spread it", "error", err)
	}
	return nil
}

// Leave leaves the cluster gracefully: the others see this node as left, not
// dead. It waits up to timeout for the news to spread. The node keeps its
// view; call Shutdown afterwards.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	switch {
	case c.shutdown.Load():
		return errors.New("leave cluster: gossip is already shut down")
	case c.left.Load():
		return nil
	}
	c.left.Store(true)
	deadline := time.Now().Add(timeout)
	self := c.LocalMeta()
	c.events.put(event{kind: evLeaving, name: self.Name, started: self.Started})
	// Announce the leave first, so that the others can tell it from a
	// failure when memberlist reports this node gone.
	if c.live.Load() > 1 {
		select {
		case <-c.notify(notice{Kind: noticeLeave, Node: self.Name, Started: self.Started}):
		case <-time.After(timeout / 2):
		}
	}
	if err := c.ml.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		return fmt.Errorf("leave cluster: %w (the others will declare this node dead instead)", err)
	}
	c.logger.Info("left the cluster")
	return nil
}

func (c *Cluster) hasLeft() bool { return c.left.Load() }

// Shutdown stops gossip without leaving (the others will declare this node
// dead) unless Leave was called first, stops the event loop and closes every
// subscription. It is safe to call more than once.
func (c *Cluster) Shutdown() error {
	c.stateMu.Lock()
	if c.shutdown.Load() {
		c.stateMu.Unlock()
		return nil
	}
	c.shutdown.Store(true)
	c.stateMu.Unlock()
	err := c.ml.Shutdown()
	close(c.quit)
	c.done.Wait()
	c.subsMu.Lock()
	c.closed = true
	for s := range c.subs {
		delete(c.subs, s)
		close(s.ch)
	}
	c.subsMu.Unlock()
	if err != nil {
		return fmt.Errorf("shut down gossip: %w", err)
	}
	return nil
}

// oneLine flattens a multi-line error (memberlist's multierror,
// errors.Join) for a log line.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

func hostOf(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
