package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/packs"
)

// shippedPack is a pack whose action prints the path of the script it ran
// and a version mark, and whose rule runs it on webhook "shipped".
func shippedPack(t *testing.T, version, mark string) []byte {
	t.Helper()
	dir := writePack(t, "shipped", map[string]string{
		"actions/where.yaml": "name: where\nruntime: shell\nentry_point: where.sh\n",
		"actions/where.sh":   "#!/bin/sh\necho \"" + mark + " $0\"\n",
		"rules/hook.yaml":    "name: hook\ntrigger: {type: core.webhook, parameters: {url: shipped}}\naction: {ref: shipped.where}\n",
	})
	if err := os.WriteFile(filepath.Join(dir, "pack.yaml"), []byte("ref: shipped\nversion: "+version+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	archive, err := packs.Archive(dir)
	if err != nil {
		t.Fatal(err)
	}
	return archive
}

// waitPackEverywhere waits until node n reports every live member holding
// pack ref with the given hash, and returns how long that took.
func waitPackEverywhere(t *testing.T, c *Cluster, n *Node, ref, hash string, within time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	waitFor(t, within, func() error {
		p, err := n.Client.Pack(t.Context(), ref)
		if err != nil {
			return err
		}
		if p.Hash != hash {
			return fmt.Errorf("%s runs %s %s (hash %.12s), want hash %.12s", n.Name, ref, p.Version, p.Hash, hash)
		}
		got := map[string]string{}
		for _, m := range p.Members {
			got[m.Node] = m.State
		}
		for _, live := range c.Live() {
			if got[live.Name] != "same" {
				return fmt.Errorf("members of %s per %s: %v", ref, n.Name, got)
			}
		}
		return nil
	})
	return time.Since(began)
}

// runWhere runs shipped.where through node n and checks the script ran from
// the unpacked copy of the member that ran it, printing mark.
func runWhere(t *testing.T, c *Cluster, n *Node, mark string) *api.ExecutionView {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ex, err := n.Client.Run(ctx, "shipped.where", nil)
	if err != nil {
		t.Fatalf("run shipped.where on %s: %v", n.Name, err)
	}
	if ex, err = n.Client.Wait(ctx, ex.ID.String()); err != nil {
		t.Fatal(err)
	}
	checkWhere(t, c, ex, mark)
	return ex
}

func checkWhere(t *testing.T, c *Cluster, ex *api.ExecutionView, mark string) {
	t.Helper()
	if ex.Status != domain.StatusSucceeded || ex.Result == nil {
		t.Fatalf("execution %s: %s %q", ex.ID, ex.Status, ex.Error)
	}
	out := strings.TrimSpace(ex.Result.Stdout)
	worker := c.Node(ex.Worker)
	if !strings.HasPrefix(out, mark+" "+filepath.Join(worker.DataDir, "packs")) {
		t.Fatalf("execution %s on %s printed %q, want %q and a script under %s's own data dir %s", ex.ID, ex.Worker, out, mark, worker.Name, worker.DataDir)
	}
}

// TestClusterPackLoadedOnOneRunsOnAnother: a pack installed on n1 through
// the API becomes active on every member (its rule fires on n3, its script
// runs from each member's own copy); a member that joins later catches up;
// an upgrade from another member replaces it everywhere; a restarted member
// keeps it; removing it removes it everywhere.
func TestClusterPackLoadedOnOneRunsOnAnother(t *testing.T) {
	c := StartCluster(t, 3)
	n1, n2, n3 := c.Node("n1"), c.Node("n2"), c.Node("n3")

	v1 := shippedPack(t, "1.0.0", "v1")
	p, changed, err := n1.Client.InstallPack(t.Context(), v1)
	if err != nil || !changed {
		t.Fatalf("install on n1: changed %v, %v", changed, err)
	}
	took := waitPackEverywhere(t, c, n2, "shipped", p.Hash, 15*time.Second)
	t.Logf("pack installed on n1 active on all 3 members after %s", took.Round(time.Millisecond))
	if p.Source != "api" {
		t.Errorf("source %q, want api", p.Source)
	}
	if _, changed, err := n2.Client.InstallPack(t.Context(), v1); err != nil || changed {
		t.Errorf("installing the same files again on n2: changed %v, %v; want unchanged", changed, err)
	}

	// The rule fires on n3 and the action runs from the runner's own copy.
	evID, err := n3.Client.Webhook(t.Context(), "shipped", map[string]any{})
	if err != nil {
		t.Fatalf("webhook on n3: %v", err)
	}
	checkWhere(t, c, n3.WaitExecution(executionOf(t, n3, evID).ID.String(), domain.StatusSucceeded, 10*time.Second), "v1")
	for range 4 {
		runWhere(t, c, n3, "v1")
	}

	n4 := c.AddNode("n4")
	took = waitPackEverywhere(t, c, n4, "shipped", p.Hash, 20*time.Second)
	t.Logf("n4, joining later, caught up after %s", took.Round(time.Millisecond))
	runWhere(t, c, n4, "v1")

	v2 := shippedPack(t, "2.0.0", "v2")
	p2, changed, err := n2.Client.InstallPack(t.Context(), v2)
	if err != nil || !changed || p2.Version != "2.0.0" {
		t.Fatalf("upgrade on n2: %+v changed %v, %v", p2, changed, err)
	}
	took = waitPackEverywhere(t, c, n1, "shipped", p2.Hash, 15*time.Second)
	t.Logf("upgrade installed on n2 active on all 4 members after %s", took.Round(time.Millisecond))
	runWhere(t, c, n1, "v2")

	c.Restart(n3)
	if p, err := n3.Client.Pack(t.Context(), "shipped"); err != nil || p.Hash != p2.Hash {
		t.Fatalf("n3 restarted on its data dir: shipped %+v, %v; want version 2.0.0", p, err)
	}

	if err := n3.Client.RemovePack(t.Context(), "shipped"); err != nil {
		t.Fatalf("remove on n3: %v", err)
	}
	waitFor(t, 15*time.Second, func() error {
		for _, n := range c.Live() {
			_, err := n.Client.Webhook(t.Context(), "shipped", map[string]any{})
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Code != api.CodeNotFound {
				return fmt.Errorf("webhook shipped on %s after removal: %v", n.Name, err)
			}
			if _, err := n.Client.Pack(t.Context(), "shipped"); !errors.As(err, &ae) || ae.Code != api.CodeNotFound {
				return fmt.Errorf("pack shipped on %s after removal: %v", n.Name, err)
			}
		}
		return nil
	})
}

// TestPackUploadErrorsNameTheProblem: a pack that does not load is refused
// with the file, line and field at fault, and nothing is installed.
func TestPackUploadErrorsNameTheProblem(t *testing.T) {
	n := StartNode(t, "p1")
	dir := writePack(t, "broken", map[string]string{
		"rules/r.yaml": "name: r\ntrigger: {type: core.webhook, parameters: {url: b}}\naction: {ref: core.nope}\n",
	})
	archive, err := packs.Archive(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = n.Client.InstallPack(t.Context(), archive)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 422 || ae.Code != api.CodeInvalidPack ||
		!strings.Contains(ae.Message, `rules/r.yaml:3`) || !strings.Contains(ae.Message, `unknown action "core.nope"`) {
		t.Fatalf("installing a broken pack: %v; want 422 invalid_pack naming rules/r.yaml:3 and the action", err)
	}
	if _, err := n.Client.Pack(t.Context(), "broken"); !errors.As(err, &ae) || ae.Code != api.CodeNotFound {
		t.Fatalf("the refused pack is listed: %v", err)
	}
	if _, _, err := n.Client.InstallPack(t.Context(), []byte("not a tarball")); !errors.As(err, &ae) || ae.Code != api.CodeInvalidPack {
		t.Fatalf("installing garbage: %v", err)
	}
}
