package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/spf13/pflag"

	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/runtimes"
)

// agentConfig is every setting of `troupe agent`. Each field's yaml tag is
// its name everywhere: the config-file key, the flag (`_` → `-`) and the
// environment variable (TROUPE_ + upper case), so the four sources cannot
// drift apart. Precedence: defaults, file, environment, flags.
type agentConfig struct {
	NodeName  string        `yaml:"node_name" help:"stable name of this node; keys its storage and metrics (default: host name)"`
	DataDir   string        `yaml:"data_dir" help:"directory of this node's Pebble store"`
	HTTPAddr  string        `yaml:"http_addr" help:"address of the HTTP API, host:port"`
	Packs     []string      `yaml:"packs" help:"comma-separated pack directories, each a pack or a folder of packs"`
	Runtimes  []string      `yaml:"runtimes" help:"runtimes this node offers (default: those this machine can run)"`
	Slots     int           `yaml:"slots" help:"executions this node runs at once; 2 × CPUs when not set"`
	MaxBody   int64         `yaml:"max_body" help:"largest accepted request body, in bytes"`
	LogLevel  string        `yaml:"log_level" help:"debug, info, warn or error"`
	LogFormat string        `yaml:"log_format" help:"text or json"`
	Python    string        `yaml:"python" help:"interpreter of the python runtime, resolved once at start to its real binary"`
	MaxOutput int           `yaml:"max_output" help:"bytes of stdout and of stderr kept per execution; the rest is dropped and marked"`
	ActionEnv []string      `yaml:"action_env" help:"names of agent environment variables passed to actions and sensors, besides PATH, HOME, LANG, TMPDIR, USER"`
	Shutdown  time.Duration `yaml:"shutdown_timeout" help:"how long SIGTERM waits for running actions to be stopped and recorded"`
}

func defaultAgentConfig(dev bool) agentConfig {
	host, _ := os.Hostname()
	c := agentConfig{
		NodeName:  host,
		DataDir:   "/var/lib/troupe",
		HTTPAddr:  "127.0.0.1:8080",
		Slots:     2 * runtime.NumCPU(),
		MaxBody:   1 << 20,
		LogLevel:  "info",
		LogFormat: "json",
		Shutdown:  15 * time.Second,
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
	rc.Python, rc.MaxOutput = c.Python, c.MaxOutput
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
	if c.Slots < 1 {
		errs = append(errs, fmt.Errorf("slots: %d, must be at least 1", c.Slots))
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
	if c.MaxOutput < 1024 {
		errs = append(errs, fmt.Errorf("max_output: %d, must be at least 1024", c.MaxOutput))
	}
	if c.Shutdown <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout: %s, must be positive", c.Shutdown))
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log_level: %q, want debug, info, warn or error", s)
	}
	return l, nil
}

func (c agentConfig) logger() *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(os.Stderr, opts)
	if c.LogFormat == "text" {
		h = slog.NewTextHandler(os.Stderr, opts)
	}
	return slog.New(h).With("node", c.NodeName)
}
