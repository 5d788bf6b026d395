package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/valyala/fasthttp"

	"github.com/troupehq/troupe/api"
)

// poster sends the load's requests to one node. It uses fasthttp's client,
// not net/http's: the load generator shares the cores with the nodes it
// measures, and net/http's client passes each request between the caller
// and two goroutines of the connection, which cost as much as the node's
// whole HTTP server. fasthttp writes and reads on the caller's goroutine:
// at 64 clients that took the bench from ~60 to ~37 µs of CPU per request
// and left the node ~10% more throughput. Everything else (streams, long
// polls, lists) stays on api.Client.
type poster struct {
	base string // scheme://host:port
	hc   *fasthttp.HostClient
}

func newPoster(addr string, conns int) (*poster, error) {
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("node address %q is not a URL", addr)
	}
	return &poster{base: u.Scheme + "://" + u.Host, hc: &fasthttp.HostClient{
		// POSTs are not retried (fasthttp retries only idempotent
		// methods): what fails is reported as it failed.
		Addr: u.Host, IsTLS: u.Scheme == "https", MaxConns: conns + 16,
	}}, nil
}

// post sends body to path and decodes a 2xx answer into out; any other
// answer becomes the API's error, as api.Client would return it.
func (p *poster) post(path string, body []byte, out any) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(p.base + path)
	req.Header.SetMethod(http.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set("Accept", "application/json")
	req.SetBodyRaw(body)
	if err := p.hc.DoTimeout(req, resp, requestTimeout); err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	if code := resp.StatusCode(); code/100 != 2 {
		return api.DecodeError(http.MethodPost, path, code, string(resp.Header.Peek("Retry-After")), resp.Body())
	}
	if err := json.Unmarshal(resp.Body(), out); err != nil {
		return fmt.Errorf("decode answer to POST %s: %w", path, err)
	}
	return nil
}
