package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// submitFunc sends request i through p and returns the unit keys it calls
// for and the IDs of the executions to wait for in the closed loop.
type submitFunc func(p *poster, i int64) (keys, execs []string, err error)

func submitter(w Workload, nrules int) submitFunc {
	if w == Direct {
		body := []byte(`{"action":"core.noop"}`)
		return func(p *poster, _ int64) ([]string, []string, error) {
			var ex struct {
				ID string `json:"id"`
			}
			if err := p.post("/api/v1/executions", body, &ex); err != nil {
				return nil, nil, err
			}
			if _, err := domain.ParseID(ex.ID); err != nil {
				return nil, nil, fmt.Errorf("run answered execution %q: %w", ex.ID, err)
			}
			return []string{ex.ID}, []string{ex.ID}, nil
		}
	}
	path, rs := "/api/v1/webhooks/"+webhookOf[w], rules(w, nrules)
	return func(p *poster, i int64) ([]string, []string, error) {
		var out struct {
			Event string `json:"event"`
		}
		body := strconv.AppendInt([]byte(`{"n":`), i, 10)
		if err := p.post(path, append(body, '}'), &out); err != nil {
			return nil, nil, err
		}
		ev := out.Event
		id, err := domain.ParseID(ev)
		if err != nil {
			return nil, nil, fmt.Errorf("webhook answered event %q: %w", ev, err)
		}
		keys, execs := make([]string, len(rs)), make([]string, len(rs))
		for j, r := range rs {
			keys[j] = ev + "/" + r
			execs[j] = domain.ExecutionIDFor(domain.EnforcementID(id, r)).String()
		}
		return keys, execs, nil
	}
}

// requestTimeout bounds one request.
const requestTimeout = 30 * time.Second

// load is the state of the load phase, shared by its goroutines.
type load struct {
	clients []*api.Client
	posters []*poster // posters[i] sends to the node of clients[i]
	submit  submitFunc
	measure window

	seq                                    atomic.Int64
	sent, accepted, inWindow, errs, waited atomic.Int64
	// refused counts requests a node turned away as overloaded (503 and
	// Retry-After): load shedding working, not a failure.
	refused    atomic.Int64
	mu         sync.Mutex
	units      []string
	errSamples map[string]int
}

// one sends one request; it returns the node it went to, which owns the
// work, and the executions to wait for, or, when the request was not
// accepted, how long a client should pause before the next: what the node
// asked for in Retry-After when it refused as overloaded, a moment after
// any other error. A request once sent is seen through (for at most
// requestTimeout) even when the load ends meanwhile: cutting it off would
// leave work the node accepted unaccounted for.
func (l *load) one() (*api.Client, []string, time.Duration) {
	i := l.seq.Add(1)
	n := int(i) % len(l.clients)
	c := l.clients[n]
	l.sent.Add(1)
	keys, execs, err := l.submit(l.posters[n], i)
	var refusal *api.Error
	switch {
	case errors.As(err, &refusal) && refusal.Code == api.CodeOverloaded:
		l.refused.Add(1)
		return c, nil, max(refusal.RetryAfter, failPause)
	case err != nil:
		l.fail(err)
		return c, nil, failPause
	}
	l.accepted.Add(1)
	if l.measure.has(time.Now()) {
		l.inWindow.Add(1)
	}
	l.mu.Lock()
	l.units = append(l.units, keys...)
	l.mu.Unlock()
	return c, execs, 0
}

// failPause keeps a closed-loop client from spinning on a failing node.
const failPause = 10 * time.Millisecond

func (l *load) fail(err error) {
	l.errs.Add(1)
	// Counts in messages ("575 executions unfinished") would make each
	// occurrence of one error a sample of its own.
	msg := digits.ReplaceAllString(err.Error(), "N")
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.errSamples[msg]; ok || len(l.errSamples) < 20 {
		l.errSamples[msg]++
	}
}

var digits = regexp.MustCompile(`[0-9]+`)

// closedLoop runs cfg.Concurrency clients until ctx ends; each waits for the
// executions of its request (for at most drain past ctx's end) before the
// next. It returns how the waits learned of finished executions: "stream",
// or why they long-polled instead.
func (l *load) closedLoop(ctx context.Context, concurrency int, drain time.Duration) string {
	waitCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		time.AfterFunc(drain, cancel)
	})
	defer stop()
	finishes := followStreams(waitCtx, l.clients)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, execs, pause := l.one()
				if pause > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(pause):
					}
				}
				for _, id := range execs {
					if err := finishes.wait(waitCtx, c, id); err != nil {
						if waitCtx.Err() == nil {
							l.fail(fmt.Errorf("wait: %w", err))
						}
						break
					}
					l.waited.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if err := finishes.fallback(); err != nil {
		return "long polls, because " + err.Error()
	}
	return "stream"
}

// openLoop sends rate requests per second until ctx ends, at most
// concurrency in flight; a send that finds them all busy waits, and shows
// as a sent rate below the target.
func (l *load) openLoop(ctx context.Context, rate float64, concurrency int) {
	sem := make(chan struct{}, concurrency)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; ; i++ {
		next := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			l.one() // the open loop sends at its rate whatever the answers
			<-sem
		})
	}
	wg.Wait()
}

// progress prints a live line to w every half second until ctx ends.
func (l *load) progress(ctx context.Context, w io.Writer, start time.Time) {
	if w == nil {
		return
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var last int64
	lastAt := start
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			acc := l.accepted.Load()
			phase := "warmup"
			if !now.Before(l.measure.from) {
				phase = "measure"
			}
			fmt.Fprintf(w, "\r%-7s %5.1fs  accepted %d (%.0f/s)  waited %d  errors %d   ", phase,
				now.Sub(start).Seconds(), acc, float64(acc-last)/now.Sub(lastAt).Seconds(), l.waited.Load(), l.errs.Load())
			last, lastAt = acc, now
		}
	}
}

func newHTTPClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: nil, MaxIdleConns: conns + 16, MaxIdleConnsPerHost: conns + 16, IdleConnTimeout: 90 * time.Second,
	}}
}

// activeStatuses are the non-terminal statuses the drain waits out.
var activeStatuses = []domain.Status{domain.StatusRequested, domain.StatusDelayed, domain.StatusScheduled,
	domain.StatusRunning, domain.StatusCanceling}

// drain waits until no client's node has a non-terminal execution, or until
// deadline; it polls the index of non-terminal executions, one item each.
func drain(ctx context.Context, clients []*api.Client, deadline time.Time) error {
	for {
		busy := ""
		for _, c := range clients {
			for _, st := range activeStatuses {
				p, err := c.Executions(ctx, api.ListQuery{Status: st.String(), Limit: 1})
				if err != nil {
					return fmt.Errorf("drain: list %s executions at %s: %w", st, c.Addr, err)
				}
				if len(p.Items) > 0 {
					busy = fmt.Sprintf("%s has %s executions", c.Addr, st)
					break
				}
			}
			if busy != "" {
				break
			}
		}
		if busy == "" || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fetch lists c's executions newest first, page by page, down to since, and
// returns those keep accepts and how many there were in all.
func fetch(ctx context.Context, c *api.Client, since time.Time, keep func(*api.ExecutionView) bool) ([]*api.ExecutionView, int, error) {
	var out []*api.ExecutionView
	total := 0
	q := api.ListQuery{Limit: api.MaxLimit}
	for {
		p, err := c.Executions(ctx, q)
		if err != nil {
			return nil, 0, fmt.Errorf("list executions at %s: %w", c.Addr, err)
		}
		for _, ex := range p.Items {
			if ex.ID.Time().Before(since) {
				return out, total, nil
			}
			total++
			if keep(ex) {
				out = append(out, ex)
			}
		}
		if p.Next == "" {
			return out, total, nil
		}
		q.Cursor = p.Next
	}
}
