package runtimes

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/troupehq/troupe/domain"
)

// Config is shared by every runtime.
type Config struct {
	// MaxOutput is how many bytes of each of stdout and stderr (and of an
	// HTTP response body) are kept. Past it the rest is read and discarded,
	// so the action never blocks on a full pipe, and the kept text ends with
	// "\n[troupe: output truncated, N bytes dropped]". Default 1 MiB.
	MaxOutput int
	// Shell is the shell runtime's interpreter: an absolute path, or a name
	// looked up in PATH once, at construction. It runs command lines and
	// scripts without a #! line; a script with one is executed itself.
	// Default "/bin/sh".
	Shell string
	// Python is the interpreter of the python and python-warm runtimes, a
	// name or path. At construction it is run once to ask for
	// sys.executable, and that real binary is what actions run under, so a
	// pyenv or asdf shim (hundreds of milliseconds per start) is paid for
	// once. Both runtimes are unavailable if that fails. Default "python3".
	Python string
	// Env is the whole base environment of action processes, as KEY=value
	// entries; each run adds only TROUPE_EXECUTION_ID, TROUPE_ACTION and
	// TROUPE_PARAM_*. Default: PATH, HOME, LANG, TMPDIR and USER, copied from
	// the agent's environment where set.
	Env []string
	// HTTPClient makes the requests of the builtin core.http action. Default:
	// a client with dial, TLS-handshake and response-header timeouts, and an
	// overall bound of domain.DefaultTimeout. Required.
	HTTPClient *http.Client
	// RunDir, when set, names this agent's runs: every action process gets
	// it in TROUPE_RUN_DIR, so that after the agent is killed a restart can
	// find the process groups left behind and stop them (see Reap): a process
	// killed with SIGKILL cannot stop its own grandchildren. It is a path in
	// the agent's data dir, which only one agent at a time can use; nothing
	// is written there. Default none.
	RunDir string
}

// defaultEnvKeys are the variables scripts commonly need and that carry no
// agent-specific state.
var defaultEnvKeys = []string{"PATH", "HOME", "LANG", "TMPDIR", "USER"}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	var env []string
	for _, k := range defaultEnvKeys {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	transport.TLSHandshakeTimeout = 10 * time.Second
	transport.ResponseHeaderTimeout = time.Minute
	return Config{
		MaxOutput:  1 << 20,
		Shell:      "/bin/sh",
		Python:     "python3",
		Env:        env,
		HTTPClient: &http.Client{Transport: transport, Timeout: domain.DefaultTimeout},
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxOutput <= 0 {
		errs = append(errs, fmt.Errorf("max output must be positive, got %d", c.MaxOutput))
	}
	if c.Shell == "" {
		errs = append(errs, errors.New("shell is empty"))
	}
	if c.Python == "" {
		errs = append(errs, errors.New("python is empty"))
	}
	for i, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsRune(kv, 0) {
			errs = append(errs, fmt.Errorf("env[%d] is not KEY=value", i))
		}
	}
	if c.HTTPClient == nil {
		errs = append(errs, errors.New("http client is nil"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid runtimes config: %w", err)
	}
	return nil
}
