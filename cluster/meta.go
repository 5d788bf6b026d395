package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/memberlist"
)

// MetaMaxSize is memberlist's limit on a node's gossiped metadata, in bytes.
const MetaMaxSize = memberlist.MetaMaxSize

// Role is a duty a node takes on. A node may hold any subset of AllRoles.
type Role string

// The roles. A node without RoleWorker runs no actions; one without
// RoleSensor hosts no sensor instances; and so on.
const (
	RoleSensor Role = "sensor"
	RoleRule   Role = "rule"
	RoleWorker Role = "worker"
	RoleAPI    Role = "api"
)

// AllRoles lists every role, in a stable order; it is the default role set.
var AllRoles = []Role{RoleSensor, RoleRule, RoleWorker, RoleAPI}

func (r Role) String() string { return string(r) }

// Valid reports whether r is one of AllRoles.
func (r Role) Valid() bool { return slices.Contains(AllRoles, r) }

// ParseRole returns the role named s, or an error that lists the known ones.
func ParseRole(s string) (Role, error) {
	r := Role(strings.TrimSpace(s))
	if !r.Valid() {
		return "", fmt.Errorf("unknown role %q (known roles: %s)", s, joinRoles(AllRoles))
	}
	return r, nil
}

func joinRoles(rs []Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// Meta is what a node tells the others about itself. It is gossiped as JSON
// and must encode to at most MetaMaxSize bytes; Validate checks that.
type Meta struct {
	// Name is the node's name, stable across restarts; storage and metrics
	// are keyed by it, and it is the memberlist node name. Required.
	Name string `json:"name"`
	// Cluster is the cluster's name; nodes of another cluster are refused.
	// Required.
	Cluster string `json:"cluster"`
	// RemoteAddr is the protoactor remote's host:port. The Provider sets it
	// from the actor system when protoactor starts.
	RemoteAddr string `json:"remote,omitempty"`
	// APIAddr is the HTTP API's host:port, empty when the node serves none.
	APIAddr string `json:"api,omitempty"`
	// Roles are the node's roles.
	Roles []Role `json:"roles,omitempty"`
	// Runtimes are the names of the runtimes the node can run actions in.
	Runtimes []string `json:"runtimes,omitempty"`
	// Slots is how many actions the node runs at once.
	Slots int `json:"slots,omitempty"`
	// SlotsUsed is how many of them were busy when last gossiped; placement
	// prefers less loaded members, and `troupe members` shows it.
	SlotsUsed int `json:"used,omitempty"`
	// Started is the start of this process, in Unix nanoseconds. It tells
	// two lives of one node name apart: whatever the old process held
	// (running actions, in-memory state) is gone when it changes. New sets
	// it when zero.
	Started int64 `json:"started"`
	// ActorID is the protoactor member ID of this process (new at every
	// start, since protoactor blocks a departed ID forever). Set by the
	// Provider.
	ActorID string `json:"actor,omitempty"`
	// Kinds are the protoactor grain kinds this node hosts, sorted. Set by
	// the Provider; empty for a protoactor client.
	Kinds []string `json:"kinds,omitempty"`
	// Packs digests the node's installed pack records; members whose
	// digests differ exchange packs until they agree.
	Packs string `json:"packs,omitempty"`
}

// HasRole reports whether the node holds role r.
func (m Meta) HasRole(r Role) bool { return slices.Contains(m.Roles, r) }

// HasRuntime reports whether the node advertises the named runtime.
func (m Meta) HasRuntime(name string) bool { return slices.Contains(m.Runtimes, name) }

// Clone returns a copy of m that shares no slices with it.
func (m Meta) Clone() Meta {
	m.Roles = slices.Clone(m.Roles)
	m.Runtimes = slices.Clone(m.Runtimes)
	m.Kinds = slices.Clone(m.Kinds)
	return m
}

func (m Meta) equal(o Meta) bool {
	return m.Name == o.Name && m.Cluster == o.Cluster && m.RemoteAddr == o.RemoteAddr &&
		m.APIAddr == o.APIAddr && slices.Equal(m.Roles, o.Roles) &&
		slices.Equal(m.Runtimes, o.Runtimes) && m.Slots == o.Slots && m.SlotsUsed == o.SlotsUsed &&
		m.Started == o.Started && m.ActorID == o.ActorID && slices.Equal(m.Kinds, o.Kinds) && m.Packs == o.Packs
}

// Encode returns m as gossiped.
func (m Meta) Encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode metadata of node %q: %w", m.Name, err)
	}
	return b, nil
}

// DecodeMeta parses metadata gossiped by a peer. Unknown fields are ignored,
// so a newer node's metadata still decodes.
func DecodeMeta(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{}, errors.New("decode node metadata: empty (not a troupe node?)")
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("decode node metadata: %w", err)
	}
	return m, nil
}

// Validate reports every problem with m at once, including an encoding over
// MetaMaxSize. A zero Started is measured as a full-width timestamp, since New
// fills it in before the metadata is gossiped.
func (m Meta) Validate() error {
	var errs []error
	if err := validName(m.Name); err != nil {
		errs = append(errs, fmt.Errorf("node name: %w", err))
	}
	if err := validName(m.Cluster); err != nil {
		errs = append(errs, fmt.Errorf("cluster name: %w", err))
	}
	for _, a := range []struct{ field, addr string }{{"remote addr", m.RemoteAddr}, {"api addr", m.APIAddr}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := splitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.field, err))
		}
	}
	seen := map[Role]bool{}
	for _, r := range m.Roles {
		if !r.Valid() {
			errs = append(errs, fmt.Errorf("unknown role %q (known roles: %s)", r, joinRoles(AllRoles)))
		} else if seen[r] {
			errs = append(errs, fmt.Errorf("role %q listed twice", r))
		}
		seen[r] = true
	}
	for _, rt := range m.Runtimes {
		if rt == "" || strings.ContainsFunc(rt, unicode.IsSpace) {
			errs = append(errs, fmt.Errorf("runtime name %q: must be non-empty without spaces", rt))
		}
	}
	if m.Slots < 0 {
		errs = append(errs, fmt.Errorf("slots must not be negative, got %d", m.Slots))
	}
	if m.Started < 0 {
		errs = append(errs, fmt.Errorf("started must not be negative, got %d", m.Started))
	}
	if err := m.checkSize(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkSize names the largest fields when m is too big, since those are the
// ones worth shortening.
func (m Meta) checkSize() error {
	sized := m
	if sized.Started == 0 {
		sized.Started = 1 << 62 // as wide as a real Unix-nanosecond timestamp
	}
	b, err := sized.Encode()
	if err != nil {
		return err
	}
	if len(b) <= MetaMaxSize {
		return nil
	}
	type field struct {
		name string
		size int
	}
	size := func(v any) int { b, _ := json.Marshal(v); return len(b) }
	fields := []field{
		{"name", len(m.Name)}, {"cluster", len(m.Cluster)}, {"remote addr", len(m.RemoteAddr)},
		{"api addr", len(m.APIAddr)}, {"roles", size(m.Roles)}, {"runtimes", size(m.Runtimes)},
		{"actor id", len(m.ActorID)}, {"kinds", size(m.Kinds)},
	}
	slices.SortFunc(fields, func(a, b field) int { return b.size - a.size })
	var big []string
	for _, f := range fields[:3] {
		big = append(big, fmt.Sprintf("%s %d bytes", f.name, f.size))
	}
	return fmt.Errorf("metadata of node %q encodes to %d bytes, over memberlist's limit of %d (largest: %s)",
		m.Name, len(b), MetaMaxSize, strings.Join(big, ", "))
}

func validName(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > 128:
		return fmt.Errorf("%q is longer than 128 bytes", s)
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' }):
		return fmt.Errorf("%q contains a space, control character or slash", s)
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: port %q is not a number in 0-65535", addr, p)
	}
	return host, port, nil
}

// Status is a member's state as this node sees it.
type Status string

// The statuses. Suspect is memberlist's "failed a probe, not yet declared
// dead": such a member usually comes back or is dead within a few seconds.
// Left is a graceful departure (Leave); dead is a failure.
const (
	StatusAlive   Status = "alive"
	StatusSuspect Status = "suspect"
	StatusDead    Status = "dead"
	StatusLeft    Status = "left"
)

func (s Status) String() string { return string(s) }

// Live reports whether the member still belongs to the cluster: alive or
// suspect. Ownership and protoactor's topology follow Live, so that a false
// suspicion does not move grains or cost a member its protoactor ID.
func (s Status) Live() bool { return s == StatusAlive || s == StatusSuspect }

// Member is one node as this node sees it.
type Member struct {
	Meta
	// GossipAddr is the member's memberlist host:port.
	GossipAddr string
	// Status is the member's state.
	Status Status
	// Since is when this node last saw Status change.
	Since time.Time
	// Self is true for this node.
	Self bool
}
