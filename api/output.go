package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/troupehq/troupe/domain"
)

// OutputFrom is where a reader of an execution's output resumes: the
// attempt it follows (0: the current one) and the bytes of each of its
// streams it already has.
type OutputFrom struct {
	Attempt        int
	Stdout, Stderr int
}

// SendKept gives fn what result r kept of each stream past from: the rest
// of an output a reader followed live, or all of it. A nil r kept nothing.
func SendKept(r *domain.Result, from OutputFrom, fn func(stream string, chunk []byte) error) error {
	if r == nil {
		return nil
	}
	for _, s := range [...]struct {
		name, text string
		from       int
	}{{"stdout", r.Stdout, from.Stdout}, {"stderr", r.Stderr, from.Stderr}} {
		if len(s.text) > s.from {
			if err := fn(s.name, []byte(s.text[s.from:])); err != nil {
				return err
			}
		}
	}
	return nil
}

// output serves GET /api/v1/executions/{id}/output as Server-Sent Events:
// a `stdout` or `stderr` event for each piece the action prints, its data
// the text as a JSON string, as it prints it; an `attempt` event, its data
// the number, when a retry starts the action again; then one `end` event
// whose data is the terminal execution (`{}` for ?local=true, which
// follows only a run in progress on this node).
// `?attempt=A&stdout=N&stderr=M` skip what a reader already has. A failure
// once the stream has begun is an `error` event.
func (s *Server) output(w http.ResponseWriter, r *http.Request) (int, any, error) {
	id, err := domain.ParseID(r.PathValue("id"))
	if err != nil {
		return 0, nil, newError(CodeBadRequest, "%v", err)
	}
	var from OutputFrom
	q := r.URL.Query()
	for name, n := range map[string]*int{"attempt": &from.Attempt, "stdout": &from.Stdout, "stderr": &from.Stderr} {
		if v := q.Get(name); v != "" {
			if *n, err = strconv.Atoi(v); err != nil || *n < 0 {
				return 0, nil, newError(CodeBadRequest, "query %s=%q: want a number, at least 0", name, v)
			}
		}
	}
	// The answer starts with the first piece, so that an unknown execution
	// is still a 404. Pieces and keepalives come from two goroutines.
	var (
		mu  sync.Mutex
		rc  *http.ResponseController
		buf bytes.Buffer
	)
	write := func(event func(*bytes.Buffer)) error {
		mu.Lock()
		defer mu.Unlock()
		if rc == nil {
			started, err := startEvents(w)
			if err != nil {
				return err
			}
			rc = started
		}
		buf.Reset()
		event(&buf)
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
		return rc.Flush()
	}
	send := func(event string, data []byte) error {
		return write(func(b *bytes.Buffer) { fmt.Fprintf(b, "event: %s\ndata: %s\n\n", event, data) })
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		keepalive := time.NewTicker(s.cfg.Keepalive)
		defer keepalive.Stop()
		for {
			select {
			case <-stop:
				return
			case <-keepalive.C:
				if write(func(b *bytes.Buffer) { b.WriteString(keepaliveEvent) }) != nil {
					return
				}
			}
		}
	}()
	ex, err := s.b.Output(r.Context(), id, from, func(stream string, chunk []byte) error {
		if stream == "attempt" {
			return send(stream, chunk)
		}
		text, _ := json.Marshal(string(chunk))
		return send(stream, text)
	})
	close(stop)
	<-stopped
	switch {
	case err != nil && rc == nil:
		return 0, nil, named(err, "execution", id.String())
	case err != nil:
		if r.Context().Err() == nil {
			e, internal := toError(err)
			if internal {
				s.log.Error("follow output", "execution", id, "error", err)
			}
			_ = write(func(b *bytes.Buffer) { writeErrorEvent(b, e) })
		}
		return 0, nil, nil
	}
	end := []byte("{}")
	if ex != nil {
		end, _ = json.Marshal(executionView(ex, nil))
	}
	_ = send("end", end)
	return 0, nil, nil
}

// Output follows what execution id's action prints (GET
// /api/v1/executions/{id}/output), calling fn with each piece, from where
// from says, until the execution ends; it returns the terminal execution
// (nil from a Local client, which follows a run on that node only). A
// retry's new attempt is a piece of stream "attempt", its number. The
// chunk is valid only during the call.
func (c *Client) Output(ctx context.Context, id string, from OutputFrom, fn func(stream string, chunk []byte) error) (*ExecutionView, error) {
	q := url.Values{}
	if from.Attempt > 0 {
		q.Set("attempt", strconv.Itoa(from.Attempt))
	}
	if from.Stdout > 0 {
		q.Set("stdout", strconv.Itoa(from.Stdout))
	}
	if from.Stderr > 0 {
		q.Set("stderr", strconv.Itoa(from.Stderr))
	}
	body, err := c.openEvents(ctx, "/api/v1/executions/"+url.PathEscape(id)+"/output", q, "")
	if err != nil {
		return nil, err
	}
	defer body.Close()
	var final *ExecutionView
	ended := false
	err = readEvents(body, func(event, _ string, data []byte) error {
		switch event {
		case "attempt":
			return fn(event, data)
		case "stdout", "stderr":
			var text string
			if err := json.Unmarshal(data, &text); err != nil {
				return fmt.Errorf("decode %s of execution %s: %w", event, id, err)
			}
			return fn(event, []byte(text))
		case "end":
			ended = true
			if string(data) == "{}" {
				return nil
			}
			final = new(ExecutionView)
			return json.Unmarshal(data, final)
		case "error":
			return eventError(data)
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case !ended:
		return nil, fmt.Errorf("read output of execution %s from %s: the node closed the stream before its end", id, c.Addr)
	}
	return final, nil
}
