package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Timing is the failure detector's pace. Faster detection costs more
// traffic and more false suspicions on a loaded machine.
type Timing struct {
	// ProbeInterval is how often this node probes one random member.
	// LAN default 1s.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe waits for an ack before asking other
	// members to probe indirectly; it must be below ProbeInterval. LAN
	// default 500ms.
	ProbeTimeout time.Duration
	// SuspicionMult scales how long a suspect member has to refute before
	// it is declared dead: SuspicionMult × max(1, log10(members)) ×
	// ProbeInterval, shortened by confirmations from other members. LAN
	// default 4.
	SuspicionMult int
	// GossipInterval is how often this node gossips queued news to a few
	// members. LAN default 200ms.
	GossipInterval time.Duration
	// PushPullInterval is how often this node exchanges its full state with
	// one random member (anti-entropy), and how long dead members are still
	// gossiped to. LAN default 30s.
	PushPullInterval time.Duration
	// TCPTimeout bounds a join, a push/pull and a fallback TCP probe; it
	// also bounds how long UpdateMeta waits for the update to be gossiped.
	// LAN default 10s.
	TCPTimeout time.Duration
}

// LANTiming is memberlist's LAN preset: a hard-stopped member is declared
// dead in about 5–7 s.
func LANTiming() Timing {
	return Timing{
		ProbeInterval:    time.Second,
		ProbeTimeout:     500 * time.Millisecond,
		SuspicionMult:    4,
		GossipInterval:   200 * time.Millisecond,
		PushPullInterval: 30 * time.Second,
		TCPTimeout:       10 * time.Second,
	}
}

// TestTiming is a fast preset for tests on loopback: a hard-stopped member
// is declared dead in about 1–2 s.
func TestTiming() Timing {
	return Timing{
		ProbeInterval:    200 * time.Millisecond,
		ProbeTimeout:     100 * time.Millisecond,
		SuspicionMult:    3,
		GossipInterval:   50 * time.Millisecond,
		PushPullInterval: 2 * time.Second,
		TCPTimeout:       2 * time.Second,
	}
}

func (t Timing) validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"probe interval", t.ProbeInterval}, {"probe timeout", t.ProbeTimeout},
		{"gossip interval", t.GossipInterval}, {"push/pull interval", t.PushPullInterval},
		{"tcp timeout", t.TCPTimeout},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", d.name, d.v))
		}
	}
	if t.ProbeTimeout > 0 && t.ProbeInterval > 0 && t.ProbeTimeout >= t.ProbeInterval {
		errs = append(errs, fmt.Errorf("probe timeout %s must be below probe interval %s", t.ProbeTimeout, t.ProbeInterval))
	}
	if t.SuspicionMult < 1 {
		errs = append(errs, fmt.Errorf("suspicion multiplier must be at least 1, got %d", t.SuspicionMult))
	}
	return errors.Join(errs...)
}

// Config is one node's membership.
type Config struct {
	// Meta describes this node; Name and Cluster are required, Started is
	// set by New when zero. The Provider adds the protoactor fields.
	Meta Meta
	// BindAddr is the gossip (UDP and TCP) host:port. The host must be an
	// IP address, or empty for all interfaces; port 0 picks a free port,
	// which LocalAddr reports. Default "0.0.0.0:7946".
	BindAddr string
	// AdvertiseAddr is the host or host:port other nodes reach this node
	// at, when that differs from BindAddr (NAT, containers). Default: the
	// bound address, or when bound to all interfaces, the first private IP.
	AdvertiseAddr string
	// Join lists seed gossip addresses (host:port). Empty starts a new
	// cluster. This node's own address is skipped, so every node may be
	// given the same list. When no seed answers, New starts this node alone
	// and keeps trying them (see JoinRetry), or fails if JoinRetry is 0. A
	// seed that answers and refuses this node (another cluster name or
	// gossip key) makes New fail either way.
	Join []string
	// JoinRetry is how often a node that has not yet met any member tries
	// its seeds again, once the first minute of tries every 2s (or every
	// JoinRetry, if shorter) is over: the nodes of a new cluster start
	// within seconds of each other, a node whose seeds stay away for longer
	// is waiting for an operator. Retrying ends once this node has met a
	// member, whoever joined whom. 0 makes New fail instead when no seed
	// answers. Default 20s.
	JoinRetry time.Duration
	// GossipKey, when set, encrypts and authenticates all gossip with
	// AES-GCM; it must be 16, 24 or 32 bytes, and the same on every node.
	// Default none.
	GossipKey []byte
	// Timing paces failure detection. Default LANTiming().
	Timing Timing
	// KeepDead is how long dead and left members stay in Members() after
	// they went, so operators can see them. Default 10m.
	KeepDead time.Duration
	// RejoinInterval is how often this node tries to re-contact members it
	// holds dead (and the seeds, when it is alone), so that a healed
	// network partition merges again; memberlist itself gives up on a dead
	// member after Timing.PushPullInterval. 0 disables. Default 30s.
	RejoinInterval time.Duration
	// SubscriberBuffer is the capacity of each Subscribe channel. A
	// subscriber that falls this far behind loses changes and is sent
	// ChangeResync. Default 256.
	SubscriberBuffer int
	// LeaveTimeout bounds the graceful leave the Provider does when
	// protoactor shuts down gracefully. Default 5s.
	LeaveTimeout time.Duration
	// Logger receives this package's logs and memberlist's (translated to
	// levels). Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults documented on Config; the caller sets
// Meta.Name and Meta.Cluster.
func DefaultConfig() Config {
	return Config{
		Meta:             Meta{Roles: append([]Role(nil), AllRoles...)},
		BindAddr:         "0.0.0.0:7946",
		Timing:           LANTiming(),
		KeepDead:         10 * time.Minute,
		RejoinInterval:   30 * time.Second,
		JoinRetry:        20 * time.Second,
		SubscriberBuffer: 256,
		LeaveTimeout:     5 * time.Second,
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if err := c.Meta.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("meta: %w", err))
	}
	if _, _, err := bindHostPort(c.BindAddr); err != nil {
		errs = append(errs, err)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := advertiseHostPort(c.AdvertiseAddr); err != nil {
			errs = append(errs, err)
		}
	}
	for _, seed := range c.Join {
		if _, _, err := splitHostPort(seed); err != nil {
			errs = append(errs, fmt.Errorf("join: %w", err))
		}
	}
	switch len(c.GossipKey) {
	case 0, 16, 24, 32:
	default:
		errs = append(errs, fmt.Errorf("gossip key must be 16, 24 or 32 bytes (AES-128/192/256), got %d", len(c.GossipKey)))
	}
	if err := c.Timing.validate(); err != nil {
		errs = append(errs, fmt.Errorf("timing: %w", err))
	}
	if c.KeepDead < 0 {
		errs = append(errs, fmt.Errorf("keep dead must not be negative, got %s", c.KeepDead))
	}
	if c.RejoinInterval < 0 {
		errs = append(errs, fmt.Errorf("rejoin interval must not be negative, got %s", c.RejoinInterval))
	}
	if c.JoinRetry < 0 {
		errs = append(errs, fmt.Errorf("join retry must not be negative, got %s", c.JoinRetry))
	}
	if c.SubscriberBuffer < 1 {
		errs = append(errs, fmt.Errorf("subscriber buffer must be at least 1, got %d", c.SubscriberBuffer))
	}
	if c.LeaveTimeout <= 0 {
		errs = append(errs, fmt.Errorf("leave timeout must be positive, got %s", c.LeaveTimeout))
	}
	return errors.Join(errs...)
}

// bindHostPort splits BindAddr; memberlist binds only to IP literals.
func bindHostPort(addr string) (string, int, error) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("bind addr: %w", err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("bind addr %q: host must be an IP address", addr)
	}
	return host, port, nil
}

// advertiseHostPort accepts "ip" or "ip:port"; port 0 means the bound port.
func advertiseHostPort(addr string) (string, int, error) {
	host, port := addr, 0
	if h, p, err := net.SplitHostPort(addr); err == nil {
		var perr error
		if host, port, perr = splitHostPort(net.JoinHostPort(h, p)); perr != nil {
			return "", 0, fmt.Errorf("advertise addr: %w", perr)
		}
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("advertise addr %q: host must be an IP address", addr)
	}
	return host, port, nil
}
