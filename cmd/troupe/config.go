package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/spf13/pflag"

	"github.com/troupehq/troupe/cluster"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/internal/bytesize"
	"github.com/troupehq/troupe/runtimes"
	"github.com/troupehq/troupe/storage"
)

// agentConfig is every setting of `troupe agent`. Each field's yaml tag is
// its name everywhere: the config-file key, the flag (`_` → `-`) and the
// environment variable (TROUPE_ + upper case), so the four sources cannot
// drift apart. Precedence: defaults, file, environment, flags.
type agentConfig struct {
	NodeName  string        `yaml:"node_name" help:"stable name of this node; keys its storage and metrics (default: host name)"`
	Cluster   string        `yaml:"cluster_name" help:"name of the cluster; nodes of another cluster are refused"`
	Gossip    string        `yaml:"gossip_addr" help:"gossip (memberlist) address, ip:port; port 0 picks a free one"`
	Remote    string        `yaml:"remote_addr" help:"actor remote (gRPC) address, ip:port; port 0 picks a free one"`
	Join      []string      `yaml:"join" help:"comma-separated gossip addresses of members to join (this node's own is skipped); empty starts a new cluster"`
	JoinRetry time.Duration `yaml:"join_retry" help:"how often a node none of whose join seeds answered tries them again, after a first minute of tries every 2s; 0 fails the start instead"`
	GossipKey string        `yaml:"gossip_key" help:"base64 AES key (16, 24 or 32 bytes) encrypting gossip; the same on every node"`
	Roles     []string      `yaml:"roles" help:"comma-separated roles: sensor, rule, worker, api"`
	Placement time.Duration `yaml:"placement_timeout" help:"how long an execution waits for a member that runs its runtime before it fails"`
	DataDir   string        `yaml:"data_dir" help:"directory of this node's Pebble store"`
	MinFree   byteSize      `yaml:"min_free_disk" help:"free space the data dir's filesystem must keep (e.g. 512MiB, 2GiB); below it the node is not ready and refuses webhooks and runs"`
	HTTPAddr  string        `yaml:"http_addr" help:"address of the HTTP API, host:port"`
	Packs     []string      `yaml:"packs" help:"comma-separated pack directories, each a pack or a folder of packs"`
	Runtimes  []string      `yaml:"runtimes" help:"runtimes this node offers (default: those this machine can run)"`
	Slots     int           `yaml:"slots" help:"executions this node runs at once; 8 × CPUs when not set"`
	MaxFlight int           `yaml:"max_in_flight" help:"unfinished executions this node holds before it refuses webhooks and runs with 503 overloaded"`
	MaxBody   int64         `yaml:"max_body" help:"largest accepted request body, in bytes"`
	LogLevel  string        `yaml:"log_level" help:"debug, info, warn or error"`
	LogFormat string        `yaml:"log_format" help:"text or json"`
	Python    string        `yaml:"python" help:"interpreter of the python runtime, resolved once at start to its real binary"`
	MaxOutput int           `yaml:"max_output" help:"bytes of stdout and of stderr kept per execution; the rest is dropped and marked"`
	ActionEnv []string      `yaml:"action_env" help:"names of agent environment variables passed to actions and sensors, besides PATH, HOME, LANG, TMPDIR, USER"`
	Shutdown  time.Duration `yaml:"shutdown_timeout" help:"how long SIGTERM waits for running actions to be stopped and recorded"`
	PprofAddr string        `yaml:"pprof_addr" help:"address serving Go's /debug/pprof profiles, host:port; empty serves none"`
}

func defaultAgentConfig(dev bool) agentConfig {
	host, _ := os.Hostname()
	c := agentConfig{
		NodeName:  host,
		Cluster:   "troupe",
		Gossip:    "127.0.0.1:0",
		Remote:    "127.0.0.1:0",
		Roles:     []string{"sensor", "rule", "worker", "api"},
		Placement: time.Minute,
		JoinRetry: 20 * time.Second,
		DataDir:   "/var/lib/troupe",
		HTTPAddr:  "127.0.0.1:8080",
		// An action process spends most of its start waiting on fork, exec and
		// the loader, so CPUs stay busy only with several per CPU: webhook-shell
		// ran 814/s with 4 slots on 2 CPUs and 985/s with 16 (docs/performance.md).
		Slots: 8 * runtime.NumCPU(),
		// A backlog beyond what keeps the node busy only adds latency: past its
		// rate an open loop got p50 ~180 ms with 1024, ~80 ms with 512 and
		// ~45 ms with 256 at the same throughput (docs/performance.md); 512
		// still takes the bench's closed-loop fanout (64 × 8) unrefused.
		MaxFlight: 512,
		MaxBody:   1 << 20,
		LogLevel:  "info",
		LogFormat: "json",
		Shutdown:  15 * time.Second,
		MinFree:   storage.DefaultMinFreeDisk,
		Python:    "python3",
		MaxOutput: 1 << 20,
	}
	if dev {
		c.DataDir, c.Packs, c.LogFormat = "./troupe-data", []string{"packs/examples"}, "text"
	}
	return c
}

// bindFlags registers one string flag per config field; values are parsed
// by the same code that parses the file's and the environment's.
func bindFlags(fs *pflag.FlagSet) {
	def := reflect.ValueOf(defaultAgentConfig(false))
	t := def.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		help := f.Tag.Get("help")
		if v := def.Field(i).Interface(); !def.Field(i).IsZero() && f.Name != "NodeName" {
			if list, ok := v.([]string); ok {
				v = strings.Join(list, ",")
			}
			help += fmt.Sprintf(" (default %v)", v)
		}
		fs.String(flagName(f), "", help+" [env "+envName(f)+"]")
	}
}

// runtimes is the runtime configuration these settings describe, shared by
// actions and script sensors.
func (c agentConfig) runtimes() runtimes.Config {
	rc := runtimes.DefaultConfig()
	rc.Python, rc.MaxOutput, rc.RunDir = c.Python, c.MaxOutput, c.runDir()
	for _, name := range c.ActionEnv {
		if v, ok := os.LookupEnv(name); ok {
			rc.Env = append(rc.Env, name+"="+v)
		}
	}
	return rc
}

func flagName(f reflect.StructField) string {
	return strings.ReplaceAll(f.Tag.Get("yaml"), "_", "-")
}

func envName(f reflect.StructField) string {
	return "TROUPE_" + strings.ToUpper(f.Tag.Get("yaml"))
}

// loadAgentConfig layers file, environment and flags over the defaults.
func loadAgentConfig(fs *pflag.FlagSet, dev bool, file string) (agentConfig, error) {
	cfg := defaultAgentConfig(dev)
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		if err := yaml.UnmarshalWithOptions(data, &cfg, yaml.DisallowUnknownField()); err != nil {
			return cfg, fmt.Errorf("config %s: %s%s", file, yaml.FormatError(err, false, true), keyHint(err))
		}
	}
	v := reflect.ValueOf(&cfg).Elem()
	var errs []error
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if s, ok := os.LookupEnv(envName(f)); ok {
			if err := setField(v.Field(i), s); err != nil {
				errs = append(errs, fmt.Errorf("environment %s: %w", envName(f), err))
			}
		}
		if fl := fs.Lookup(flagName(f)); fl != nil && fl.Changed {
			if err := setField(v.Field(i), fl.Value.String()); err != nil {
				errs = append(errs, fmt.Errorf("flag --%s: %w", flagName(f), err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	return cfg, cfg.validate()
}

// keyHint suggests the setting an unknown config key was probably meant to be.
func keyHint(err error) string {
	var unknown *yaml.UnknownFieldError
	if !errors.As(err, &unknown) {
		return ""
	}
	key := strings.TrimSuffix(strings.TrimPrefix(unknown.Message, `unknown field "`), `"`)
	var keys []string
	t := reflect.TypeFor[agentConfig]()
	for i := range t.NumField() {
		keys = append(keys, t.Field(i).Tag.Get("yaml"))
	}
	if s := domain.Suggest(key, keys); s != "" {
		return fmt.Sprintf("(did you mean %s?)", s)
	}
	return fmt.Sprintf("(known keys: %s)", strings.Join(keys, ", "))
}

func setField(v reflect.Value, s string) error {
	switch v.Interface().(type) {
	case string:
		v.SetString(s)
	case []string:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 15s", s)
		}
		v.SetInt(int64(d))
	case byteSize:
		n, err := bytesize.Parse(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(n))
	case int, int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		v.SetInt(n)
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

func (c agentConfig) validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("node_name: must not be empty"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty"))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("http_addr: %q is not host:port: %w", c.HTTPAddr, err))
	}
	if c.PprofAddr != "" {
		if _, _, err := net.SplitHostPort(c.PprofAddr); err != nil {
			errs = append(errs, fmt.Errorf("pprof_addr: %q is not host:port: %w", c.PprofAddr, err))
		}
	}
	if c.Slots < 1 {
		errs = append(errs, fmt.Errorf("slots: %d, must be at least 1", c.Slots))
	}
	if c.MaxFlight < 1 {
		errs = append(errs, fmt.Errorf("max_in_flight: %d, must be at least 1", c.MaxFlight))
	}
	if c.MaxBody < 1 {
		errs = append(errs, fmt.Errorf("max_body: %d, must be at least 1", c.MaxBody))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log_format: %q, want text or json", c.LogFormat))
	}
	if _, err := c.gossipKey(); err != nil {
		errs = append(errs, err)
	}
	for _, r := range c.Roles {
		if _, err := cluster.ParseRole(r); err != nil {
			errs = append(errs, fmt.Errorf("roles: %w", err))
		}
	}
	if c.JoinRetry < 0 {
		errs = append(errs, fmt.Errorf("join_retry: %s, must not be negative", c.JoinRetry))
	}
	if c.Placement <= 0 {
		errs = append(errs, fmt.Errorf("placement_timeout: %s, must be positive", c.Placement))
	}
	if c.MaxOutput < 1024 {
		errs = append(errs, fmt.Errorf("max_output: %d, must be at least 1024", c.MaxOutput))
	}
	if c.Shutdown <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout: %s, must be positive", c.Shutdown))
	}
	if c.MinFree < 1 {
		errs = append(errs, fmt.Errorf("min_free_disk: %s, must be at least 1 byte", c.MinFree))
	}
	return errors.Join(errs...)
}

// runDir names this agent's action processes, for runtimes.Reap.
func (c agentConfig) runDir() string { return filepath.Join(c.DataDir, "run") }

func (c agentConfig) gossipKey() ([]byte, error) {
	if c.GossipKey == "" {
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(c.GossipKey)
	if err != nil {
		return nil, fmt.Errorf("gossip_key: not base64: %w", err)
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("gossip_key: %d bytes, want 16, 24 or 32 (e.g. from `head -c 32 /dev/urandom | base64`)", n)
	}
	return key, nil
}

func (c agentConfig) hasRole(r cluster.Role) bool {
	return slices.Contains(c.Roles, string(r))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log_level: %q, want debug, info, warn or error", s)
	}
	return l, nil
}

func (c agentConfig) level() slog.Level {
	level, _ := parseLevel(c.LogLevel)
	return level
}

// atLeast drops records below a level; it quiets a chatty library's logger
// without touching the rest.
type atLeast struct {
	slog.Handler
	min slog.Level
}

func (h atLeast) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h atLeast) WithAttrs(as []slog.Attr) slog.Handler {
	return atLeast{h.Handler.WithAttrs(as), h.min}
}
func (h atLeast) WithGroup(g string) slog.Handler { return atLeast{h.Handler.WithGroup(g), h.min} }

func (c agentConfig) logger() *slog.Logger {
	level := c.level()
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(os.Stderr, opts)
	if c.LogFormat == "text" {
		h = slog.NewTextHandler(os.Stderr, opts)
	}
	return slog.New(h).With("node", c.NodeName)
}
