package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/troupehq/troupe/domain"
)

// Client calls a node's HTTP API. Non-2xx answers come back as *Error.
type Client struct {
	// Addr is the node's base URL, such as http://127.0.0.1:8080.
	Addr string
	// HTTP sends the requests. It should have no overall Timeout, or one
	// above the long polls it is used for; contexts bound each call.
	HTTP *http.Client
	// Local asks the node for its own records only (`?local=true` on reads
	// and re-runs; other writes are never cluster-wide): a read answers from
	// them, a re-run runs only an execution of them. Nodes use it among
	// themselves when they merge a cluster-wide answer or look for a
	// record's owner.
	Local bool
}

// NewClient returns a client of the node at addr; a bare host:port means http.
func NewClient(addr string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{Addr: strings.TrimRight(addr, "/"), HTTP: &http.Client{}}
}

// pollWait is the long-poll Wait asks for per request: short enough for
// proxies' idle timeouts, long enough to cost nothing while actions run.
const pollWait = 30 * time.Second

// Webhook posts body (any JSON value) to webhook name and returns the event ID.
func (c *Client) Webhook(ctx context.Context, name string, body any) (string, error) {
	var out struct {
		Event string `json:"event"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/webhooks/"+url.PathEscape(name), nil, body, &out)
	return out.Event, err
}

// Run creates an execution of action; it does not wait for it to finish.
func (c *Client) Run(ctx context.Context, action string, params map[string]any) (*ExecutionView, error) {
	var out *ExecutionView
	err := c.do(ctx, http.MethodPost, "/api/v1/executions", nil, runRequest{Action: action, Parameters: params}, &out)
	return out, err
}

// Rerun runs execution id's action again with its parameters, params
// overriding them one by one, on the node that owns it; the new execution
// names id as the one it re-runs.
func (c *Client) Rerun(ctx context.Context, id string, params map[string]any) (*ExecutionView, error) {
	var q url.Values
	if c.Local {
		q = url.Values{"local": {"true"}}
	}
	var out *ExecutionView
	err := c.do(ctx, http.MethodPost, "/api/v1/executions/"+url.PathEscape(id)+"/rerun", q, rerunRequest{Parameters: params}, &out)
	return out, err
}

// Execution returns an execution with its history. A positive wait lets the
// node hold the answer until the execution is terminal, at most wait (≤ MaxWait).
func (c *Client) Execution(ctx context.Context, id string, wait time.Duration) (*ExecutionView, error) {
	var q url.Values
	if wait > 0 {
		q = url.Values{"wait": {wait.String()}}
	}
	return fetch[*ExecutionView](ctx, c, "/api/v1/executions/"+url.PathEscape(id), q)
}

// Wait long-polls execution id until it is terminal. When ctx ends first it
// returns the last record seen (nil if none) with ctx's error.
func (c *Client) Wait(ctx context.Context, id string) (*ExecutionView, error) {
	var last *ExecutionView
	for {
		e, err := c.Execution(ctx, id, pollWait)
		if err != nil {
			return last, err
		}
		if last = e; e.Status.Terminal() {
			return e, nil
		}
	}
}

// WaitStatus is Wait for callers that need only the terminal status; it
// decodes nothing else of the answers. Bench's closed loop uses it: its
// client shares the cores with the node it measures.
func (c *Client) WaitStatus(ctx context.Context, id string) (domain.Status, error) {
	type status struct {
		Status domain.Status `json:"status"`
	}
	q := url.Values{"wait": {pollWait.String()}}
	for {
		s, err := fetch[status](ctx, c, "/api/v1/executions/"+url.PathEscape(id), q)
		if err != nil || s.Status.Terminal() {
			return s.Status, err
		}
	}
}

func (c *Client) Executions(ctx context.Context, q ListQuery) (Page[*ExecutionView], error) {
	return fetch[Page[*ExecutionView]](ctx, c, "/api/v1/executions", q.values())
}

func (c *Client) Event(ctx context.Context, id string) (*domain.Event, error) {
	return fetch[*domain.Event](ctx, c, "/api/v1/events/"+url.PathEscape(id), nil)
}

func (c *Client) Events(ctx context.Context, q ListQuery) (Page[*domain.Event], error) {
	return fetch[Page[*domain.Event]](ctx, c, "/api/v1/events", q.values())
}

func (c *Client) Enforcement(ctx context.Context, id string) (*domain.Enforcement, error) {
	return fetch[*domain.Enforcement](ctx, c, "/api/v1/enforcements/"+url.PathEscape(id), nil)
}

func (c *Client) Enforcements(ctx context.Context, q ListQuery) (Page[*domain.Enforcement], error) {
	return fetch[Page[*domain.Enforcement]](ctx, c, "/api/v1/enforcements", q.values())
}

func (c *Client) Rule(ctx context.Context, ref string) (*domain.Rule, error) {
	return fetch[*domain.Rule](ctx, c, "/api/v1/rules/"+url.PathEscape(ref), nil)
}

func (c *Client) Rules(ctx context.Context, q ListQuery) (Page[*domain.Rule], error) {
	return fetch[Page[*domain.Rule]](ctx, c, "/api/v1/rules", q.values())
}

func (c *Client) Action(ctx context.Context, ref string) (*domain.Action, error) {
	return fetch[*domain.Action](ctx, c, "/api/v1/actions/"+url.PathEscape(ref), nil)
}

func (c *Client) Actions(ctx context.Context, q ListQuery) (Page[*domain.Action], error) {
	return fetch[Page[*domain.Action]](ctx, c, "/api/v1/actions", q.values())
}

func (c *Client) Trigger(ctx context.Context, ref string) (*domain.Trigger, error) {
	return fetch[*domain.Trigger](ctx, c, "/api/v1/triggers/"+url.PathEscape(ref), nil)
}

func (c *Client) Triggers(ctx context.Context, q ListQuery) (Page[*domain.Trigger], error) {
	return fetch[Page[*domain.Trigger]](ctx, c, "/api/v1/triggers", q.values())
}

func (c *Client) Sensor(ctx context.Context, ref string) (*domain.Sensor, error) {
	return fetch[*domain.Sensor](ctx, c, "/api/v1/sensors/"+url.PathEscape(ref), nil)
}

func (c *Client) Sensors(ctx context.Context, q ListQuery) (Page[*domain.Sensor], error) {
	return fetch[Page[*domain.Sensor]](ctx, c, "/api/v1/sensors", q.values())
}

func (c *Client) Pack(ctx context.Context, ref string) (*domain.Pack, error) {
	return fetch[*domain.Pack](ctx, c, "/api/v1/packs/"+url.PathEscape(ref), nil)
}

func (c *Client) Packs(ctx context.Context, q ListQuery) (Page[*domain.Pack], error) {
	return fetch[Page[*domain.Pack]](ctx, c, "/api/v1/packs", q.values())
}

// InstallPack uploads a pack archive (a gzipped tar of the pack's
// directory, see packs.Archive); changed is false when every member had
// those files already.
func (c *Client) InstallPack(ctx context.Context, archive []byte) (p *domain.Pack, changed bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Addr+"/api/v1/packs", bytes.NewReader(archive))
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Content-Type", "application/gzip")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, false, responseError(resp)
	}
	p = new(domain.Pack)
	if err := json.NewDecoder(resp.Body).Decode(p); err != nil {
		return nil, false, fmt.Errorf("decode answer to POST /api/v1/packs: %w", err)
	}
	return p, resp.StatusCode == http.StatusCreated, nil
}

// RemovePack uninstalls a pack from every member.
func (c *Client) RemovePack(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/packs/"+url.PathEscape(ref), nil, nil, nil)
}

// Members lists the cluster's members as the node sees them.
func (c *Client) Members(ctx context.Context) ([]MemberView, error) {
	p, err := fetch[Page[MemberView]](ctx, c, "/api/v1/members", nil)
	return p.Items, err
}

// Ready returns nil when the node is ready, else an *Error giving the reason.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/readyz", nil, nil, nil)
}

// Healthz returns nil when the node answers at all.
func (c *Client) Healthz(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil, nil)
}

func (q ListQuery) values() url.Values {
	v := url.Values{}
	for _, name := range queryParams {
		if f := q.Field(name); *f != "" {
			v.Set(name, *f)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP == nil {
		return http.DefaultClient
	}
	return c.HTTP
}

func fetch[T any](ctx context.Context, c *Client, path string, q url.Values) (T, error) {
	var out T
	err := c.do(ctx, http.MethodGet, path, q, nil, &out)
	return out, err
}

// do sends in (when non-nil) as JSON and decodes a 2xx answer into out
// (when non-nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request to %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	u := c.Addr + path
	if c.Local && method == http.MethodGet {
		if q == nil {
			q = url.Values{}
		}
		q.Set("local", "true")
	}
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return responseError(resp)
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer to %s %s: %w", method, path, err)
	}
	return nil
}

// responseError reads the error a non-2xx answer carries.
func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return DecodeError(resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, resp.Header.Get("Retry-After"), b)
}

// DecodeError is the error of a non-2xx answer to method path, given its
// status, Retry-After header and body: the API's own *Error when the body
// carries one, else (a proxy's answer, say) an *Error quoting the body.
// It serves clients other than Client, such as bench's load generator.
func DecodeError(method, path string, status int, retryAfter string, body []byte) error {
	var env struct {
		Error *Error `json:"error"`
	}
	if json.Unmarshal(body, &env) == nil && env.Error != nil && env.Error.Code != "" {
		env.Error.Status = status
		if secs, err := strconv.Atoi(retryAfter); err == nil {
			env.Error.RetryAfter = time.Duration(secs) * time.Second
		}
		return env.Error
	}
	return &Error{Status: status, Message: fmt.Sprintf("%s %s: %d %s: %s",
		method, path, status, http.StatusText(status), strings.TrimSpace(string(body)))}
}
