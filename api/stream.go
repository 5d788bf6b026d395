package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/troupehq/troupe/domain"
)

// StreamBuffer is how many finished executions a stream subscriber may fall
// behind before the node cuts it off: at 5,000 executions/s, 1.6 s of them.
const StreamBuffer = 8192

// Fanout hands finished executions to the subscribers of a node's stream.
// The zero value is ready to use.
type Fanout struct {
	mu   sync.Mutex
	subs map[chan *domain.Execution]struct{}
	// recent is a ring of the IDs of the last StreamBuffer executions
	// published, for readers that resume; published counts them all. IDs,
	// not records: a record's output may be a megabyte.
	recent    []domain.ID
	published int
}

// Subscribe returns a channel of every execution published from now on, in
// order, until ctx ends. The channel is closed when ctx ends, or earlier
// when its reader falls StreamBuffer records behind: the pipeline never
// waits for a slow reader, and the reader learns that it missed some
// rather than missing them silently.
//
// A reader that resumes after execution after (not zero) also gets the IDs
// published since that one, oldest first, which the channel does not carry;
// if after is not among the last StreamBuffer published (or was never
// published here), it gets an error (code overflow) instead.
func (f *Fanout) Subscribe(ctx context.Context, after domain.ID) (missed []domain.ID, finished <-chan *domain.Execution, err error) {
	s := make(chan *domain.Execution, StreamBuffer)
	f.mu.Lock()
	if !after.IsZero() {
		var ok bool
		if missed, ok = f.since(after); !ok {
			f.mu.Unlock()
			return nil, nil, newError(CodeOverflow, "cannot resume after execution %s: the node does not remember it among the last %d that finished (it forgets them when it restarts); list executions to catch up", after, StreamBuffer)
		}
	}
	if f.subs == nil {
		f.subs = map[chan *domain.Execution]struct{}{}
	}
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.drop(s)
	})
	return missed, s, nil
}

// since returns the IDs published after id, oldest first, and whether id
// is still in the ring; f.mu is held.
func (f *Fanout) since(id domain.ID) ([]domain.ID, bool) {
	for back := 1; back <= min(f.published, len(f.recent)); back++ {
		if f.recent[(f.published-back)%len(f.recent)] != id {
			continue
		}
		missed := make([]domain.ID, 0, back-1)
		for i := f.published - back + 1; i < f.published; i++ {
			missed = append(missed, f.recent[i%len(f.recent)])
		}
		return missed, true
	}
	return nil, false
}

// Publish sends exs to every subscriber; it never blocks.
func (f *Fanout) Publish(exs ...*domain.Execution) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.recent == nil {
		f.recent = make([]domain.ID, StreamBuffer)
	}
	for _, ex := range exs {
		f.recent[f.published%len(f.recent)] = ex.ID
		f.published++
	}
	for s := range f.subs {
		for _, ex := range exs {
			select {
			case s <- ex:
				continue
			default:
			}
			f.drop(s)
			break
		}
	}
}

// drop closes s once; f.mu is held.
func (f *Fanout) drop(s chan *domain.Execution) {
	if _, ok := f.subs[s]; ok {
		delete(f.subs, s)
		close(s)
	}
}

// stream serves GET /api/v1/stream as Server-Sent Events: one `execution`
// event per execution this node owns that finishes while the stream is
// open, its data the execution's JSON without history, its id the
// execution's. `?action=REF` keeps one action's. A reader too slow for the
// node gets an `error` event (code overflow) and the end of the stream: it
// missed executions, which it can list. A reader that reconnects with the
// SSE header Last-Event-ID first gets the executions that finished since
// that one; 410 (code overflow) when the node no longer remembers it.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) (int, any, error) {
	action := r.URL.Query().Get("action")
	ctx := r.Context()
	var after domain.ID
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		var err error
		if after, err = domain.ParseID(v); err != nil {
			return 0, nil, newError(CodeBadRequest, "header Last-Event-ID: %v", err)
		}
	}
	missed, finished, err := s.b.Finished(ctx, after)
	if err != nil {
		return 0, nil, err
	}
	rc, err := startEvents(w)
	if err != nil {
		return 0, nil, nil
	}
	var buf []byte
	event := func(ex *domain.Execution) {
		if action != "" && ex.Action != action {
			return
		}
		start := len(buf)
		buf = append(buf, "id: "...)
		buf = append(buf, ex.ID.String()...)
		buf = append(buf, "\nevent: execution\ndata: "...)
		var err error
		if buf, err = appendExecution(buf, executionView(ex, nil)); err != nil {
			buf = buf[:start]
			s.log.Error("encode stream event", "execution", ex.ID, "error", err)
			return
		}
		buf = append(buf, "\n\n"...)
	}
	for _, id := range missed {
		ex, _, err := s.b.Execution(ctx, id)
		if err != nil {
			s.log.Error("load execution to resume a stream", "execution", id, "error", err)
			continue
		}
		event(ex)
	}
	if len(buf) > 0 {
		if _, err := w.Write(buf); err != nil || rc.Flush() != nil {
			return 0, nil, nil
		}
	}
	keepalive := time.NewTicker(s.cfg.Keepalive)
	defer keepalive.Stop()
	for {
		buf = buf[:0]
		select {
		case <-ctx.Done():
			return 0, nil, nil
		case <-keepalive.C:
			buf = append(buf, keepaliveEvent...)
		case ex, ok := <-finished:
			if !ok {
				if ctx.Err() == nil {
					writeErrorEvent(w, newError(CodeOverflow,
						"this stream fell %d executions behind and was closed; list executions to catch up", StreamBuffer))
					_ = rc.Flush()
				}
				return 0, nil, nil
			}
			event(ex)
		}
		if len(buf) == 0 {
			continue
		}
		if _, err := w.Write(buf); err != nil {
			return 0, nil, nil
		}
		// One flush per burst: under load, events that are already queued go
		// out in the same write.
		if len(finished) == 0 && rc.Flush() != nil {
			return 0, nil, nil
		}
	}
}

// startEvents answers 200 with the headers of a Server-Sent Events stream
// and sends them; the controller flushes what follows.
func startEvents(w http.ResponseWriter) (*http.ResponseController, error) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx would otherwise hold events back
	w.WriteHeader(http.StatusOK)
	return rc, rc.Flush()
}

// keepaliveEvent is what an idle event stream carries every
// Config.Keepalive: a comment, which SSE readers skip.
const keepaliveEvent = ": keepalive\n\n"

// writeErrorEvent adds an `error` event carrying e as error answers do,
// {"error": {...}}, to w.
func writeErrorEvent(w io.Writer, e *Error) {
	b, _ := json.Marshal(map[string]*Error{"error": e})
	fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
}

// ErrStreamOverflow is wrapped by what Stream returns when the client
// missed executions: the node cut the stream off because the client fell
// behind, or could not resume it after an execution it forgot. The error
// says which; listing executions catches up.
var ErrStreamOverflow = errors.New("executions were missed")

// StreamEvent is one finished execution from a node's stream: its ID, and
// its JSON, decoded only by View, so that a reader that needs no more than
// the ID pays for no more.
type StreamEvent struct {
	ID   string
	Data []byte // valid only during the callback
}

// View decodes the execution.
func (e StreamEvent) View() (*ExecutionView, error) {
	var v ExecutionView
	if err := json.Unmarshal(e.Data, &v); err != nil {
		return nil, fmt.Errorf("decode stream event %s: %w", e.ID, err)
	}
	return &v, nil
}

// Stream follows the node's stream of finished executions (GET
// /api/v1/stream; action, when not empty, keeps one action's), calling fn
// for each, until ctx ends (then it returns nil), fn fails, the connection
// breaks, or the node cuts the stream off (ErrStreamOverflow). After, when
// not empty, resumes after that execution: those that finished since come
// first, and ErrStreamOverflow means the node no longer remembers it. It
// calls ready, when not nil, once the node has answered and before any
// event: the node has subscribed by then, so every execution finishing
// later reaches fn.
func (c *Client) Stream(ctx context.Context, action, after string, ready func(), fn func(StreamEvent) error) error {
	q := url.Values{}
	if action != "" {
		q.Set("action", action)
	}
	body, err := c.openEvents(ctx, "/api/v1/stream", q, after)
	if e, ok := err.(*Error); ok && e.Code == CodeOverflow {
		return fmt.Errorf("%s: %w", e.Message, ErrStreamOverflow)
	} else if err != nil {
		return err
	}
	defer body.Close()
	if ready != nil {
		ready()
	}
	var stop error // fn's, or the node's error event: returned as they are
	err = readEvents(body, func(event, id string, data []byte) error {
		switch event {
		case "execution":
			stop = fn(StreamEvent{ID: id, Data: data})
		case "error":
			if e, ok := eventError(data).(*Error); ok && e.Code == CodeOverflow {
				stop = fmt.Errorf("%s: %w", e.Message, ErrStreamOverflow)
			} else {
				stop = fmt.Errorf("stream from %s: %s", c.Addr, data)
			}
		}
		return stop // comments and unknown events: SSE says ignore them
	})
	switch {
	case stop != nil:
		return stop
	case ctx.Err() != nil:
		return nil
	case err != nil:
		return fmt.Errorf("read stream from %s: %w", c.Addr, err)
	}
	return fmt.Errorf("read stream from %s: the node closed it", c.Addr)
}

// openEvents opens the Server-Sent Events of GET path?q, resuming after
// event lastID when it is not empty; an answer other than 200 is its error.
func (c *Client) openEvents(ctx context.Context, path string, q url.Values, lastID string) (io.ReadCloser, error) {
	if c.Local {
		q.Set("local", "true")
	}
	u := c.Addr + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, responseError(resp)
	}
	return resp.Body, nil
}

// readEvents calls fn with the type, ID and data of each Server-Sent Event
// read from r, the data valid only during the call, until r ends (nil) or
// fn fails.
func readEvents(r io.Reader, fn func(event, id string, data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20) // an event is one line of JSON, results included
	var event, id string
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0: // the blank line ends an event
			if err := fn(event, id, data); err != nil {
				return err
			}
			event, id, data = "", "", data[:0]
		case bytes.HasPrefix(line, []byte("event: ")):
			event = string(line[len("event: "):])
		case bytes.HasPrefix(line, []byte("id: ")):
			id = string(line[len("id: "):])
		case bytes.HasPrefix(line, []byte("data: ")):
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, line[len("data: "):]...)
		}
	}
	return sc.Err()
}

// eventError is the error an `error` event carries, {"error": {...}} as
// error answers have it.
func eventError(data []byte) error {
	var env struct {
		Error *Error `json:"error"`
	}
	if json.Unmarshal(data, &env) == nil && env.Error != nil {
		return env.Error
	}
	return fmt.Errorf("%s", data)
}
