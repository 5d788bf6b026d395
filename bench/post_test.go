package bench

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
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
