package cluster

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Compile-time checks: one type carries every memberlist hook.
var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.AliveDelegate    = (*delegate)(nil)
	_ memberlist.MergeDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
	_ memberlist.PingDelegate     = (*delegate)(nil)
)

// refusalMarker is in every refusal our delegates return, so the log bridge
// can tell memberlist's repetitions of it apart.
const refusalMarker = "refused by troupe"

// delegate receives memberlist's callbacks. memberlist calls most of them
// with its node lock held, so none of them calls memberlist: they copy what
// they were given into the inbox, or answer from state of their own.
type delegate struct {
	self    string
	cluster string
	logger  *slog.Logger
	events  *inbox
	queue   *memberlist.TransmitLimitedQueue

	metaMu sync.RWMutex
	meta   []byte // this node's encoded Meta, as gossiped

	refusedMu sync.Mutex
	refused   map[string]time.Time // peer+reason → last logged
}

func (d *delegate) setMeta(b []byte) {
	d.metaMu.Lock()
	d.meta = b
	d.metaMu.Unlock()
}

// NodeMeta returns this node's metadata; UpdateMeta has checked its size.
func (d *delegate) NodeMeta(limit int) []byte {
	d.metaMu.RLock()
	defer d.metaMu.RUnlock()
	if len(d.meta) > limit {
		return nil // unreachable: memberlist would panic on an oversize answer
	}
	return d.meta
}

// NotifyMsg receives a gossiped notice; b is reused after we return.
func (d *delegate) NotifyMsg(b []byte) {
	d.events.put(event{kind: evNotice, raw: bytes.Clone(b)})
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.GetBroadcasts(overhead, limit)
}

// LocalState and MergeRemoteState carry nothing: everything durable about a
// member is in its metadata, which push/pull already exchanges.
func (d *delegate) LocalState(bool) []byte            { return nil }
func (d *delegate) MergeRemoteState(_ []byte, _ bool) {}

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.alive(n) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.alive(n) }
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	d.events.put(event{kind: evGone, name: n.Name})
}

func (d *delegate) alive(n *memberlist.Node) {
	d.events.put(event{kind: evAlive, name: n.Name, addr: nodeAddr(n), meta: bytes.Clone(n.Meta)})
}

// NotifyAlive filters every alive message, gossiped or pushed: a node of
// another cluster is never taken in, even if it reached us by gossip rather
// than by joining.
func (d *delegate) NotifyAlive(peer *memberlist.Node) error {
	return d.check(peer, "alive message")
}

// NotifyMerge vets the member list a node brings when it joins us or we
// join it: one foreign member cancels the whole merge, on both sides.
func (d *delegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, p := range peers {
		if err := d.check(p, "join"); err != nil {
			return err
		}
	}
	return nil
}

func (d *delegate) check(peer *memberlist.Node, via string) error {
	meta, err := DecodeMeta(peer.Meta)
	var reason string
	switch {
	case err != nil:
		reason = fmt.Sprintf("node %q at %s is not a troupe node: %v", peer.Name, nodeAddr(peer), err)
	case meta.Cluster != d.cluster:
		reason = fmt.Sprintf("node %q at %s belongs to cluster %q, this node %q to cluster %q",
			peer.Name, nodeAddr(peer), meta.Cluster, d.self, d.cluster)
	case meta.Name != peer.Name:
		reason = fmt.Sprintf("node %q at %s gossips metadata of node %q", peer.Name, nodeAddr(peer), meta.Name)
	default:
		return nil
	}
	d.logRefusal(peer.Name+"|"+reason, "refused a node", "peer", peer.Name, "via", via, "reason", reason)
	return fmt.Errorf("%s (%s)", reason, refusalMarker)
}

// logRefusal logs once per key and minute: memberlist repeats alive messages.
func (d *delegate) logRefusal(key, msg string, args ...any) {
	d.refusedMu.Lock()
	last, seen := d.refused[key]
	now := time.Now()
	if seen && now.Sub(last) < time.Minute {
		d.refusedMu.Unlock()
		return
	}
	d.refused[key] = now
	d.refusedMu.Unlock()
	d.logger.Warn(msg, args...)
}

// NotifyConflict is called when a node claims a name that memberlist holds
// at another address.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	if existing.Name == d.self {
		// The cluster remembers an earlier life of this node at another
		// address; it is accepted once that life is declared dead, and the
		// event loop keeps re-joining until then.
		d.logRefusal("conflict|"+nodeAddr(other),
			"the cluster still holds this node's name at its previous address; waiting for that to be declared dead",
			"previous", nodeAddr(other), "current", nodeAddr(existing))
		d.events.put(event{kind: evSelfConflict})
		return
	}
	d.logRefusal("conflict|"+existing.Name+"|"+nodeAddr(other),
		"two addresses claim one node name; the newer is ignored until the older is declared dead",
		"peer", existing.Name, "known", nodeAddr(existing), "claimant", nodeAddr(other))
}

func (d *delegate) AckPayload() []byte { return nil }

// NotifyPingComplete reports a direct ack: the member is up, whatever was
// suspected of it.
func (d *delegate) NotifyPingComplete(other *memberlist.Node, _ time.Duration, _ []byte) {
	d.events.put(event{kind: evAck, name: other.Name})
}

func nodeAddr(n *memberlist.Node) string {
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// inbox is the unbounded queue from memberlist's callbacks to the event
// loop. Unbounded, so a callback never blocks and no membership event is
// lost; it grows only as fast as the cluster changes.
type inbox struct {
	mu   sync.Mutex
	q    []event
	wake chan struct{}
}

func newInbox() *inbox { return &inbox{wake: make(chan struct{}, 1)} }

func (b *inbox) put(e event) {
	b.mu.Lock()
	b.q = append(b.q, e)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *inbox) take() []event {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.q
	b.q = nil
	return q
}

type evKind int

const (
	evAlive        evKind = iota // memberlist: name is alive at addr with meta (join or update)
	evGone                       // memberlist: name is dead or has left
	evProbeFailed                // memberlist's log: our probe of name failed; it is now suspect
	evRefuted                    // memberlist's log: we refuted a suspicion of ourselves
	evAck                        // memberlist: a direct ack from name
	evNotice                     // a gossiped notice (raw)
	evSelfConflict               // a peer holds our name at another address
	evLeaving                    // Leave: this life (started) is leaving
)

type event struct {
	kind    evKind
	name    string
	addr    string
	meta    []byte
	raw     []byte
	started int64
}
