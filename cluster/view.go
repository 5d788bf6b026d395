package cluster

import (
	"slices"
	"strings"
	"time"
)

// ChangeKind says what happened to a member.
type ChangeKind string

// The kinds of change. Resync carries no member: the subscriber fell behind,
// changes were dropped, and it should re-read Members.
const (
	ChangeJoined    ChangeKind = "joined"    // new, or back after dead/left
	ChangeUpdated   ChangeKind = "updated"   // metadata or address changed
	ChangeRestarted ChangeKind = "restarted" // same name, new process (Started changed) before the old one was declared dead
	ChangeSuspect   ChangeKind = "suspect"   // failed a probe; may be dead
	ChangeRecovered ChangeKind = "recovered" // suspect, then evidently alive again
	ChangeDead      ChangeKind = "dead"      // declared failed
	ChangeLeft      ChangeKind = "left"      // left gracefully
	ChangeResync    ChangeKind = "resync"    // changes were dropped: re-read Members
)

func (k ChangeKind) String() string { return string(k) }

// Change is one step in a member's life, as this node sees it.
type Change struct {
	Kind ChangeKind
	// Member is the member after the change (zero for ChangeResync).
	Member Member
	// Previous is the member before the change, for ChangeUpdated and
	// ChangeRestarted: what the old process advertised.
	Previous Member
}

// entry is the view's record of one member.
type entry struct {
	Member
	// suspectUntil is when a suspicion lapses if no death follows: by then
	// memberlist has either declared the member dead or cleared it.
	suspectUntil time.Time
	// leaving is the Started of the life that announced a graceful leave,
	// so that its departure reads "left", not "dead".
	leaving int64
}

// view is the membership state machine. It is owned by the Cluster's event
// loop and is pure: it is fed events and returns the changes they make, so it
// is tested without a network.
type view struct {
	self     string
	entries  map[string]*entry
	keepDead time.Duration
	// suspectFor is the longest a suspicion can last among live members
	// (memberlist's maximum suspicion timeout plus slack).
	suspectFor func(live int) time.Duration
}

func newView(self string, keepDead time.Duration, suspectFor func(int) time.Duration) *view {
	return &view{self: self, entries: map[string]*entry{}, keepDead: keepDead, suspectFor: suspectFor}
}

// alive applies memberlist's word that a node is alive with this metadata
// (a join or an update).
func (v *view) alive(name, addr string, meta Meta, now time.Time) []Change {
	meta.Name = name // memberlist's name is authoritative
	e, ok := v.entries[name]
	next := Member{Meta: meta, GossipAddr: addr, Status: StatusAlive, Since: now, Self: name == v.self}
	if !ok || !e.Status.Live() {
		v.entries[name] = &entry{Member: next}
		return []Change{{Kind: ChangeJoined, Member: next}}
	}
	var out []Change
	if e.Status == StatusSuspect {
		e.Status, e.Since, e.suspectUntil = StatusAlive, now, time.Time{}
		out = append(out, Change{Kind: ChangeRecovered, Member: e.Member})
	}
	prev := e.Member
	switch {
	case meta.Started != prev.Started:
		e.Member, e.leaving = next, 0
		out = append(out, Change{Kind: ChangeRestarted, Member: e.Member, Previous: prev})
	case !meta.equal(prev.Meta) || addr != prev.GossipAddr:
		e.Meta, e.GossipAddr = meta, addr
		out = append(out, Change{Kind: ChangeUpdated, Member: e.Member, Previous: prev})
	}
	return out
}

// gone applies memberlist's word that a node is dead or has left; memberlist
// does not say which, so a leave announced by that same life decides.
func (v *view) gone(name string, now time.Time) []Change {
	e, ok := v.entries[name]
	if !ok || !e.Status.Live() {
		return nil
	}
	kind, status := ChangeDead, StatusDead
	if e.leaving != 0 && e.leaving == e.Started {
		kind, status = ChangeLeft, StatusLeft
	}
	e.Status, e.Since, e.suspectUntil = status, now, time.Time{}
	return []Change{{Kind: kind, Member: e.Member}}
}

// suspect marks an alive member suspect. started, when non-zero, names the
// life under suspicion, so that news about an old process does not taint a
// new one.
func (v *view) suspect(name string, started int64, now time.Time) []Change {
	e, ok := v.entries[name]
	if !ok || name == v.self || (started != 0 && started != e.Started) {
		return nil
	}
	switch e.Status {
	case StatusSuspect:
		e.suspectUntil = now.Add(v.suspectFor(v.live()))
		return nil
	case StatusAlive:
		e.Status, e.Since, e.suspectUntil = StatusSuspect, now, now.Add(v.suspectFor(v.live()))
		return []Change{{Kind: ChangeSuspect, Member: e.Member}}
	}
	return nil
}

// clear applies evidence that a member is up (a direct ack, or its own
// refutation of a suspicion). started, when non-zero, names the life that
// is up: a restarted process refuting does not vouch for its old life.
func (v *view) clear(name string, started int64, now time.Time) []Change {
	e, ok := v.entries[name]
	if !ok || e.Status != StatusSuspect || (started != 0 && started != e.Started) {
		return nil
	}
	e.Status, e.Since, e.suspectUntil = StatusAlive, now, time.Time{}
	return []Change{{Kind: ChangeRecovered, Member: e.Member}}
}

// leaveIntent records that a member's life announced a graceful leave. The
// announcement may arrive after memberlist already reported the member gone;
// it then turns dead into left.
func (v *view) leaveIntent(name string, started int64, now time.Time) []Change {
	e, ok := v.entries[name]
	if !ok || started != e.Started {
		return nil
	}
	e.leaving = started
	if e.Status == StatusDead {
		e.Status, e.Since = StatusLeft, now
		return []Change{{Kind: ChangeLeft, Member: e.Member}}
	}
	return nil
}

// tick lapses stale suspicions and forgets members gone for longer than
// keepDead.
func (v *view) tick(now time.Time) []Change {
	var out []Change
	for _, name := range v.names() {
		e := v.entries[name]
		switch {
		case e.Status == StatusSuspect && now.After(e.suspectUntil):
			e.Status, e.Since, e.suspectUntil = StatusAlive, now, time.Time{}
			out = append(out, Change{Kind: ChangeRecovered, Member: e.Member})
		case !e.Status.Live() && name != v.self && now.Sub(e.Since) > v.keepDead:
			delete(v.entries, name)
		}
	}
	return out
}

func (v *view) get(name string) (Member, bool) {
	e, ok := v.entries[name]
	if !ok {
		return Member{}, false
	}
	return e.Member, true
}

// live counts live members, this node included.
func (v *view) live() int {
	n := 0
	for _, e := range v.entries {
		if e.Status.Live() {
			n++
		}
	}
	return n
}

func (v *view) names() []string {
	names := make([]string, 0, len(v.entries))
	for name := range v.entries {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// members returns every member, sorted by name.
func (v *view) members() []Member {
	out := make([]Member, 0, len(v.entries))
	for _, e := range v.entries {
		m := e.Member
		m.Meta = m.Meta.Clone()
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}
