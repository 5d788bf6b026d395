package bench

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/api/apitest"
	"github.com/troupehq/troupe/domain"
)

// apiNode serves an apitest.Backend; without streams, its stream route
// answers 404 as a node that predates it would.
func apiNode(t *testing.T, streams bool) (*apitest.Backend, *api.Client, *httptest.Server) {
	t.Helper()
	b := apitest.New(apitest.Catalog()...)
	var wrap func(http.Handler) http.Handler
	if !streams {
		wrap = func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/stream") {
					http.NotFound(w, r)
					return
				}
				h.ServeHTTP(w, r)
			})
		}
	}
	hs := apitest.Serve(t, b, wrap)
	return b, api.NewClient(hs.URL), hs
}

func finish(t *testing.T, b *apitest.Backend, id domain.ID) {
	t.Helper()
	for _, st := range []domain.Status{domain.StatusScheduled, domain.StatusRunning, domain.StatusSucceeded} {
		if err := b.Transition(id, st, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFinishesWaitOnStreams(t *testing.T) {
	for _, streams := range []bool{true, false} {
		name := map[bool]string{true: "stream", false: "long polls"}[streams]
		t.Run(name, func(t *testing.T) {
			b, c, _ := apiNode(t, streams)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			f := followStreams(ctx, []*api.Client{c})
			if err := f.fallback(); (err == nil) != streams {
				t.Fatalf("fallback %v with streams %v", err, streams)
			}
			run := func() domain.ID {
				e, err := b.Run(ctx, "core.noop", nil)
				if err != nil {
					t.Fatal(err)
				}
				return e.ID
			}
			// Finished before anyone waits: the event is kept for the wait.
			early := run()
			finish(t, b, early)
			waitFor(t, f, c, early)
			// Finished while a wait is held.
			late := run()
			done := make(chan error, 1)
			go func() { done <- f.wait(ctx, c, late.String()) }()
			time.Sleep(50 * time.Millisecond)
			select {
			case err := <-done:
				t.Fatalf("wait returned %v before the execution finished", err)
			default:
			}
			finish(t, b, late)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// waitFor waits for id, which may still be on its way through the stream.
func waitFor(t *testing.T, f *finishes, c *api.Client, id domain.ID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := f.wait(ctx, c, id.String()); err != nil {
		t.Fatalf("wait for %s: %v", id, err)
	}
}

func TestFinishesFallBackWhenAStreamBreaks(t *testing.T) {
	b, c, hs := apiNode(t, true)
	f := followStreams(t.Context(), []*api.Client{c})
	e, err := b.Run(t.Context(), "core.noop", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.wait(t.Context(), c, e.ID.String()) }()
	hs.CloseClientConnections() // the wait must not hang on an event no stream will bring
	time.Sleep(50 * time.Millisecond)
	finish(t, b, e.ID)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait hung after its stream broke")
	}
}

func TestErrorSamplesGroupMessagesDifferingInCounts(t *testing.T) {
	l := &load{errSamples: map[string]int{}}
	l.fail(errors.New("node n1 is overloaded: 575 executions unfinished"))
	l.fail(errors.New("node n1 is overloaded: 512 executions unfinished"))
	l.fail(errors.New("connection refused"))
	want := map[string]int{"node nN is overloaded: N executions unfinished": 2, "connection refused": 1}
	if !maps.Equal(l.errSamples, want) || l.errs.Load() != 3 {
		t.Fatalf("samples %v (errors %d), want %v", l.errSamples, l.errs.Load(), want)
	}
}
