package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// follow runs Client.Stream in the background and returns its events and,
// once it returns, its error; it waits until the node has subscribed.
func follow(t *testing.T, ctx context.Context, c *api.Client, action string) (<-chan *api.ExecutionView, <-chan error) {
	t.Helper()
	events, done, ready := make(chan *api.ExecutionView, 16), make(chan error, 1), make(chan struct{})
	go func() {
		done <- c.Stream(ctx, action, "", func() { close(ready) }, func(e api.StreamEvent) error {
			v, err := e.View()
			if err != nil {
				return err
			}
			if v.ID.String() != e.ID {
				return fmt.Errorf("event id %s carries execution %s", e.ID, v.ID)
			}
			events <- v
			return nil
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("stream ended before the node answered: %v", err)
	}
	return events, done
}

// runTo runs action through the API, then moves its execution through the
// statuses to, as a worker's reports would.
func (n *node) runTo(t *testing.T, action string, to ...domain.Status) domain.ID {
	t.Helper()
	var params map[string]any
	if action == "demo.echo" {
		params = map[string]any{"message": "hi"}
	}
	e, err := n.c.Run(t.Context(), action, params)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range to {
		if err := n.b.Transition(e.ID, st, &domain.Result{Stdout: "hi\n"}); err != nil {
			t.Fatal(err)
		}
	}
	return e.ID
}

func TestStreamFinishedExecutions(t *testing.T) {
	n := start(t, api.DefaultConfig())
	ctx, cancel := context.WithCancel(t.Context())
	all, allDone := follow(t, ctx, n.c, "")
	echoes, _ := follow(t, ctx, n.c, "demo.echo")

	ok := n.runTo(t, "demo.echo", domain.StatusScheduled, domain.StatusRunning, domain.StatusSucceeded)
	running := n.runTo(t, "demo.echo", domain.StatusScheduled, domain.StatusRunning)
	noop := n.runTo(t, "core.noop", domain.StatusScheduled, domain.StatusRunning, domain.StatusFailed)
	if err := n.b.Transition(running, domain.StatusSucceeded, nil); err != nil {
		t.Fatal(err)
	}

	next := func(ch <-chan *api.ExecutionView) *api.ExecutionView {
		t.Helper()
		select {
		case v := <-ch:
			return v
		case <-time.After(10 * time.Second):
			t.Fatal("no stream event within 10 s")
			return nil
		}
	}
	// Finished executions only, in the order they finished, each once.
	for _, want := range []struct {
		id     domain.ID
		status domain.Status
	}{{ok, domain.StatusSucceeded}, {noop, domain.StatusFailed}, {running, domain.StatusSucceeded}} {
		got := next(all)
		if got.ID != want.id || got.Status != want.status || got.FinishedAt == nil || got.Result == nil || got.History != nil {
			t.Fatalf("got %s %s (finished %v, result %v, history %v); want %s %s with its result and no history",
				got.ID, got.Status, got.FinishedAt, got.Result, got.History, want.id, want.status)
		}
	}
	for _, want := range []domain.ID{ok, running} {
		if got := next(echoes); got.ID != want || got.Action != "demo.echo" {
			t.Fatalf("?action=demo.echo streamed %s of %s; want %s", got.ID, got.Action, want)
		}
	}
	select {
	case v := <-echoes:
		t.Fatalf("?action=demo.echo also streamed %s of %s", v.ID, v.Action)
	default:
	}
	cancel()
	if err := <-allDone; err != nil {
		t.Fatalf("Stream after its context ended: %v, want nil", err)
	}
}

func TestStreamHeaders(t *testing.T) {
	n := start(t, api.DefaultConfig())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.c.Addr+"/api/v1/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" ||
		resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("status %d, headers %v; want 200 text/event-stream, not cached", resp.StatusCode, resp.Header)
	}
}

func TestFanoutCutsOffASlowReader(t *testing.T) {
	var f api.Fanout
	subscribe := func(ctx context.Context) <-chan *domain.Execution {
		_, ch, err := f.Subscribe(ctx, domain.ID{})
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	slow := subscribe(t.Context())
	ctx, cancel := context.WithCancel(t.Context())
	gone := subscribe(ctx)
	cancel()
	waitClosed(t, gone)

	exs := make([]*domain.Execution, api.StreamBuffer+1)
	for i := range exs {
		exs[i] = &domain.Execution{ID: domain.NewID(time.Now()), Status: domain.StatusSucceeded}
	}
	f.Publish(exs[:api.StreamBuffer]...) // exactly fills the buffer
	fast := subscribe(t.Context())
	f.Publish(exs[api.StreamBuffer])
	// The slow reader still gets everything it had room for, in order, then
	// sees its channel closed instead of a gap.
	for i, want := range exs[:api.StreamBuffer] {
		if got := <-slow; got != want {
			t.Fatalf("record %d: got %s, want %s", i, got.ID, want.ID)
		}
	}
	waitClosed(t, slow)
	if got := <-fast; got != exs[api.StreamBuffer] {
		t.Fatalf("a reader with room got %v, want the last record", got)
	}
}

func waitClosed(t *testing.T, ch <-chan *domain.Execution) {
	t.Helper()
	select {
	case v, ok := <-ch:
		if ok {
			t.Fatalf("got %s from a channel that should be closed", v.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("channel not closed within 10 s")
	}
}

// overflowing is a backend whose streams are cut off at once, as a node's
// are when their reader falls behind.
type overflowing struct{ api.Backend }

func (overflowing) Finished(context.Context, domain.ID) ([]domain.ID, <-chan *domain.Execution, error) {
	ch := make(chan *domain.Execution)
	close(ch)
	return nil, ch, nil
}

func TestStreamOverflowReachesTheClient(t *testing.T) {
	n := start(t, api.DefaultConfig())
	s, err := api.NewServer(api.DefaultConfig(), overflowing{n.b}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	err = api.NewClient(hs.URL).Stream(t.Context(), "", "", nil, func(api.StreamEvent) error { return nil })
	if !errors.Is(err, api.ErrStreamOverflow) {
		t.Fatalf("Stream = %v, want ErrStreamOverflow", err)
	}
	if !strings.Contains(err.Error(), "executions behind") {
		t.Errorf("error %q does not say why", err)
	}
}

// TestFanoutResumes: a reader resuming after an execution gets the IDs
// published since, in order, while the ring holds it, across the ring's
// wrap; after one it no longer holds, or never held, it gets an overflow.
func TestFanoutResumes(t *testing.T) {
	var f api.Fanout
	ids := make([]domain.ID, api.StreamBuffer+10)
	for i := range ids {
		ids[i] = domain.NewID(time.Now())
		f.Publish(&domain.Execution{ID: ids[i], Status: domain.StatusSucceeded})
	}
	for _, at := range []int{len(ids) - 1, len(ids) - 2, 10, api.StreamBuffer} {
		missed, _, err := f.Subscribe(t.Context(), ids[at])
		if err != nil || fmt.Sprint(missed) != fmt.Sprint(ids[at+1:]) {
			t.Errorf("after #%d: %d missed, %v; want the %d after it", at, len(missed), err, len(ids)-at-1)
		}
	}
	for _, id := range []domain.ID{ids[9], ids[0], domain.NewID(time.Now())} {
		if _, _, err := f.Subscribe(t.Context(), id); err == nil || !strings.Contains(err.Error(), id.String()) {
			t.Errorf("after %s, forgotten: %v; want an error naming it", id, err)
		} else if e, ok := errors.AsType[*api.Error](err); !ok || e.Code != api.CodeOverflow || e.Status != http.StatusGone {
			t.Errorf("after %s: %#v; want 410 overflow", id, err)
		}
	}
}

// TestStreamResumesAfterLastEventID: a reader that reconnects with
// Last-Event-ID first gets what finished since, filter applied, then what
// finishes next; one the node forgot gets 410 overflow, which the client
// reports as ErrStreamOverflow.
func TestStreamResumesAfterLastEventID(t *testing.T) {
	n := start(t, api.DefaultConfig())
	finish := func(action string) domain.ID {
		return n.runTo(t, action, domain.StatusScheduled, domain.StatusRunning, domain.StatusSucceeded)
	}
	first := finish("demo.echo")
	a, b, c := finish("demo.echo"), finish("core.noop"), finish("demo.echo")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var got []domain.ID
	events := make(chan struct{}, 8)
	done := make(chan error, 1)
	go func() {
		done <- n.c.Stream(ctx, "demo.echo", first.String(), nil, func(e api.StreamEvent) error {
			v, err := e.View()
			if err != nil {
				return err
			}
			got = append(got, v.ID)
			events <- struct{}{}
			return nil
		})
	}()
	<-events
	<-events
	d := finish("demo.echo")
	<-events
	cancel()
	if err := <-done; err != nil || fmt.Sprint(got) != fmt.Sprint([]domain.ID{a, c, d}) {
		t.Errorf("resumed with %v (%v); want %v then %v, not %v of another action", got, err, []domain.ID{a, c}, d, b)
	}

	forgotten := domain.NewID(time.Now()).String()
	err := n.c.Stream(t.Context(), "", forgotten, nil, func(api.StreamEvent) error { return nil })
	if !errors.Is(err, api.ErrStreamOverflow) || !strings.Contains(err.Error(), forgotten) {
		t.Errorf("resume after a forgotten execution: %v; want ErrStreamOverflow naming it", err)
	}
	if code, _, body := n.call(t, "GET", "/api/v1/stream", "", "Last-Event-ID", "nope"); code != 400 || !strings.Contains(string(body), "Last-Event-ID") {
		t.Errorf("a bad Last-Event-ID: %d %s", code, body)
	}
}
