package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func validMeta() Meta {
	return Meta{
		Name: "n1", Cluster: "prod", RemoteAddr: "127.0.0.1:8090", APIAddr: "127.0.0.1:8080",
		Roles: AllRoles, Runtimes: []string{"shell", "python"}, Slots: 8,
		Started: time.Now().UnixNano(), ActorID: "abcdefghijklmnopqrstuv", Kinds: []string{"prototopic", "sensor"},
	}
}

func TestMetaValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Meta)
		want []string // substrings of the error; none means valid
	}{
		{"valid", func(*Meta) {}, nil},
		{"zero started is filled in later", func(m *Meta) { m.Started = 0 }, nil},
		{"no name", func(m *Meta) { m.Name = "" }, []string{"node name: empty"}},
		{"name with space", func(m *Meta) { m.Name = "n 1" }, []string{`node name: "n 1" contains a space`}},
		{"no cluster", func(m *Meta) { m.Cluster = "" }, []string{"cluster name: empty"}},
		{"bad remote addr", func(m *Meta) { m.RemoteAddr = "nowhere" }, []string{"remote addr", "not host:port"}},
		{"bad api port", func(m *Meta) { m.APIAddr = "127.0.0.1:http" }, []string{"api addr", `port "http"`}},
		{"unknown role", func(m *Meta) { m.Roles = []Role{"wroker"} }, []string{`unknown role "wroker" (known roles: sensor, rule, worker, api)`}},
		{"role twice", func(m *Meta) { m.Roles = []Role{RoleWorker, RoleWorker} }, []string{`role "worker" listed twice`}},
		{"blank runtime", func(m *Meta) { m.Runtimes = []string{""} }, []string{`runtime name ""`}},
		{"negative slots", func(m *Meta) { m.Slots = -1 }, []string{"slots must not be negative"}},
		{
			"over 512 bytes", func(m *Meta) {
				m.Runtimes = nil
				for i := range 60 {
					m.Runtimes = append(m.Runtimes, strings.Repeat("r", 5)+string(rune('a'+i%26)))
				}
			},
			[]string{`metadata of node "n1" encodes to`, "over memberlist's limit of 512", "largest: runtimes"},
		},
		{
			"every problem at once", func(m *Meta) { m.Name, m.Cluster, m.Slots = "", "", -2 },
			[]string{"node name: empty", "cluster name: empty", "slots must not be negative"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validMeta()
			tt.edit(&m)
			wantErrors(t, m.Validate(), tt.want)
		})
	}
}

// A Meta that Validate accepts must be one memberlist accepts: it panics on
// oversize metadata.
func TestMetaSizeMatchesMemberlist(t *testing.T) {
	if memberlist.MetaMaxSize != 512 {
		t.Fatalf("memberlist's metadata limit is %d, the docs say 512", memberlist.MetaMaxSize)
	}
	m := validMeta()
	m.Runtimes = nil
	for {
		b, _ := m.Encode()
		if len(b) > MetaMaxSize {
			break
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("a %d-byte encoding is rejected: %v", len(b), err)
		}
		m.Runtimes = append(m.Runtimes, "x")
	}
	if err := m.Validate(); err == nil {
		b, _ := m.Encode()
		t.Fatalf("a %d-byte encoding is accepted", len(b))
	}
}

func TestMetaRoundTrip(t *testing.T) {
	m := validMeta()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.equal(m) {
		t.Errorf("round trip: %+v, want %+v", got, m)
	}
	if _, err := DecodeMeta(nil); err == nil || !strings.Contains(err.Error(), "not a troupe node") {
		t.Errorf("DecodeMeta(nil): %v", err)
	}
	if _, err := DecodeMeta([]byte(`{"name":"n1","future":1}`)); err != nil {
		t.Errorf("unknown fields must be ignored: %v", err)
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range AllRoles {
		got, err := ParseRole(" " + string(r))
		if err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	if _, err := ParseRole("admin"); err == nil || !strings.Contains(err.Error(), "known roles: sensor, rule, worker, api") {
		t.Errorf("ParseRole(admin): %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.Meta.Name, c.Meta.Cluster = "n1", "prod"
		return c
	}
	tests := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"defaults", func(*Config) {}, nil},
		{"test timing on loopback port 0", func(c *Config) { c.Timing, c.BindAddr = TestTiming(), "127.0.0.1:0" }, nil},
		{"all interfaces", func(c *Config) { c.BindAddr = ":7946" }, nil},
		{"advertise ip only", func(c *Config) { c.AdvertiseAddr = "10.0.0.5" }, nil},
		{"missing name", func(c *Config) { c.Meta.Name = "" }, []string{"meta: node name: empty"}},
		{"bind to a host name", func(c *Config) { c.BindAddr = "localhost:7946" }, []string{`bind addr "localhost:7946": host must be an IP address`}},
		{"bind without port", func(c *Config) { c.BindAddr = "127.0.0.1" }, []string{"bind addr", "not host:port"}},
		{"advertise host name", func(c *Config) { c.AdvertiseAddr = "node1:7946" }, []string{"advertise addr", "IP address"}},
		{"bad seed", func(c *Config) { c.Join = []string{"127.0.0.1"} }, []string{"join:", `"127.0.0.1" is not host:port`}},
		{"short key", func(c *Config) { c.GossipKey = []byte("secret") }, []string{"gossip key must be 16, 24 or 32 bytes", "got 6"}},
		{"probe timeout over interval", func(c *Config) { c.Timing.ProbeTimeout = 2 * time.Second }, []string{"probe timeout 2s must be below probe interval 1s"}},
		{"zero timing", func(c *Config) { c.Timing = Timing{} }, []string{"probe interval must be positive", "suspicion multiplier must be at least 1", "tcp timeout must be positive"}},
		{"no subscriber buffer", func(c *Config) { c.SubscriberBuffer = 0 }, []string{"subscriber buffer must be at least 1"}},
		{"negative keep dead", func(c *Config) { c.KeepDead = -time.Second }, []string{"keep dead must not be negative"}},
		{"negative join retry", func(c *Config) { c.JoinRetry = -time.Second }, []string{"join retry must not be negative"}},
		{"no leave timeout", func(c *Config) { c.LeaveTimeout = 0 }, []string{"leave timeout must be positive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.edit(&c)
			wantErrors(t, c.Validate(), tt.want)
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Meta.Kinds = []string{strings.Repeat("k", 600)}
	if c, err := New(cfg); err == nil {
		_ = c.Shutdown()
		t.Fatal("New accepted 600 bytes of metadata")
	} else if !strings.Contains(err.Error(), "over memberlist's limit of 512") {
		t.Errorf("New: %v", err)
	}
}

// wantErrors checks a Validate result: nil when want is empty, otherwise an
// error mentioning every one of want.
func wantErrors(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("Validate: %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("Validate: nil, want an error containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Validate: %q does not contain %q", err, w)
		}
	}
}
