package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// TestClusterSameJoinListEverywhere: three nodes are each given the same
// --join list, all three gossip addresses, as one config file shared by the
// cluster would give them. Whatever the order and pace of their starts,
// each node starts (one whose seeds are not up runs alone and retries
// them), and every node soon lists all three alive. Six 1-second timers,
// each its own sensor grain, run wherever disthash places them: a node
// still alone with its seeds unanswered fires none of them, and over the
// whole test, merges and the grain moves they cause included, no tick ran
// twice.
func TestClusterSameJoinListEverywhere(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T, c *Cluster, ledgers []string)
	}{
		{"one after the other", func(t *testing.T, c *Cluster, _ []string) {
			for _, n := range c.Nodes {
				c.Start(n)
			}
		}},
		{"first node alone for a while", func(t *testing.T, c *Cluster, ledgers []string) {
			n1 := c.Node("n1")
			c.Start(n1)
			// Alone with two seeds unanswered, n1 is 1 of 3: its timers
			// are placed on it but must not tick.
			waitFor(t, 10*time.Second, func() error {
				if !strings.Contains(n1.Log(), "not yet joined any of its seeds") {
					return fmt.Errorf("n1 has not skipped a tick as not yet joined")
				}
				return nil
			})
			time.Sleep(5 * time.Second)
			for _, l := range ledgers {
				if ticks := readLines(t, l); len(ticks) > 0 {
					t.Errorf("n1, alone, ran ticks %v", ticks)
				}
			}
			for _, want := range []string{"no seed answered; running alone", c.Node("n2").GossipAddr, c.Node("n3").GossipAddr} {
				if !strings.Contains(n1.Log(), want) {
					t.Errorf("n1's log does not say %q", want)
				}
			}
			// Alone, n1 is not ready, naming the seeds it waits for, yet
			// it takes and runs work as a cluster of one.
			err := n1.Client.Ready(t.Context())
			if ae, ok := errors.AsType[*api.Error](err); !ok || ae.Status != http.StatusServiceUnavailable || ae.Code != api.CodeNotReady {
				t.Errorf("n1's /readyz while alone: %#v; want 503 %s", err, api.CodeNotReady)
			}
			for _, want := range []string{notJoined, c.Node("n2").GossipAddr, c.Node("n3").GossipAddr} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("n1's /readyz while alone: %v; want it to say %q", err, want)
				}
			}
			if got := total(mustScrape(t, n1), "troupe_cluster_seeds_unanswered"); got != 2 {
				t.Errorf("n1 alone exports troupe_cluster_seeds_unanswered %v, want its 2 seeds", got)
			}
			run, err := n1.Client.Run(t.Context(), "core.noop", nil)
			if err != nil {
				t.Fatalf("run on n1 while alone: %v", err)
			}
			n1.WaitExecution(run.ID.String(), domain.StatusSucceeded, 10*time.Second)
			c.Start(c.Node("n2"))
			c.Start(c.Node("n3"))
		}},
		{"all at once", func(t *testing.T, c *Cluster, _ []string) {
			for _, n := range c.Nodes {
				c.Spawn(n)
			}
			for _, n := range c.Nodes {
				c.WaitReady(n)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ledgers := make([]string, 6)
			for i := range ledgers {
				ledgers[i] = filepath.Join(dir, fmt.Sprintf("ledger%d", i+1))
			}
			c := NewCluster(t, 3, WithClusterArgs("--packs", timerPack(t, ledgers[0], ledgers[1:]...)))
			began := time.Now()
			tc.start(t, c, ledgers)
			started := time.Now()
			c.WaitAllAlive(20 * time.Second)
			t.Logf("all three list each other alive %s after the last node was ready (%s after the first start)",
				time.Since(started).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
			for _, n := range c.Nodes {
				if line := logLine(n, "joined the cluster"); line != "" {
					t.Logf("%s started alone, then: %s", n.Name, line)
				}
				// Joined, every node is ready: Start waited only until it
				// took work, alone or not.
				waitFor(t, 5*time.Second, func() error { return n.Client.Ready(t.Context()) })
				if got := total(mustScrape(t, n), "troupe_cluster_seeds_unanswered"); got != 0 {
					t.Errorf("%s, joined, exports troupe_cluster_seeds_unanswered %v, want 0", n.Name, got)
				}
				out, code := troupe(t, n, "members")
				if code != 0 || strings.Count(out, "alive") != 3 || !strings.Contains(out, n.Name+" (self)") {
					t.Errorf("`troupe members` on %s exited %d:\n%s\nwant three members alive", n.Name, code, out)
				}
			}

			time.Sleep(6 * time.Second) // ticks with all three members, after the last moves
			moved := 0
			for i, l := range ledgers {
				rule := "tick.every"
				if i > 0 {
					rule = fmt.Sprintf("tick.every%d", i+1)
				}
				owners, err := tickOwners(t, c.Node("n1"), rule)
				if err != nil {
					t.Fatal(err)
				}
				if len(owners) == 0 {
					t.Errorf("%s never ticked", rule)
				}
				seq := ownersSince(owners, began)
				if len(seq) > 1 {
					moved++
				}
				t.Logf("%s: ticks owned by %v in turn", rule, seq)
				checkTicksOnce(t, l, owners)
			}
			t.Logf("%d of %d timers moved between nodes while ticking", moved, len(ledgers))
		})
	}
}

// logLine is the first line of n's log that contains s, "" if none does.
func logLine(n *Node, s string) string {
	for _, l := range strings.Split(n.Log(), "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
