package runtimes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/troupehq/troupe/domain"
)

// builtinFunc is one Go action. It may return failed when ctx ends; Run
// turns that into canceled or timeout.
type builtinFunc func(ctx context.Context, params map[string]any) Outcome

// builtin runs actions implemented in Go, in the agent's process: no spawn,
// so they cost microseconds.
type builtin struct {
	client  *http.Client
	maxBody int
	actions map[string]builtinFunc
	names   []string
	// httpTimeout bounds a core.http request that gives no timeout: the 30
	// seconds its description promises; tests shorten it.
	httpTimeout time.Duration
}

// defaultHTTPTimeout is what core.http's description in the core pack says
// a request without a timeout parameter waits.
const defaultHTTPTimeout = 30 * time.Second

var _ Runtime = (*builtin)(nil)

// NewBuiltin builds the builtin runtime. Its actions:
//   - core.noop succeeds at once with Output {}.
//   - core.sleep waits `seconds` (a number), honouring cancel and timeout;
//     Output {}.
//   - core.http sends `method` (default GET) to `url` with `headers` (an
//     object of strings) and `body` (a string as is; anything else as JSON,
//     with Content-Type application/json unless set), bounded by `timeout`
//     seconds: 30 when absent, none of its own when 0; the action's timeout
//     applies on top. Output {"status": code, "headers": {name: values
//     joined by ", "}, "body": the response as JSON when its Content-Type is
//     JSON and it parses, else as a string}. It succeeds on 2xx only.
func NewBuiltin(cfg Config) (Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new builtin runtime: %w", err)
	}
	b := &builtin{client: cfg.HTTPClient, maxBody: cfg.MaxOutput, httpTimeout: defaultHTTPTimeout}
	b.actions = map[string]builtinFunc{
		"core.noop":  noop,
		"core.sleep": sleep,
		"core.http":  b.http,
	}
	b.names = slices.Sorted(maps.Keys(b.actions))
	return b, nil
}

func (b *builtin) Name() string { return "builtin" }

func (b *builtin) Run(ctx context.Context, req Request) Outcome {
	fn, ok := b.actions[req.Action]
	if !ok {
		return failed(domain.Result{}, "%s", notFound("builtin action", req.Action, b.names))
	}
	runCtx, cancel := withTimeout(ctx, req.Timeout)
	defer cancel()
	out := fn(runCtx, req.Parameters)
	if out.Status != domain.StatusSucceeded {
		if o, ok := interrupted(ctx, runCtx, req.Timeout, out.Result); ok {
			return o
		}
	}
	return out
}

var emptyObject = json.RawMessage(`{}`)

func noop(context.Context, map[string]any) Outcome {
	return Outcome{Status: domain.StatusSucceeded, Result: domain.Result{Output: emptyObject}}
}

func sleep(ctx context.Context, params map[string]any) Outcome {
	d, err := seconds("core.sleep", params, "seconds", true)
	if err != nil {
		return failed(domain.Result{}, "%v", err)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return noop(ctx, params)
	case <-ctx.Done():
		return failed(domain.Result{}, "sleep interrupted: %v", ctx.Err())
	}
}

func (b *builtin) http(ctx context.Context, params map[string]any) Outcome {
	const action = "core.http"
	bad := func(param, reason string) Outcome {
		return failed(domain.Result{}, "%v", &domain.ParamError{Action: action, Param: param, Reason: reason})
	}
	method := "GET"
	if v, ok := params["method"]; ok {
		if method, _ = v.(string); method == "" {
			return bad("method", "must be a non-empty string")
		}
		method = strings.ToUpper(method)
	}
	raw, _ := params["url"].(string)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("url", "must be an absolute http or https URL") // not echoed: it may carry a token
	}
	var body io.Reader
	isJSON := false
	switch v := params["body"].(type) {
	case nil:
	case string:
		body = strings.NewReader(v)
	default:
		enc, err := json.Marshal(v)
		if err != nil {
			return bad("body", "cannot be encoded as JSON: "+err.Error())
		}
		body, isJSON = bytes.NewReader(enc), true
	}
	timeout := b.httpTimeout // null counts as absent, as in parameter validation
	if params["timeout"] != nil {
		if timeout, err = seconds(action, params, "timeout", false); err != nil {
			return failed(domain.Result{}, "%v", err)
		}
	}
	reqCtx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, method, u.String(), body)
	if err != nil {
		return bad("method", err.Error())
	}
	if err := setHeaders(req.Header, params["headers"]); err != nil {
		return bad("headers", err.Error())
	}
	if isJSON && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}

	// Errors name the URL without userinfo and query, which may carry
	// credentials; net/http's own errors would include them.
	what := method + " " + (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	transportErr := func(err error) Outcome {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if reqCtx.Err() != nil && ctx.Err() == nil {
			return failed(domain.Result{}, "%s: request timed out after %s", what, timeout)
		}
		return failed(domain.Result{}, "%s: %v", what, err)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return transportErr(err)
	}
	defer resp.Body.Close()
	got := &capture{max: b.maxBody}
	if _, err := io.Copy(got, resp.Body); err != nil {
		return transportErr(fmt.Errorf("read response: %w", err))
	}

	out := struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    any               `json:"body"`
	}{Status: resp.StatusCode, Headers: make(map[string]string, len(resp.Header)), Body: got.String()}
	for k, vs := range resp.Header {
		out.Headers[k] = strings.Join(vs, ", ")
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" || strings.HasSuffix(mt, "+json") {
		if doc := got.JSON(); doc != nil {
			out.Body = doc
		}
	}
	enc, err := json.Marshal(out)
	if err != nil {
		return failed(domain.Result{}, "%s: encode output: %v", what, err)
	}
	res := domain.Result{Output: enc}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return failed(res, "%s", strings.TrimSpace(fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))))
	}
	return Outcome{Status: domain.StatusSucceeded, Result: res}
}

// setHeaders copies an object of strings into h.
func setHeaders(h http.Header, v any) error {
	switch v := v.(type) {
	case nil:
	case map[string]string:
		for k, s := range v {
			h.Set(k, s)
		}
	case map[string]any:
		for k, x := range v {
			s, ok := x.(string)
			if !ok {
				return fmt.Errorf("value of %q must be a string", k)
			}
			h.Set(k, s)
		}
	default:
		return errors.New("must be an object of strings")
	}
	return nil
}

// maxSeconds keeps a duration in seconds within time.Duration.
const maxSeconds = float64(math.MaxInt64 / int64(time.Second))

// seconds reads a parameter given in seconds; absent is 0 unless required.
func seconds(action string, params map[string]any, name string, required bool) (time.Duration, error) {
	v, ok := params[name]
	if !ok {
		if required {
			return 0, &domain.ParamError{Action: action, Param: name, Reason: "required"}
		}
		return 0, nil
	}
	f, ok := number(v)
	if !ok || math.IsNaN(f) || f < 0 || f > maxSeconds {
		return 0, &domain.ParamError{Action: action, Param: name, Reason: "must be a non-negative number of seconds"}
	}
	return time.Duration(f * float64(time.Second)), nil
}

func number(v any) (float64, bool) {
	if n, ok := v.(json.Number); ok {
		f, err := n.Float64()
		return f, err == nil
	}
	switch rv := reflect.ValueOf(v); {
	case rv.CanInt():
		return float64(rv.Int()), true
	case rv.CanUint():
		return float64(rv.Uint()), true
	case rv.CanFloat():
		return rv.Float(), true
	}
	return 0, false
}
