package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/internal/troupetest"
)

// scrape reads and parses the node's /metrics.
func scrape(t *testing.T, n *Node) (map[string]*dto.MetricFamily, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.Addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", n.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", n.Name, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics of %s: %w", n.Name, err)
	}
	return mfs, nil
}

func mustScrape(t *testing.T, n *Node) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := scrape(t, n)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// total sums the series of family name whose labels include want
// (name=value pairs): counter and gauge values, or a histogram's
// observation count. A family or series that is not there counts 0.
func total(mfs map[string]*dto.MetricFamily, name string, want ...string) float64 {
	var sum float64
	for _, m := range mfs[name].GetMetric() {
		if !troupetest.HasLabels(m, want...) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// expectation is how much one series (or sum of series) must have moved.
type expectation struct {
	name   string
	labels []string
	delta  float64
}

func (e expectation) String() string {
	return fmt.Sprintf("%s%v", e.name, e.labels)
}

const obsPack = `
name: hook
trigger:
  type: core.webhook
  parameters: {url: obs}
criteria:
  trigger.body.go: {type: equals, pattern: "yes"}
action:
  ref: obs.ok
`

// TestMetricsCountThePipeline runs ad-hoc executions (succeeding and
// failing) and webhook events (matching the rule and not), then checks
// that each counter and histogram moved by exactly the number of things
// that happened.
func TestMetricsCountThePipeline(t *testing.T) {
	pack := writePack(t, "obs", map[string]string{
		"actions/ok.yaml":  "name: ok\nruntime: shell\ncmd: echo ok\n",
		"actions/bad.yaml": "name: bad\nruntime: shell\ncmd: exit 3\n",
		"rules/hook.yaml":  obsPack,
	})
	n := StartNode(t, "n1", WithPacks(pack))
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	before := mustScrape(t, n)

	const adhocOK, adhocBad, matched, unmatched = 5, 2, 4, 3
	var ids []string
	for i := range adhocOK + adhocBad {
		action := "obs.ok"
		if i >= adhocOK {
			action = "obs.bad"
		}
		ex, err := n.Client.Run(ctx, action, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ex.ID.String())
	}
	for i := range matched + unmatched {
		body := map[string]any{"go": "yes", "i": i}
		if i >= matched {
			body["go"] = "no"
		}
		evID, err := n.Client.Webhook(ctx, "obs", body)
		if err != nil {
			t.Fatal(err)
		}
		if i < matched {
			ids = append(ids, executionOf(t, n, evID).ID.String())
		}
	}
	for _, id := range ids {
		ex, err := n.Client.Wait(ctx, id)
		if err != nil {
			t.Fatalf("wait for execution %s: %v", id, err)
		}
		want := domain.StatusSucceeded
		if ex.Action == "obs.bad" {
			want = domain.StatusFailed
		}
		if ex.Status != want {
			t.Fatalf("execution %s of %s is %s, want %s", id, ex.Action, ex.Status, want)
		}
	}

	finished := adhocOK + adhocBad + matched
	expect := []expectation{
		{"troupe_execution_finished_total", []string{"action", "obs.ok", "runtime", "shell", "status", "succeeded"}, adhocOK + matched},
		{"troupe_execution_finished_total", []string{"action", "obs.bad", "runtime", "shell", "status", "failed"}, adhocBad},
		{"troupe_execution_finished_total", nil, float64(finished)},
		{"troupe_events_ingested_total", []string{"trigger", "core.webhook"}, matched + unmatched},
		{"troupe_rule_evaluations_total", []string{"rule", "obs.hook", "result", "matched"}, matched},
		{"troupe_rule_evaluations_total", []string{"rule", "obs.hook", "result", "unmatched"}, unmatched},
		{"troupe_rule_evaluations_total", []string{"rule", "obs.hook", "result", "error"}, 0},
		{"troupe_rule_enforcements_total", []string{"rule", "obs.hook", "result", "succeeded"}, matched},
		{"troupe_execution_run_seconds", []string{"runtime", "shell"}, float64(finished)},
		{"troupe_execution_schedule_to_start_seconds", []string{"runtime", "shell"}, float64(finished)},
		{"troupe_execution_event_to_completion_seconds", []string{"runtime", "shell"}, float64(finished)},
		{"troupe_http_requests_total", []string{"route", "POST /api/v1/executions", "code", "201"}, adhocOK + adhocBad},
		{"troupe_http_requests_total", []string{"route", "POST /api/v1/webhooks/{name}", "code", "202"}, matched + unmatched},
		{"troupe_placement_failures_total", nil, 0},
		{"troupe_execution_retries_total", nil, 0},
	}
	// The completion dispatcher updates the metrics shortly after the
	// terminal transition: wait until every count is reached, and fail at
	// once on any overshoot.
	var after map[string]*dto.MetricFamily
	waitFor(t, 15*time.Second, func() error {
		var err error
		if after, err = scrape(t, n); err != nil {
			return err
		}
		var behind []string
		for _, e := range expect {
			got := total(after, e.name, e.labels...) - total(before, e.name, e.labels...)
			if got > e.delta {
				t.Fatalf("%s moved by %v, want %v", e, got, e.delta)
			}
			if got < e.delta {
				behind = append(behind, fmt.Sprintf("%s moved by %v, want %v", e, got, e.delta))
			}
		}
		if len(behind) > 0 {
			return fmt.Errorf("%s", strings.Join(behind, "; "))
		}
		return nil
	})
	// Nothing is left in flight, and the histograms hold real durations.
	if got := total(after, "troupe_executions_in_flight"); got != 0 {
		t.Errorf("troupe_executions_in_flight sums to %v after every execution finished", got)
	}
	if _, ok := after["troupe_executions_in_flight"]; !ok {
		t.Error("troupe_executions_in_flight is not exported (is the storage collector registered?)")
	}
	for _, name := range []string{"troupe_execution_run_seconds", "troupe_execution_event_to_completion_seconds"} {
		for _, m := range after[name].GetMetric() {
			h := m.GetHistogram()
			if h.GetSampleCount() > 0 && (h.GetSampleSum() <= 0 || h.GetSampleSum() > float64(h.GetSampleCount())*10) {
				t.Errorf("%s: %d observations summing to %vs; shell echo runs take milliseconds", name, h.GetSampleCount(), h.GetSampleSum())
			}
		}
	}
}

// metricName finds the names of metrics in a PromQL expression: Troupe's,
// the Go and process collectors', and Prometheus' own up.
var metricName = regexp.MustCompile(`\b(?:(?:troupe|go|process)_[a-z0-9_]+|up)\b`)

// selectorName finds names followed by a label matcher or a range: any
// metric a query selects that way must also be one metricName finds, so
// that, say, a node_exporter metric cannot slip past the check.
var selectorName = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]`)

// prometheusOwn are series Prometheus makes itself, not scraped from nodes.
var prometheusOwn = map[string]bool{"up": true}

// dashPanel is what the tests read of a Grafana panel.
type dashPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Panels []dashPanel `json:"panels"`
}

// deployQueries returns every PromQL expression of the shipped dashboard
// (panel targets and template variables) and alert rules, by where it is.
func deployQueries(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	raw, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "troupe.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels     []dashPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana/troupe.json: %v", err)
	}
	var panels []dashPanel
	for _, p := range dash.Panels {
		panels = append(append(panels, p), p.Panels...) // a collapsed row holds its panels
	}
	for _, p := range panels {
		for i, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("dashboard panel %q: target %d has no expr", p.Title, i)
			}
			out[fmt.Sprintf("dashboard panel %q target %d", p.Title, i)] = tg.Expr
		}
		if len(p.Targets) > 0 && p.Datasource.UID != "${datasource}" {
			t.Errorf("dashboard panel %q uses datasource %q, want the ${datasource} variable", p.Title, p.Datasource.UID)
		}
	}
	vars := map[string]bool{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
		if q, ok := v.Query.(map[string]any); ok && v.Type == "query" {
			out[fmt.Sprintf("dashboard variable %s", v.Name)] = fmt.Sprint(q["query"])
		}
	}
	if !vars["datasource"] || !vars["node"] {
		t.Errorf("dashboard variables %v, want datasource and node", vars)
	}

	raw, err = os.ReadFile(filepath.Join("..", "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("deploy/prometheus/alerts.yml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	return out
}

// TestDashboardAndAlertsUseExportedMetrics: every metric the shipped
// dashboard and alert rules query is exported by running nodes. A
// two-node cluster is made to do everything that creates a labelled
// series: a member joining, webhook and timer events, an action that fails
// and retries, one whose runtime no member offers, and a script sensor
// that keeps exiting. Only troupe_delivery_duplicates_total cannot be
// caused from outside, so neither the dashboard nor the alerts use it.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	queries := deployQueries(t)
	wanted := map[string][]string{} // metric → where it is used
	for where, expr := range queries {
		for _, m := range selectorName.FindAllStringSubmatch(expr, -1) {
			if !metricName.MatchString(m[1]) || metricName.FindString(m[1]) != m[1] {
				t.Errorf("%s selects %s, which is not a Troupe, Go, process or up metric: %s", where, m[1], expr)
			}
		}
		for _, name := range metricName.FindAllString(expr, -1) {
			if !slices.Contains(wanted[name], where) {
				wanted[name] = append(wanted[name], where)
			}
		}
	}
	if len(wanted) < 20 {
		t.Fatalf("found only %d metric names in the dashboard and alerts: %v", len(wanted), wanted)
	}

	pack := writePack(t, "probe", map[string]string{
		"actions/flaky.yaml": "name: flaky\nruntime: shell\ncmd: exit 1\nretry: {count: 1, on: [failed], delay: 0.1}\n",
		"actions/py.yaml":    "name: py\nruntime: python\nentry_point: py.py\n",
		"actions/py.py":      "print('never runs here')\n",
		"rules/hook.yaml":    "name: hook\ntrigger:\n  type: core.webhook\n  parameters: {url: probe}\naction:\n  ref: probe.flaky\n",
		"rules/tick.yaml":    "name: tick\ntrigger:\n  type: core.intervaltimer\n  parameters: {unit: seconds, delta: 1}\naction:\n  ref: core.noop\n",
		"triggers/flap.yaml": "name: flap\npayload_schema: {type: object}\n",
		"sensors/flap.yaml":  "name: flap\nruntime: shell\nentry_point: flap.sh\ntrigger_types: [probe.flap]\n",
		"sensors/flap.sh":    "#!/bin/sh\nsleep 0.5\nexit 1\n",
	})
	// Two members, so that membership changes happen; neither offers
	// python, so probe.py cannot be placed.
	seed := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	common := []string{"--runtimes", "shell,builtin", "--placement-timeout", "1s"}
	n1 := StartNode(t, "n1", WithPacks(pack), WithArgs(append(common, "--gossip-addr", seed)...))
	n2 := StartNode(t, "n2", WithPacks(pack), WithArgs(append(common, "--join", seed)...))
	nodes := []*Node{n1, n2}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := n1.Client.Webhook(ctx, "probe", map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	ex, err := n1.Client.Run(ctx, "probe.py", nil)
	if err != nil {
		t.Fatal(err)
	}
	n1.WaitExecution(ex.ID.String(), domain.StatusFailed, 15*time.Second)

	// Prometheus sees the union of the nodes' series; so does this test.
	waitFor(t, 30*time.Second, func() error {
		var scrapes []map[string]*dto.MetricFamily
		for _, n := range nodes {
			mfs, err := scrape(t, n)
			if err != nil {
				return err
			}
			scrapes = append(scrapes, mfs)
		}
		var missing []string
		for name, where := range wanted {
			if prometheusOwn[name] || slices.ContainsFunc(scrapes, func(mfs map[string]*dto.MetricFamily) bool { return exported(mfs, name) }) {
				continue
			}
			slices.Sort(where)
			missing = append(missing, fmt.Sprintf("%s (used by %s)", name, strings.Join(where, ", ")))
		}
		slices.Sort(missing)
		if len(missing) > 0 {
			return fmt.Errorf("exported by no node: %s", strings.Join(missing, "; "))
		}
		return nil
	})
}

// exported says whether a scrape holds the metric: a family of that name
// with a series, or for name_bucket, name_count and name_sum a histogram
// (or summary, for the last two) family named name.
func exported(mfs map[string]*dto.MetricFamily, name string) bool {
	if mf, ok := mfs[name]; ok && len(mf.GetMetric()) > 0 {
		return true
	}
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		mf, ok := mfs[base]
		if !ok || len(mf.GetMetric()) == 0 {
			return false
		}
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			return true
		case dto.MetricType_SUMMARY:
			return suffix != "_bucket"
		}
	}
	return false
}

// TestThreeNodeExampleConfigsCheck: the example configs in
// deploy/examples/three-nodes pass --check-config, run from the
// repository root as their comments say.
func TestThreeNodeExampleConfigsCheck(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "deploy", "examples", "three-nodes", "*.yaml"))
	if err != nil || len(files) != 3 {
		t.Fatalf("example configs %v (%v), want n1.yaml, n2.yaml, n3.yaml", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, "agent", "--config", strings.TrimPrefix(f, "../"), "--check-config")
			cmd.Dir = ".."
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "configuration ok") {
				t.Fatalf("troupe agent --config %s --check-config: %v\n%s", f, err, out)
			}
		})
	}
}

// TestAgentRunsTheCollectorAtItsTarget checks the agent's GOGC: its own
// target unless the environment names one, which it keeps.
func TestAgentRunsTheCollectorAtItsTarget(t *testing.T) {
	gogc := func(n *Node) float64 {
		t.Helper()
		mf := mustScrape(t, n)["go_gc_gogc_percent"]
		if mf == nil || len(mf.GetMetric()) != 1 {
			t.Fatalf("node %s exports no go_gc_gogc_percent", n.Name)
		}
		return mf.GetMetric()[0].GetGauge().GetValue()
	}
	if got := gogc(StartNode(t, "n1", WithEnv("GOGC=120"))); got != 120 {
		t.Errorf("with GOGC=120 the collector's target is %g", got)
	}
	if _, set := os.LookupEnv("GOGC"); set {
		t.Skip("GOGC is set for the tests, and an agent keeps it")
	}
	if got := gogc(StartNode(t, "n2")); got != 150 {
		t.Errorf("without GOGC the collector's target is %g, want the agent's 150", got)
	}
}
