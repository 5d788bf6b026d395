package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/memberlist"
)

// A notice is news memberlist does not spread itself: a graceful leave
// (memberlist reports left and dead members alike), a failed probe (memberlist
// spreads suspicion but tells nobody), and a refutation. Notices ride on
// memberlist's gossip as user messages; every node re-gossips a notice once,
// the first time it sees it, so it reaches the whole cluster rather than only
// the few members its origin gossips to.
type notice struct {
	Kind    noticeKind `json:"k"`
	Node    string     `json:"n"`           // whom it is about
	Started int64      `json:"s,omitempty"` // which life of Node
	From    string     `json:"o"`           // origin
	Seq     uint64     `json:"q"`           // origin's sequence number, unique across its restarts
}

type noticeKind string

const (
	noticeLeave   noticeKind = "leave"   // Node's life Started is leaving gracefully
	noticeSuspect noticeKind = "suspect" // From's probe of Node failed
	noticeRefute  noticeKind = "refute"  // Node is alive, whatever was suspected
)

// noticeTag starts every user message we gossip, so that other message
// kinds can be added later without confusing old nodes.
const noticeTag = 'n'

func (n notice) encode() []byte {
	b, _ := json.Marshal(n) // plain strings and integers: cannot fail
	return append([]byte{noticeTag}, b...)
}

func decodeNotice(b []byte) (notice, error) {
	if len(b) == 0 || b[0] != noticeTag {
		return notice{}, errors.New("decode gossip notice: unknown message tag")
	}
	var n notice
	if err := json.Unmarshal(b[1:], &n); err != nil {
		return notice{}, fmt.Errorf("decode gossip notice: %w", err)
	}
	switch n.Kind {
	case noticeLeave, noticeSuspect, noticeRefute:
	default:
		return notice{}, fmt.Errorf("decode gossip notice: unknown kind %q", n.Kind)
	}
	if n.Node == "" || n.From == "" {
		return notice{}, errors.New("decode gossip notice: missing node or origin")
	}
	return n, nil
}

func (n notice) key() string { return fmt.Sprintf("%s/%d", n.From, n.Seq) }

// broadcast is one queued notice. Every notice is its own broadcast: none
// replaces another in the queue.
type broadcast struct {
	msg  []byte
	once sync.Once
	done chan struct{} // closed when memberlist stops transmitting it
}

var (
	_ memberlist.Broadcast       = (*broadcast)(nil)
	_ memberlist.UniqueBroadcast = (*broadcast)(nil)
)

func newBroadcast(msg []byte) *broadcast { return &broadcast{msg: msg, done: make(chan struct{})} }

func (b *broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *broadcast) Message() []byte                       { return b.msg }
func (b *broadcast) Finished()                             { b.once.Do(func() { close(b.done) }) }
func (b *broadcast) UniqueBroadcast()                      {}
