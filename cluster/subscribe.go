package cluster

// subscription is one Subscribe channel. lost is set when a change could not
// be delivered; from then on, changes are skipped until a ChangeResync gets
// through, since a subscriber that missed one change must re-read the view
// anyway.
type subscription struct {
	ch   chan Change
	lost bool
}

// Subscribe returns a channel of membership changes, in the order this node
// saw them, and a function that ends the subscription and closes the
// channel. Changes start at the call: read Members afterwards for the state
// so far (a change may then show in both, which is harmless). The channel
// holds Config.SubscriberBuffer changes; a subscriber that falls further
// behind is never waited for: it loses changes and then receives
// ChangeResync, its cue to re-read Members. Shutdown closes the channel.
func (c *Cluster) Subscribe() (<-chan Change, func()) {
	s := &subscription{ch: make(chan Change, c.cfg.SubscriberBuffer)}
	c.subsMu.Lock()
	if c.closed {
		close(s.ch)
	} else {
		c.subs[s] = struct{}{}
	}
	c.subsMu.Unlock()
	cancel := func() {
		c.subsMu.Lock()
		defer c.subsMu.Unlock()
		if _, ok := c.subs[s]; ok {
			delete(c.subs, s)
			close(s.ch)
		}
	}
	return s.ch, cancel
}

// deliver hands changes to every subscriber without blocking. It is called
// on every loop turn, with or without changes, so that a pending resync is
// retried until it gets through.
func (c *Cluster) deliver(changes []Change) {
	c.subsMu.Lock()
	defer c.subsMu.Unlock()
	for s := range c.subs {
		if s.lost {
			select {
			case s.ch <- Change{Kind: ChangeResync}:
				s.lost = false
			default:
				continue
			}
		}
		for _, ch := range changes {
			select {
			case s.ch <- ch:
			default:
				s.lost = true
			}
			if s.lost {
				break
			}
		}
	}
}
