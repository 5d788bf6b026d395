package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// TestStorageHealthGatesReadiness: a node whose data dir has less free
// space than min_free_disk starts, stays alive, and is not ready: /readyz
// and webhooks answer 503 naming the data dir, its free bytes and the
// minimum. Restarted on the same data dir with a normal minimum it is ready
// again, with every record it had.
func TestStorageHealthGatesReadiness(t *testing.T) {
	pack := writePack(t, "hooks", map[string]string{
		"rules/on_hook.yaml": "name: on_hook\ntrigger: {type: core.webhook, parameters: {url: hook}}\naction: {ref: core.noop}\n",
	})
	n := StartNode(t, "n1", WithPacks(pack))
	ctx := t.Context()
	evID, err := n.Client.Webhook(ctx, "hook", map[string]any{"before": true})
	if err != nil {
		t.Fatal(err)
	}
	exID := executionOf(t, n, evID).ID.String()
	n.WaitExecution(exID, domain.StatusSucceeded, 10*time.Second)
	n.Stop()

	normal := n.args
	n.args = append(slices.Clip(normal), "--min-free-disk", "1EiB")
	n.spawn()
	reason := []string{"data dir " + n.DataDir + " has ", " free (", " bytes), less than the minimum of 1EiB"}
	refused := func(what string, err error) error {
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Code != api.CodeNotReady {
			return fmt.Errorf("%s: %v, want 503 %s", what, err, api.CodeNotReady)
		}
		for _, part := range reason {
			if !strings.Contains(ae.Message, part) {
				return fmt.Errorf("%s: %q does not say %q", what, ae.Message, part)
			}
		}
		return nil
	}
	// Until recovery ends /readyz says "starting"; then it names the disk.
	waitFor(t, 30*time.Second, func() error { return refused("/readyz", n.Client.Ready(ctx)) })
	if err := n.Client.Healthz(ctx); err != nil {
		t.Errorf("/healthz of an unready node: %v, want 200", err)
	}
	if err := refused("POST /api/v1/webhooks/hook", func() error {
		_, err := n.Client.Webhook(ctx, "hook", map[string]any{"during": true})
		return err
	}()); err != nil {
		t.Error(err)
	}
	mfs := mustScrape(t, n)
	if got := total(mfs, "troupe_storage_healthy"); got != 0 {
		t.Errorf("troupe_storage_healthy = %v while unready, want 0", got)
	}
	if free, min := total(mfs, "troupe_storage_disk_free_bytes"), total(mfs, "troupe_storage_disk_free_min_bytes"); free <= 0 || free >= min {
		t.Errorf("troupe_storage_disk_free_bytes = %v, troupe_storage_disk_free_min_bytes = %v: want 0 < free < min", free, min)
	}
	if log := n.Log(); strings.Count(log, `msg="storage unhealthy`) != 1 {
		t.Errorf("want one warning that storage is unhealthy in the log:\n%s", log)
	}
	n.Stop()

	n.args = normal
	n.Restart()
	if got := total(mustScrape(t, n), "troupe_storage_healthy"); got != 1 {
		t.Errorf("troupe_storage_healthy = %v after the restart, want 1", got)
	}
	if ev, err := n.Client.Event(ctx, evID); err != nil || fmt.Sprint(ev.Payload["body"]) != "map[before:true]" {
		t.Errorf("event %s after the restart: %+v, %v", evID, ev, err)
	}
	n.WaitExecution(exID, domain.StatusSucceeded, time.Second)
	events, err := n.Client.Events(ctx, api.ListQuery{Trigger: "core.webhook"})
	if err != nil || len(events.Items) != 1 {
		t.Errorf("webhook events after the restart: %+v, %v; want only the one accepted before", events.Items, err)
	}
	after, err := n.Client.Webhook(ctx, "hook", map[string]any{"after": true})
	if err != nil {
		t.Fatalf("webhook after the restart: %v", err)
	}
	n.WaitExecution(executionOf(t, n, after).ID.String(), domain.StatusSucceeded, 10*time.Second)
}
