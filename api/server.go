package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/troupehq/troupe/domain"
)

// Limits of the list and long-poll endpoints.
const (
	DefaultLimit = 100 // items per page when the request names no limit
	MaxLimit     = 1000
	// MaxWait caps ?wait= on GET /api/v1/executions/{id}. The http.Server
	// serving this handler needs a WriteTimeout above it, or none.
	MaxWait = 5 * time.Minute
)

// Config configures a Server.
type Config struct {
	// MaxBody is the largest request body accepted, in bytes; a larger one
	// gets 413. Zero means the default, 1 MiB.
	MaxBody int64
	// Logger receives the causes of internal errors, and one debug line per
	// request. Nil discards.
	Logger *slog.Logger
	// Metrics, when non-nil, is served at GET /metrics (typically promhttp
	// over the node's registry).
	Metrics http.Handler
	// NotServed, when set, is asked before every request except /healthz,
	// /readyz, /metrics and the members' own requests to each other (GETs
	// and re-runs with ?local=true); an error it returns is the answer. A node without
	// the api role refuses its clients this way, naming the members that
	// serve them. Default nil: everything is served.
	NotServed func() error
	// MaxPack is the largest pack archive POST /api/v1/packs accepts, in
	// bytes. Zero means the default, 32 MiB.
	MaxPack int64
	// Keepalive is how often an idle event stream (the stream of finished
	// executions, an execution's output) carries a comment line, so that
	// proxies keep it open and a client can tell a quiet node from a dead
	// connection. Zero means the default, 15s.
	Keepalive time.Duration
}

// DefaultConfig returns the defaults described on Config.
func DefaultConfig() Config {
	return Config{MaxBody: 1 << 20, MaxPack: 32 << 20, Keepalive: 15 * time.Second}
}

// Validate reports every problem of c.
func (c Config) Validate() error {
	if c.MaxBody < 0 || c.MaxPack < 0 || c.Keepalive < 0 {
		return fmt.Errorf("api: max body %d, max pack %d and keepalive %s must not be negative", c.MaxBody, c.MaxPack, c.Keepalive)
	}
	return nil
}

// Server is a node's HTTP API, an http.Handler.
type Server struct {
	cfg      Config
	b        Backend
	log      *slog.Logger
	mux      *http.ServeMux
	fallback http.Handler // answers what no route matches
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

var _ http.Handler = (*Server)(nil)

// NewServer builds the API over b and registers its metrics on reg; a nil
// reg keeps them private.
func NewServer(cfg Config, b Backend, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultConfig().MaxBody
	}
	if cfg.MaxPack == 0 {
		cfg.MaxPack = DefaultConfig().MaxPack
	}
	if cfg.Keepalive == 0 {
		cfg.Keepalive = DefaultConfig().Keepalive
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{
		cfg: cfg, b: b, log: cfg.Logger.With("component", "api"), mux: http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "troupe_http_requests_total",
			Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "troupe_http_request_duration_seconds",
			Help: "Time to answer an HTTP request, by route pattern; long polls included.",
			// Up to MaxWait, so long polls land in a bucket of their own.
			Buckets: []float64{.001, .005, .025, .1, .5, 1, 5, 30, 60, 300},
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{s.requests, s.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("api: register metrics: %w", err)
		}
	}
	s.routes()
	s.fallback = s.instrument("unmatched", http.HandlerFunc(s.unmatched))
	return s, nil
}

func (s *Server) routes() {
	validID := func(v string) error { _, err := domain.ParseID(v); return err }
	s.route("POST /api/v1/webhooks/{name}", s.webhook)
	s.route("POST /api/v1/executions", s.run)
	s.route("GET /api/v1/executions", list(s.b.Executions, executionItem, validID, "action", "status", "rule", "event"))
	s.route("GET /api/v1/executions/{id}", s.execution)
	s.route(rerunRoute, s.rerun)
	s.route("GET /api/v1/executions/{id}/output", s.output)
	s.route("GET /api/v1/stream", s.stream)
	s.route("GET /api/v1/events", list(s.b.Events, same[*domain.Event], validID, "trigger"))
	s.route("GET /api/v1/events/{id}", get("event", "id", domain.ParseID, s.b.Event))
	s.route("GET /api/v1/enforcements", list(s.b.Enforcements, same[*domain.Enforcement], validID, "rule", "event"))
	s.route("GET /api/v1/enforcements/{id}", get("enforcement", "id", domain.ParseID, s.b.Enforcement))
	packCatalog.register(s)
	s.route("POST /api/v1/packs", s.installPack)
	s.route("DELETE /api/v1/packs/{ref}", func(_ http.ResponseWriter, r *http.Request) (int, any, error) {
		ref := r.PathValue("ref")
		if err := s.b.RemovePack(r.Context(), ref); err != nil {
			return 0, nil, named(err, "pack", ref)
		}
		return http.StatusOK, map[string]any{"ref": ref, "removed": true}, nil
	})
	ruleCatalog.register(s)
	actionCatalog.register(s)
	triggerCatalog.register(s)
	sensorCatalog.register(s)
	s.route("GET /api/v1/members", func(_ http.ResponseWriter, r *http.Request) (int, any, error) {
		ms, err := s.b.Members(r.Context())
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, Page[MemberView]{Items: ms}, nil
	})
	s.route("GET /healthz", func(http.ResponseWriter, *http.Request) (int, any, error) {
		return http.StatusOK, map[string]string{"status": "ok"}, nil
	})
	s.route("GET /readyz", func(http.ResponseWriter, *http.Request) (int, any, error) {
		if err := s.b.Ready(); err != nil {
			return 0, nil, newError(CodeNotReady, "not ready: %v", err)
		}
		return http.StatusOK, map[string]string{"status": "ready"}, nil
	})
	if s.cfg.Metrics != nil {
		s.mux.Handle("GET /metrics", s.instrument("GET /metrics", s.cfg.Metrics))
	}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern == "" {
		s.fallback.ServeHTTP(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// unmatched answers what the mux would answer in plain text — 404, 405 or a
// path-cleaning redirect — with JSON errors for the first two.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request) {
	h, _ := s.mux.Handler(r)
	p := &probe{header: http.Header{}}
	h.ServeHTTP(p, r)
	switch p.code {
	case http.StatusMethodNotAllowed:
		allow := p.header.Get("Allow")
		w.Header().Set("Allow", allow)
		s.fail(w, r, newError(CodeMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
	case http.StatusNotFound:
		s.fail(w, r, newError(CodeNotFound, "no route for %s %s", r.Method, r.URL.Path))
	default:
		maps.Copy(w.Header(), p.header)
		w.WriteHeader(p.code)
		_, _ = w.Write(p.body.Bytes())
	}
}

// probe records what a handler would answer.
type probe struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (p *probe) Header() http.Header         { return p.header }
func (p *probe) WriteHeader(code int)        { p.code = code }
func (p *probe) Write(b []byte) (int, error) { return p.body.Write(b) }

// endpoint answers a request with a status and a JSON body, or an error; a
// status of 0 means it wrote its answer itself (a stream).
type endpoint func(w http.ResponseWriter, r *http.Request) (int, any, error)

// ungated routes are answered whatever Config.NotServed says: probes are
// the node's operator's, not the API's clients'.
var ungated = []string{"GET /healthz", "GET /readyz"}

// rerunRoute is the one write members send each other (with ?local=true):
// a re-run is done by the node that owns the execution, whatever its roles.
const rerunRoute = "POST /api/v1/executions/{id}/rerun"

func (s *Server) route(pattern string, e endpoint) {
	gated := s.cfg.NotServed != nil && !slices.Contains(ungated, pattern)
	s.mux.Handle(pattern, s.instrument(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Most requests carry no query; parsing one allocates a map.
		local := r.URL.RawQuery != "" && r.URL.Query().Get("local") == "true"
		if local {
			r = r.WithContext(withLocal(r.Context()))
		}
		if gated && !(local && (r.Method == http.MethodGet || pattern == rerunRoute)) {
			if err := s.cfg.NotServed(); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		code, body, err := e(w, r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if code != 0 {
			s.write(w, r, code, body)
		}
	})))
}

// instrument counts and times h under route, a mux pattern: raw paths carry
// IDs and would explode the label space.
func (s *Server) instrument(route string, h http.Handler) http.Handler {
	requests := s.requests.MustCurryWith(prometheus.Labels{"route": route})
	duration := s.duration.WithLabelValues(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		d := time.Since(start)
		requests.WithLabelValues(strconv.Itoa(rec.code)).Inc()
		duration.Observe(d.Seconds())
		if s.log.Enabled(r.Context(), slog.LevelDebug) { // spares boxing the attributes per request
			s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "route", route, "code", rec.code, "duration", d)
		}
	})
}

// recorder remembers the status code written through it.
type recorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) write(w http.ResponseWriter, r *http.Request, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.fail(w, r, fmt.Errorf("encode response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	e, internal := toError(err)
	if internal {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	s.write(w, r, e.Status, map[string]*Error{"error": e})
}

// decode reads a JSON request body of at most MaxBody bytes into v.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return newError(CodeTooLarge, "request body exceeds the limit of %d bytes", mbe.Limit)
	} else if err != nil {
		return newError(CodeBadRequest, "read request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return newError(CodeInvalidJSON, "request body is empty; want a JSON value")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(body, err)
	}
	if end := dec.InputOffset(); len(bytes.TrimSpace(body[end:])) > 0 {
		extra := end + int64(len(body[end:])-len(bytes.TrimLeft(body[end:], " \t\r\n")))
		return newError(CodeInvalidJSON, "invalid JSON at %s: data after the top-level value", where(body, extra+1))
	}
	return nil
}

// packTypes are the media types of a pack archive; curl's default for
// --data-binary (form-urlencoded) is refused so that a forgotten header
// gets a clear answer rather than a confusing gzip error.
var packTypes = []string{"application/gzip", "application/x-gzip", "application/x-tar+gzip", "application/octet-stream"}

// installPack takes a pack as a gzipped tar of its directory.
func (s *Server) installPack(w http.ResponseWriter, r *http.Request) (int, any, error) {
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	if !slices.Contains(packTypes, strings.TrimSpace(strings.ToLower(ct))) {
		return 0, nil, newError(CodeUnsupportedType, "Content-Type %q: send the pack as a gzipped tar of its directory (%s), e.g. `tar czf - -C mypack . | curl --data-binary @- -H 'Content-Type: application/gzip' …` or `troupe pack install mypack`",
			ct, strings.Join(packTypes, ", "))
	}
	archive, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxPack))
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return 0, nil, newError(CodeTooLarge, "pack archive exceeds the limit of %d bytes", mbe.Limit)
	} else if err != nil {
		return 0, nil, newError(CodeBadRequest, "read request body: %v", err)
	}
	p, changed, err := s.b.InstallPack(r.Context(), archive)
	if err != nil {
		return 0, nil, err
	}
	code := http.StatusCreated
	if !changed {
		code = http.StatusOK
	}
	return code, maskCatalog([]*domain.Pack{p})[0], nil
}

// webhookHeaders are kept out of events: they authenticate the caller to
// Troupe or a proxy, and events are readable by anyone who may list them.
var webhookHeaders = []string{"authorization", "cookie", "proxy-authorization"}

// webhookAnswer is {"event": id}; a struct encodes without sorting map keys.
type webhookAnswer struct {
	Event domain.ID `json:"event"`
}

func (s *Server) webhook(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var body any
	if err := s.decode(w, r, &body); err != nil {
		return 0, nil, err
	}
	headers := make(map[string]string, len(r.Header))
	for k, v := range r.Header {
		if k = strings.ToLower(k); len(v) > 0 && !slices.Contains(webhookHeaders, k) {
			headers[k] = v[0]
		}
	}
	name := r.PathValue("name")
	id, err := s.b.Webhook(r.Context(), name, headers, body)
	if err != nil {
		return 0, nil, named(err, "webhook", name)
	}
	return http.StatusAccepted, webhookAnswer{id}, nil
}

// runRequest is the body of POST /api/v1/executions.
type runRequest struct {
	Action     string         `json:"action"`
	Parameters map[string]any `json:"parameters"`
}

func (s *Server) run(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var req runRequest
	if err := s.decode(w, r, &req); err != nil {
		return 0, nil, err
	}
	if req.Action == "" {
		return 0, nil, newError(CodeBadRequest, `request body: missing "action", the ref of the action to run`)
	}
	if req.Parameters == nil {
		req.Parameters = map[string]any{}
	}
	e, err := s.b.Run(r.Context(), req.Action, req.Parameters)
	if err != nil {
		return 0, nil, named(err, "action", req.Action)
	}
	return http.StatusCreated, executionView(e, nil), nil
}

// rerunRequest is the body of POST /api/v1/executions/{id}/rerun, which may
// also be empty.
type rerunRequest struct {
	Parameters map[string]any `json:"parameters,omitempty"`
}

func (s *Server) rerun(w http.ResponseWriter, r *http.Request) (int, any, error) {
	id, err := domain.ParseID(r.PathValue("id"))
	if err != nil {
		return 0, nil, newError(CodeBadRequest, "%v", err)
	}
	var req rerunRequest
	if r.ContentLength != 0 {
		if err := s.decode(w, r, &req); err != nil {
			return 0, nil, err
		}
	}
	e, err := s.b.Rerun(r.Context(), id, req.Parameters)
	if err != nil {
		return 0, nil, named(err, "execution", id.String())
	}
	return http.StatusCreated, executionView(e, nil), nil
}

func (s *Server) execution(_ http.ResponseWriter, r *http.Request) (int, any, error) {
	id, err := domain.ParseID(r.PathValue("id"))
	if err != nil {
		return 0, nil, newError(CodeBadRequest, "%v", err)
	}
	wait, err := parseWait(r.URL.Query().Get("wait"))
	if err != nil {
		return 0, nil, err
	}
	var e *domain.Execution
	var h []domain.HistoryEntry
	if wait > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		e, h, err = s.b.WaitExecution(ctx, id)
		cancel()
		// A Backend may report its wait running out as an error; the
		// client asked for the record as it is then.
		if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
			e, h, err = s.b.Execution(r.Context(), id)
		}
	} else {
		e, h, err = s.b.Execution(r.Context(), id)
	}
	if err != nil {
		return 0, nil, named(err, "execution", id.String())
	}
	return http.StatusOK, executionView(e, h), nil
}

func parseWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > MaxWait {
		return 0, newError(CodeBadRequest, "invalid wait %q: want a duration from 0s to %s, such as 30s", v, MaxWait)
	}
	return d, nil
}

// list is the one handler of every list endpoint: it accepts the query
// parameters named in filters plus limit and cursor, checks cursors with
// validCursor when set, and renders each item with view.
func list[T, V any](fetch func(context.Context, ListQuery) (Page[T], error), view func(T) V, validCursor func(string) error, filters ...string) endpoint {
	return func(_ http.ResponseWriter, r *http.Request) (int, any, error) {
		q, err := parseListQuery(r.URL.Query(), validCursor, filters)
		if err != nil {
			return 0, nil, err
		}
		p, err := fetch(r.Context(), q)
		if err != nil {
			return 0, nil, err
		}
		out := Page[V]{Items: make([]V, len(p.Items)), Next: p.Next, Partial: p.Partial, Unreachable: p.Unreachable}
		for i, it := range p.Items {
			out.Items[i] = view(it)
		}
		return http.StatusOK, out, nil
	}
}

func same[T any](v T) T { return v }

func parseListQuery(v url.Values, validCursor func(string) error, filters []string) (ListQuery, error) {
	q := ListQuery{Limit: DefaultLimit}
	known := append(slices.Clone(filters), "limit", "cursor", "local")
	for name := range v {
		if !slices.Contains(known, name) {
			return q, newError(CodeBadRequest, "unknown query parameter %q (known: %s)", name, strings.Join(known, ", "))
		}
		if f := q.Field(name); f != nil {
			*f = v.Get(name)
		}
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxLimit {
			return q, newError(CodeBadRequest, "invalid limit %q: want 1 to %d", l, MaxLimit)
		}
		q.Limit = n
	}
	if q.Status != "" {
		if _, err := domain.ParseStatus(q.Status); err != nil {
			return q, newError(CodeBadRequest, "%v", err)
		}
	}
	if q.Event != "" {
		if _, err := domain.ParseID(q.Event); err != nil {
			return q, newError(CodeBadRequest, "event filter: %v", err)
		}
	}
	if q.Cursor != "" && validCursor != nil {
		if err := validCursor(q.Cursor); err != nil {
			return q, newError(CodeBadRequest, "invalid cursor %q: pass the next of the previous page", q.Cursor)
		}
	}
	return q, nil
}

// get is the one handler of every get-by-key endpoint: it parses the path
// wildcard key with parse (a failure is a bad request) and fetches the item.
func get[K, T any](kind, key string, parse func(string) (K, error), fetch func(context.Context, K) (T, error)) endpoint {
	return func(_ http.ResponseWriter, r *http.Request) (int, any, error) {
		raw := r.PathValue(key)
		k, err := parse(raw)
		if err != nil {
			return 0, nil, newError(CodeBadRequest, "%v", err)
		}
		v, err := fetch(r.Context(), k)
		if err != nil {
			return 0, nil, named(err, kind, raw)
		}
		return http.StatusOK, v, nil
	}
}

// catalog is the Backend's packs as the API shows them: secrets masked.
func (s *Server) catalog(context.Context) ([]*domain.Pack, error) {
	return maskCatalog(s.b.Packs()), nil
}

// packViews is catalog with each member's copy of every pack.
func (s *Server) packViews(ctx context.Context) ([]*domain.Pack, error) {
	ps, err := s.b.PackViews(ctx)
	return maskCatalog(ps), err
}
