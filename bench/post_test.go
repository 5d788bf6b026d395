package bench

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// TestPosterAnswersAsTheAPIClientWould sends the bench's POSTs to a server
// that accepts, refuses as the API does, and answers as a proxy would: the
// body arrives, 2xx answers decode, and errors come back as *api.Error.
func TestPosterAnswersAsTheAPIClientWould(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json":
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
		case r.URL.Path == "/ok":
			w.Write([]byte(`{"event":"` + string(body) + `"}`))
		case r.URL.Path == "/busy":
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"code":"overloaded","message":"too much"}}`))
		default:
			http.Error(w, "bad gateway", http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	p, err := newPoster(srv.URL, 4)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Event string `json:"event"`
	}
	if err := p.post("/ok", []byte("hello"), &out); err != nil || out.Event != "hello" {
		t.Fatalf("ok: %q, %v", out.Event, err)
	}
	var apiErr *api.Error
	err = p.post("/busy", []byte("{}"), &out)
	if !errors.As(err, &apiErr) || apiErr.Code != "overloaded" || apiErr.Status != 503 || apiErr.RetryAfter != 2*time.Second {
		t.Fatalf("busy: %#v", err)
	}
	err = p.post("/proxy", []byte("{}"), &out)
	if !errors.As(err, &apiErr) || apiErr.Status != 502 || apiErr.Message != "POST /proxy: 502 Bad Gateway: bad gateway" {
		t.Fatalf("proxy: %#v", err)
	}
	if _, err := newPoster("127.0.0.1:80", 1); err == nil {
		t.Error("an address without a scheme was taken")
	}
}

// TestRefusalsAreNotErrors sends one request per kind of answer: a refusal
// as overloaded is counted apart and paces the client by its Retry-After,
// any other failure is an error, and an accepted event is waited for.
func TestRefusalsAreNotErrors(t *testing.T) {
	event := domain.NewID(time.Now()).String()
	answers := []func(w http.ResponseWriter){
		func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"code":"overloaded","message":"node n1 is overloaded"}}`))
		},
		func(w http.ResponseWriter) { http.Error(w, "boom", http.StatusInternalServerError) },
		func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusAccepted)
			w.Write([]byte(`{"event":"` + event + `"}`))
		},
	}
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answers[n.Add(1)-1](w)
	}))
	defer srv.Close()
	p, err := newPoster(srv.URL, 1)
	if err != nil {
		t.Fatal(err)
	}
	l := &load{clients: []*api.Client{api.NewClient(srv.URL)}, posters: []*poster{p},
		submit: submitter(WebhookNoop, 0), errSamples: map[string]int{}}
	for i, want := range []time.Duration{2 * time.Second, failPause, 0} {
		_, execs, pause := l.one()
		if pause != want || (want == 0) != (len(execs) == 1) {
			t.Errorf("answer %d: pause %v and %d executions to wait for; want %v", i, pause, len(execs), want)
		}
	}
	if r, e, a := l.refused.Load(), l.errs.Load(), l.accepted.Load(); r != 1 || e != 1 || a != 1 {
		t.Errorf("refused %d, errors %d, accepted %d; want 1 each", r, e, a)
	}
}
