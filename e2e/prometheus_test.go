package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/troupehq/troupe/internal/troupetest"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troupehq/troupe/domain"
)

// promServer is a real Prometheus started for one test.
type promServer struct {
	t    *testing.T
	addr string // http://127.0.0.1:PORT
	cmd  *exec.Cmd
	log  troupetest.Buffer
}

// startPrometheus starts the prometheus binary from PATH with config (the
// YAML text of prometheus.yml) on a free loopback port and a TSDB in a
// temporary dir, waits until it is ready, and kills it when the test ends.
func startPrometheus(t *testing.T, config string) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not on PATH: run `make prometheus` (it installs Debian's prometheus package)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	p := &promServer{t: t, addr: fmt.Sprintf("http://127.0.0.1:%d", port)}
	p.cmd = exec.Command(bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+fmt.Sprintf("127.0.0.1:%d", port),
		"--log.level=warn",
	)
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("prometheus (pid %d) did not exit within 10s of SIGKILL", p.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("--- log of prometheus ---\n%s", p.log.String())
		}
	})
	waitFor(t, 30*time.Second, func() error {
		select {
		case <-exited:
			t.Fatalf("prometheus exited during start: %v\n%s", p.cmd.ProcessState, p.log.String())
		default:
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.addr+"/-/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("prometheus not ready: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("prometheus not ready: %s", resp.Status)
		}
		return nil
	})
	return p
}

// apiResponse is the envelope of Prometheus' HTTP API.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

// api GETs path (with query) from Prometheus' HTTP API and decodes its data.
func (p *promServer) api(path string, query url.Values, data any) error {
	ctx, cancel := context.WithTimeout(p.t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.addr+path+"?"+query.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("GET %s: %s: %w", path, resp.Status, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("GET %s %v: %s: %s", path, query, r.ErrorType, r.Error)
	}
	return json.Unmarshal(r.Data, data)
}

// sample is one element of an instant vector.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // [unix time, "value"]
}

// query evaluates expr now and returns the instant vector.
func (p *promServer) query(expr string) ([]sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, nil // scalars and strings: parsed and evaluated, nothing to read here
	}
	var v []sample
	return v, json.Unmarshal(data.Result, &v)
}

func (s sample) value() float64 {
	f, _ := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
	return f
}

// TestPrometheusScrapesANode: a real Prometheus, loading the shipped alert
// rules, scrapes a real node every second; after K executions its HTTP API
// answers sum(troupe_execution_finished_total) == K. Every query of the
// shipped dashboard then evaluates without error, and every alert rule
// evaluates healthy.
func TestPrometheusScrapesANode(t *testing.T) {
	pack := writePack(t, "prom", map[string]string{
		"actions/ok.yaml": "name: ok\nruntime: shell\ncmd: echo ok\n",
	})
	n := StartNode(t, "n1", WithPacks(pack))
	alerts, err := filepath.Abs(filepath.Join("..", "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	target := strings.TrimPrefix(n.Addr, "http://")
	p := startPrometheus(t, fmt.Sprintf(`
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: troupe
    static_configs:
      - targets: [%q]
        labels: {node: %s}
`, alerts, target, n.Name))

	// Prometheus scrapes the node: up is 1 with the node label.
	waitFor(t, 30*time.Second, func() error {
		v, err := p.query(`up{job="troupe"}`)
		if err != nil {
			return err
		}
		if len(v) != 1 || v[0].value() != 1 || v[0].Metric["node"] != n.Name {
			return fmt.Errorf("up{job=\"troupe\"} is %+v, want one series of value 1 with node=%s", v, n.Name)
		}
		return nil
	})

	const k = 7
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for range k {
		ex, err := n.Client.Run(ctx, "prom.ok", nil)
		if err != nil {
			t.Fatal(err)
		}
		if ex, err = n.Client.Wait(ctx, ex.ID.String()); err != nil || ex.Status != domain.StatusSucceeded {
			t.Fatalf("execution %v: %v", ex, err)
		}
	}
	waitFor(t, 60*time.Second, func() error {
		v, err := p.query(`sum(troupe_execution_finished_total)`)
		if err != nil {
			return err
		}
		if len(v) != 1 {
			return fmt.Errorf("sum(troupe_execution_finished_total) is %+v, want %d", v, k)
		}
		if got := v[0].value(); got != k {
			if got > k {
				t.Fatalf("sum(troupe_execution_finished_total) = %v, more than the %d executions run", got, k)
			}
			return fmt.Errorf("sum(troupe_execution_finished_total) = %v, want %d", got, k)
		}
		return nil
	})
	v, err := p.query(`sum by (action, status) (troupe_execution_finished_total)`)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Metric["action"] != "prom.ok" || v[0].Metric["status"] != "succeeded" || v[0].value() != k {
		t.Errorf("finished by action and status: %+v, want prom.ok succeeded %d", v, k)
	}

	// The dashboard's queries, with its variables filled in, all evaluate.
	queries, alertRules := deployQueries(t), 0
	for where, expr := range queries {
		if strings.HasPrefix(where, "alert ") {
			alertRules++
			continue // the rules below are evaluated by Prometheus itself
		}
		expr = strings.NewReplacer("$__rate_interval", "1m", "$node", ".*").Replace(expr)
		if strings.HasPrefix(expr, "label_values(") { // a Grafana function: its selector is the query
			expr = strings.TrimSuffix(strings.SplitN(strings.TrimPrefix(expr, "label_values("), ", ", 2)[0], ")")
		}
		if _, err := p.query(expr); err != nil {
			t.Errorf("%s: %s: %v", where, expr, err)
		}
	}

	// Every shipped alert rule is loaded and evaluates without error.
	waitFor(t, 30*time.Second, func() error {
		var data struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name           string `json:"name"`
					Health         string `json:"health"`
					LastError      string `json:"lastError"`
					LastEvaluation string `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := p.api("/api/v1/rules", url.Values{"type": {"alert"}}, &data); err != nil {
			return err
		}
		var rules int
		var problems []string
		for _, g := range data.Groups {
			for _, r := range g.Rules {
				rules++
				if r.Health != "ok" {
					problems = append(problems, fmt.Sprintf("%s/%s: health %q %s", g.Name, r.Name, r.Health, r.LastError))
				}
			}
		}
		if rules != alertRules {
			return fmt.Errorf("%d alert rules loaded from %s, want %d", rules, alerts, alertRules)
		}
		if len(problems) > 0 {
			return fmt.Errorf("%d rules, not healthy: %s", rules, strings.Join(problems, "; "))
		}
		t.Logf("%d dashboard queries evaluated, %d alert rules healthy", len(queries)-alertRules, rules)
		return nil
	})
}
