package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/domain"
)

// TestClusterMembersListEachOther: three nodes joined by gossip each list
// all three alive, with the roles, runtimes, slots and addresses every node
// was started with, and themselves marked; `troupe members` shows the same.
func TestClusterMembersListEachOther(t *testing.T) {
	c := StartCluster(t, 3,
		WithNodeArgs("n1", "--slots", "2"),
		WithNodeArgs("n2", "--slots", "3", "--roles", "worker,api", "--runtimes", "shell,builtin"),
		WithNodeArgs("n3", "--slots", "4", "--roles", "sensor,rule,api", "--runtimes", "builtin"))
	type want struct {
		roles, runtimes []string
		slots           int
	}
	wants := map[string]want{
		"n1": {[]string{"api", "rule", "sensor", "worker"}, nil, 2}, // runtimes: detected, checked below
		"n2": {[]string{"api", "worker"}, []string{"builtin", "shell"}, 3},
		"n3": {[]string{"api", "rule", "sensor"}, []string{"builtin"}, 4},
	}
	for _, n := range c.Nodes {
		for _, m := range c.Members(n) {
			w, node := wants[m.Name], c.Node(m.Name)
			roles, rts := slices.Sorted(slices.Values(m.Roles)), slices.Sorted(slices.Values(m.Runtimes))
			if m.Status != "alive" || !slices.Equal(roles, w.roles) || m.Slots != w.slots || m.SlotsUsed != 0 ||
				m.SlotsFree != w.slots || m.Self != (m.Name == n.Name) {
				t.Errorf("%s lists %+v; want alive, roles %v, %d slots all free, self=%v", n.Name, m, w.roles, w.slots, m.Name == n.Name)
			}
			if w.runtimes != nil && !slices.Equal(rts, w.runtimes) {
				t.Errorf("%s lists %s with runtimes %v, want %v", n.Name, m.Name, rts, w.runtimes)
			}
			if w.runtimes == nil && (!slices.Contains(rts, "shell") || !slices.Contains(rts, "builtin")) {
				t.Errorf("%s lists %s with runtimes %v, want at least the detected shell and builtin", n.Name, m.Name, rts)
			}
			if "http://"+m.APIAddr != node.Addr || m.GossipAddr != node.GossipAddr || m.RemoteAddr != node.RemoteAddr {
				t.Errorf("%s lists %s at api %s gossip %s remote %s; it runs at %s, %s, %s", n.Name, m.Name,
					m.APIAddr, m.GossipAddr, m.RemoteAddr, node.Addr, node.GossipAddr, node.RemoteAddr)
			}
		}
	}
	out, code := troupe(t, c.Node("n2"), "members")
	if code != 0 || !strings.Contains(out, "n2 (self)") || !strings.Contains(out, "n1") || !strings.Contains(out, "n3") ||
		strings.Count(out, "alive") != 3 {
		t.Errorf("`troupe members` on n2 exited %d:\n%s\nwant n1, n2 (self) and n3, all alive", code, out)
	}
}

// TestClusterPlacesByRuntime: only n3 advertises python, so every python
// execution created on n1 runs on n3; an execution of a runtime no member
// has waits in requested, then fails after the placement timeout naming
// the runtimes the cluster does have.
func TestClusterPlacesByRuntime(t *testing.T) {
	pack := writePack(t, "rt", map[string]string{
		"actions/where.yaml": "name: where\nruntime: python\nentry_point: where.py\n",
		"actions/where.py":   "import json, sys\nprint(json.dumps({\"python\": sys.version_info[0]}))\n",
		"actions/gem.yaml":   "name: gem\nruntime: ruby\nentry_point: gem.rb\n",
		"actions/gem.rb":     "puts 'never'\n",
	})
	c := StartCluster(t, 3, WithClusterArgs("--packs", pack, "--placement-timeout", "3s"),
		WithNodeArgs("n1", "--runtimes", "shell,builtin"),
		WithNodeArgs("n2", "--runtimes", "shell,builtin"),
		WithNodeArgs("n3", "--runtimes", "python,shell,builtin"))
	if w := c.NodeWithRuntime("python"); w.Name != "n3" {
		t.Fatalf("python is advertised by %s, want n3", w.Name)
	}
	n1 := c.Node("n1")

	ids := make([]string, 6)
	for i := range ids {
		ex, err := n1.Client.Run(t.Context(), "rt.where", nil)
		if err != nil {
			t.Fatalf("run rt.where on n1: %v", err)
		}
		ids[i] = ex.ID.String()
	}
	for _, id := range ids {
		ex := n1.WaitExecution(id, domain.StatusSucceeded, 20*time.Second)
		if ex.Worker != "n3" || ex.Node != "n1" || ex.Result == nil || !strings.Contains(ex.Result.Stdout, `"python": 3`) {
			t.Errorf("execution %s ran on worker %q owned by %q with result %+v; want worker n3, owner n1, python's output",
				id, ex.Worker, ex.Node, ex.Result)
		}
	}

	ex, err := n1.Client.Run(t.Context(), "rt.gem", nil)
	if err != nil {
		t.Fatalf("run rt.gem on n1: %v", err)
	}
	id := ex.ID.String()
	if ex.Status != domain.StatusRequested {
		t.Errorf("execution %s of a runtime nobody has was created %s, want requested", id, ex.Status)
	}
	ex = n1.WaitExecution(id, domain.StatusFailed, 10*time.Second)
	// It waited in requested the whole time: its history goes from
	// requested straight to failed.
	var steps []domain.Status
	for _, h := range ex.History {
		steps = append(steps, h.Status)
	}
	if !slices.Equal(steps, []domain.Status{domain.StatusRequested, domain.StatusFailed}) {
		t.Errorf("execution %s went through %v, want requested then failed", id, steps)
	}
	const wantErr = `no member runs runtime "ruby" (cluster runtimes: builtin, python, shell)`
	if !strings.Contains(ex.Error, wantErr) {
		t.Errorf("failed with %q, want it to say %q", ex.Error, wantErr)
	}
	if ex.FinishedAt == nil {
		t.Fatalf("failed execution %s has no finish time", id)
	}
	waited := ex.FinishedAt.Sub(ex.CreatedAt)
	if waited < 3*time.Second || waited > 6*time.Second {
		t.Errorf("failed %s after creation, want about the 3s placement timeout", waited)
	}
	t.Logf("ruby execution failed %s after creation (placement timeout 3s): %s", waited.Round(time.Millisecond), ex.Error)
}

// TestClusterPrefersTheLocalWorker: an execution runs on the worker of the
// node that created it while that worker reports at least as many free
// slots as the others, and elsewhere when it reports fewer.
func TestClusterPrefersTheLocalWorker(t *testing.T) {
	pack := writePack(t, "loc", map[string]string{"actions/quick.yaml": "name: quick\nruntime: shell\ncmd: 'true'\n"})
	for _, tc := range []struct {
		name    string
		n1Slots string
		local   bool
	}{
		// 6 against 4, so that n1 has more free slots even with a run in
		// flight when it reports them. Without the preference, two random
		// candidates would leave n1 out a third of the time.
		{"idle", "6", true},
		// 1 against 4: n1 loses to any other candidate, and is never both.
		{"fewer free slots", "1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := StartCluster(t, 3, WithClusterArgs("--packs", pack, "--slots", "4"), WithNodeArgs("n1", "--slots", tc.n1Slots))
			n1 := c.Node("n1")
			for range 8 {
				ex, err := n1.Client.Run(t.Context(), "loc.quick", nil)
				if err != nil {
					t.Fatalf("run loc.quick on n1: %v", err)
				}
				ex = n1.WaitExecution(ex.ID.String(), domain.StatusSucceeded, 20*time.Second)
				if (ex.Worker == "n1") != tc.local {
					t.Errorf("execution %s created on n1 (%s slots, the others 4) ran on %q", ex.ID, tc.n1Slots, ex.Worker)
				}
			}
		})
	}
}

// TestClusterMemberWithTheRuntimeJoinsLater: python executions created
// while no member runs python wait in requested, and run on the python
// member once it joins, well within the placement timeout.
func TestClusterMemberWithTheRuntimeJoinsLater(t *testing.T) {
	pack := writePack(t, "late", map[string]string{
		"actions/where.yaml": "name: where\nruntime: python\nentry_point: where.py\n",
		"actions/where.py":   "print('ran')\n",
	})
	c := StartCluster(t, 2, WithClusterArgs("--packs", pack, "--placement-timeout", "60s", "--runtimes", "shell,builtin"))
	n1 := c.Node("n1")
	var ids []string
	for range 3 {
		ex, err := n1.Client.Run(t.Context(), "late.where", nil)
		if err != nil {
			t.Fatalf("run late.where on n1: %v", err)
		}
		ids = append(ids, ex.ID.String())
	}
	time.Sleep(2 * time.Second)
	for _, id := range ids {
		if ex, err := n1.Client.Execution(t.Context(), id, 0); err != nil || ex.Status != domain.StatusRequested {
			t.Fatalf("execution %s with no python member: %+v, %v; want requested", id, ex, err)
		}
	}
	joined := time.Now()
	c.AddNode("n3", "--runtimes", "python,shell,builtin")
	for _, id := range ids {
		ex := n1.WaitExecution(id, domain.StatusSucceeded, 30*time.Second)
		if ex.Worker != "n3" {
			t.Errorf("execution %s ran on %q, want n3, the member that brought python", id, ex.Worker)
		}
	}
	t.Logf("waiting python executions all ran %s after n3 was started", time.Since(joined).Round(time.Millisecond))
}

// TestClusterWorkerKilledMidExecution: an execution owned by n1 (which is
// no worker) runs on a worker that is then killed with SIGKILL. Without a
// retry policy it ends abandoned with an error naming the worker within
// 15 s; with `retry: {on: [abandoned]}` it runs again as attempt 2 on the
// other worker and succeeds.
func TestClusterWorkerKilledMidExecution(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers []string // the others are sensor,rule,api only
		retry   bool
	}{
		{"abandoned", []string{"n2"}, false},
		{"retried when configured", []string{"n2", "n3"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ledger := filepath.Join(t.TempDir(), "ledger")
			// The first attempt of an execution blocks; a second one ends at once.
			pack := writePack(t, "lost", map[string]string{
				"actions/block.yaml": "name: block\nruntime: shell\nentry_point: block.sh\n" +
					map[bool]string{true: "retry: {count: 1, on: [abandoned], delay: 0}\n"}[tc.retry],
				"actions/block.sh": "#!/bin/sh\necho \"$TROUPE_EXECUTION_ID\" >> " + ledger +
					"\n[ $(grep -c \"$TROUPE_EXECUTION_ID\" " + ledger + ") -ge 2 ] || sleep 60\n",
			})
			opts := []ClusterOption{WithClusterArgs("--packs", pack)}
			for _, name := range []string{"n1", "n2", "n3"} {
				if !slices.Contains(tc.workers, name) {
					opts = append(opts, WithNodeArgs(name, "--roles", "sensor,rule,api"))
				}
			}
			c := StartCluster(t, 3, opts...)
			n1 := c.Node("n1")
			ex, err := n1.Client.Run(t.Context(), "lost.block", nil)
			if err != nil {
				t.Fatal(err)
			}
			id := ex.ID.String()
			ex = n1.WaitExecution(id, domain.StatusRunning, 15*time.Second)
			if !slices.Contains(tc.workers, ex.Worker) || ex.Node != "n1" {
				t.Fatalf("execution %s runs on worker %q owned by %q, want a worker of %v owned by n1", id, ex.Worker, ex.Node, tc.workers)
			}
			victim := c.Node(ex.Worker)
			waitFor(t, 5*time.Second, func() error {
				if n := len(readLines(t, ledger)); n != 1 {
					return fmt.Errorf("the action started %d times, want once", n)
				}
				return nil
			})
			c.Kill(victim)
			killed := time.Now()
			if !tc.retry {
				ex = n1.WaitExecution(id, domain.StatusAbandoned, 15*time.Second)
				if !strings.Contains(ex.Error, victim.Name) {
					t.Errorf("abandoned with error %q, want it to name %s", ex.Error, victim.Name)
				}
				t.Logf("worker %s killed: execution abandoned %s later (%q)", victim.Name, time.Since(killed).Round(time.Millisecond), ex.Error)
				return
			}
			ex = n1.WaitExecution(id, domain.StatusSucceeded, 20*time.Second)
			took := time.Since(killed)
			var abandoned []string
			for _, h := range ex.History {
				if h.Status == domain.StatusRequested && h.Error != "" {
					abandoned = append(abandoned, h.Error)
				}
			}
			if ex.Attempt != 2 || ex.Worker == victim.Name || len(abandoned) != 1 || !strings.Contains(abandoned[0], victim.Name) {
				t.Errorf("execution %s ended attempt %d on %s, recorded retries %q; want attempt 2 on the other worker after one "+
					"retry naming %s", id, ex.Attempt, ex.Worker, abandoned, victim.Name)
			}
			if n := len(readLines(t, ledger)); n != 2 {
				t.Errorf("the action started %d times, want twice (one per attempt)", n)
			}
			t.Logf("worker %s killed: execution retried on %s and succeeded %s later (%q)", victim.Name, ex.Worker,
				took.Round(time.Millisecond), abandoned)
		})
	}
}

// TestClusterTimerFailover: a 1-second timer rule appends each execution's
// ID and tick time to a ledger shared by all nodes. The node that owns the
// timer is killed with SIGKILL; ticks resume on another node within 10 s.
// Later the killed node comes back (joining the live members) and the
// timer may move again. Over the whole test no tick ran twice.
func TestClusterTimerFailover(t *testing.T) {
	ledger := filepath.Join(t.TempDir(), "ledger")
	c := StartCluster(t, 3, WithClusterArgs("--packs", timerPack(t, ledger)))
	victim := c.Node(timerOwner(t, c.Node("n1"), ledger))
	t.Logf("the timer runs on %s", victim.Name)
	// Let it tick a little longer, so the ledger holds ticks from before the kill.
	time.Sleep(2 * time.Second)
	var lastBefore time.Time
	for _, e := range readLedger(t, ledger) {
		lastBefore = maxTime(lastBefore, e.at)
	}
	c.Kill(victim)
	killed := time.Now()

	survivor := c.Live()[0]
	var resumedAt time.Time // tick time of the first tick a survivor fired
	var resumedOn string
	waitFor(t, 15*time.Second, func() error {
		owners, err := tickOwners(t, survivor, "tick.every")
		if err != nil {
			return err
		}
		for at, execs := range owners {
			for _, e := range execs {
				if e.node != victim.Name && at.After(lastBefore) && (resumedAt.IsZero() || at.Before(resumedAt)) {
					resumedAt, resumedOn = at, e.node
				}
			}
		}
		if resumedAt.IsZero() {
			return fmt.Errorf("no tick after %s by a node other than %s yet", lastBefore.Format(time.StampMilli), victim.Name)
		}
		return nil
	})
	observed := time.Since(killed)
	gap := resumedAt.Sub(killed)
	t.Logf("timer failover: %s killed at %s; last tick before the kill %s; first tick after it %s on %s: "+
		"%s from kill to the first resumed tick (%s between ticks); seen through the API after %s",
		victim.Name, killed.Format(time.StampMilli), lastBefore.Format(time.StampMilli), resumedAt.Format(time.StampMilli),
		resumedOn, gap.Round(time.Millisecond), resumedAt.Sub(lastBefore).Round(time.Millisecond), observed.Round(time.Millisecond))
	if gap >= 10*time.Second {
		t.Errorf("ticks resumed %s after the kill, want under 10s", gap.Round(time.Millisecond))
	}

	// Keep ticking; then bring the killed node back on its data dir, joining
	// the live members (the timer may move back as the topology changes),
	// and keep ticking.
	time.Sleep(10 * time.Second)
	c.Rejoin(victim)
	c.WaitAllAlive(20 * time.Second)
	rejoined := time.Now()
	time.Sleep(6 * time.Second)
	owners, err := tickOwners(t, survivor, "tick.every")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after %s rejoined, ticks were owned by %v in turn", victim.Name, ownersSince(owners, rejoined.Add(-time.Second)))
	entries := checkTicksOnce(t, ledger, owners)

	// Ticks after the move should all be there (misfire policy: skip only
	// the ticks nobody owned).
	var after []time.Time
	for _, e := range entries {
		if !e.at.Before(resumedAt) && !e.at.After(rejoined) {
			after = append(after, e.at)
		}
	}
	slices.SortFunc(after, time.Time.Compare)
	after = slices.Compact(after)
	missing := 0
	for i := 1; i < len(after); i++ {
		missing += int(after[i].Sub(after[i-1])/time.Second) - 1
	}
	t.Logf("ledger: %d entries; between the move and the rejoin %d ticks ran, %d are missing between them", len(entries), len(after), missing)
}

// TestClusterRestartedSeedDoesNotFireTwice: n1, which started the cluster
// (no --join, as docs/cluster.md starts it), is killed and restarted with
// the same command line once n2 or n3 runs the timer, as a service manager
// would restart it. Until gossip merges it back it is a cluster of one; it
// must not fire the timer the others are running, and it must be merged
// back within the survivors' 30 s rejoin interval.
func TestClusterRestartedSeedDoesNotFireTwice(t *testing.T) {
	ledger := filepath.Join(t.TempDir(), "ledger")
	c := StartCluster(t, 3, WithClusterArgs("--packs", timerPack(t, ledger)))
	n1 := c.Node("n1")
	t.Logf("the timer runs on %s", timerOwner(t, n1, ledger))
	c.Kill(n1)
	killed := time.Now()
	// The timer runs on n2 or n3 before n1 comes back.
	waitFor(t, 20*time.Second, func() error {
		owners, err := tickOwners(t, c.Node("n2"), "tick.every")
		if err != nil {
			return err
		}
		for at, execs := range owners {
			if at.After(killed) && slices.ContainsFunc(execs, func(e tickExec) bool { return e.node != "n1" }) {
				return nil
			}
		}
		return errors.New("no tick after n1's kill by n2 or n3 yet")
	})
	t.Logf("the timer runs on n2 or n3 %s after n1's kill", time.Since(killed).Round(time.Millisecond))
	c.Restart(n1)
	restarted := time.Now()
	// The survivors re-contact members they hold dead every 30 s (the
	// cluster package's RejoinInterval), so the merge may take that long.
	merged := c.AllAlive(35 * time.Second)
	if merged {
		t.Logf("n1 restarted without --join; all three list each other alive %s after it was ready",
			time.Since(restarted).Round(time.Millisecond))
	} else {
		t.Errorf("n1 restarted without --join is not merged back with n2 and n3 %s after it was ready",
			time.Since(restarted).Round(time.Millisecond))
	}
	time.Sleep(3 * time.Second)
	owners, err := tickOwners(t, c.Node("n2"), "tick.every")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("around n1's restart, ticks were owned by %v in turn", ownersSince(owners, restarted.Add(-2*time.Second)))
	checkTicksOnce(t, ledger, owners)
}

// timerPack is a pack whose 1-second interval timer rule tick.every
// appends "EXECUTION_ID TICK_TIME" to ledger. Each extra ledger gets a rule
// of its own, tick.every2, tick.every3, …: a cron timer that also ticks
// every second, with its own trigger instance, hence its own sensor grain,
// placed independently of the others.
func timerPack(t *testing.T, ledger string, extra ...string) string {
	files := map[string]string{
		"actions/append.yaml": "name: append\nruntime: shell\nentry_point: append.sh\nparameters:\n  at: {type: string, required: true}\n  ledger: {type: string, required: true}\n",
		"actions/append.sh":   "#!/bin/sh\necho \"$TROUPE_EXECUTION_ID $TROUPE_PARAM_AT\" >> \"$TROUPE_PARAM_LEDGER\"\n",
		"rules/every.yaml": `name: every
trigger: {type: core.intervaltimer, parameters: {unit: seconds, delta: 1}}
action: {ref: tick.append, parameters: {at: "{{ trigger.executed_at }}", ledger: "` + ledger + `"}}
`,
	}
	// Different spellings of "every second", so that each is a timer of its own.
	seconds := []string{"* * * * * *", "*/1 * * * * *", "0-59 * * * * *", "0-59/1 * * * * *", "*/1 */1 * * * *"}
	if len(extra) > len(seconds) {
		t.Fatalf("timerPack: %d extra ledgers, at most %d", len(extra), len(seconds))
	}
	for i, l := range extra {
		name := fmt.Sprintf("every%d", i+2)
		files["rules/"+name+".yaml"] = "name: " + name + `
trigger: {type: core.crontimer, parameters: {expression: "` + seconds[i] + `"}}
action: {ref: tick.append, parameters: {at: "{{ trigger.executed_at }}", ledger: "` + l + `"}}
`
	}
	return writePack(t, "tick", files)
}

// tickExec is one execution of the timer pack's rule.
type tickExec struct {
	id, node string
	status   domain.Status
}

// tickOwners maps each tick time of one of the timer pack's rules to its
// executions, as node n's cluster-wide list shows them.
func tickOwners(t *testing.T, n *Node, rule string) (map[time.Time][]tickExec, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	out := map[time.Time][]tickExec{}
	for cursor := ""; ; {
		page, err := n.Client.Executions(ctx, api.ListQuery{Rule: rule, Limit: 500, Cursor: cursor})
		if err != nil {
			return nil, err
		}
		if page.Partial {
			return nil, fmt.Errorf("%s's list of executions is partial: %v did not answer", n.Name, page.Unreachable)
		}
		for _, ex := range page.Items {
			at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(ex.Parameters["at"]))
			if err != nil {
				return nil, fmt.Errorf("execution %s: tick time %v: %w", ex.ID, ex.Parameters["at"], err)
			}
			out[at] = append(out[at], tickExec{ex.ID.String(), ex.Node, ex.Status})
		}
		if cursor = page.Next; cursor == "" {
			return out, nil
		}
	}
}

// timerOwner waits until the timer has ticked three times and returns the
// node that owns its newest tick.
func timerOwner(t *testing.T, n *Node, ledger string) string {
	t.Helper()
	var owner string
	waitFor(t, 20*time.Second, func() error {
		if n := len(readLedger(t, ledger)); n < 3 {
			return fmt.Errorf("the ledger has %d ticks, want 3", n)
		}
		owners, err := tickOwners(t, n, "tick.every")
		if err != nil {
			return err
		}
		latest := slices.MaxFunc(slices.Collect(maps.Keys(owners)), time.Time.Compare)
		if len(owners[latest]) != 1 {
			return fmt.Errorf("tick %s has executions owned by %v", latest, owners[latest])
		}
		owner = owners[latest][0].node
		return nil
	})
	return owner
}

// ownersSince lists who owned the ticks from `from` on, one entry per
// change of owner ("n1+n3" when two nodes fired the same tick).
func ownersSince(owners map[time.Time][]tickExec, from time.Time) []string {
	var out []string
	for _, at := range slices.SortedFunc(maps.Keys(owners), time.Time.Compare) {
		who := strings.Join(nodesOf(owners[at]), "+")
		if !at.Before(from) && (len(out) == 0 || out[len(out)-1] != who) {
			out = append(out, who)
		}
	}
	return out
}

func nodesOf(execs []tickExec) []string {
	var nodes []string
	for _, e := range execs {
		nodes = append(nodes, e.node)
	}
	slices.Sort(nodes)
	return nodes
}

// checkTicksOnce fails the test for every tick that ran twice (in the
// ledger) or has two executions (in owners), and for every succeeded
// execution that did not run exactly once; it returns the ledger.
func checkTicksOnce(t *testing.T, ledger string, owners map[time.Time][]tickExec) []ledgerEntry {
	t.Helper()
	entries := readLedger(t, ledger)
	byTick, byID := map[time.Time][]string{}, map[string]int{}
	for _, e := range entries {
		byTick[e.at] = append(byTick[e.at], e.id)
		byID[e.id]++
	}
	twice := 0
	for _, at := range slices.SortedFunc(maps.Keys(byTick), time.Time.Compare) {
		if ids := byTick[at]; len(ids) > 1 {
			twice++
			t.Errorf("tick %s ran %d times: executions %v, owned by %v", at.Format(time.StampMilli), len(ids), ids, nodesOf(owners[at]))
		}
	}
	for _, at := range slices.SortedFunc(maps.Keys(owners), time.Time.Compare) {
		execs := owners[at]
		if len(execs) > 1 && len(byTick[at]) < 2 {
			t.Errorf("tick %s has %d executions, owned by %v", at.Format(time.StampMilli), len(execs), nodesOf(execs))
		}
		for _, e := range execs {
			if e.status == domain.StatusSucceeded && byID[e.id] == 0 {
				t.Errorf("execution %s of tick %s succeeded on %s but is not in the ledger", e.id, at.Format(time.StampMilli), e.node)
			}
		}
	}
	if twice > 0 {
		t.Errorf("%d of %d ticks ran more than once", twice, len(byTick))
	}
	t.Logf("ledger: %d entries, %d distinct ticks", len(entries), len(byTick))
	return entries
}

// TestClusterRestartKeepsRecords: n2 owns executions (it is no worker, so
// they run on n1 or n3). After SIGKILL and a restart on its data dir, its
// finished executions are intact and queryable from n2 and from n1, and
// one that was running on another member during the outage ends succeeded
// after the restart, having run once.
func TestClusterRestartKeepsRecords(t *testing.T) {
	ledger := filepath.Join(t.TempDir(), "ledger")
	c := StartCluster(t, 3, WithNodeArgs("n2", "--roles", "sensor,rule,api"))
	n1, n2 := c.Node("n1"), c.Node("n2")

	var done []*api.ExecutionView
	for i := range 5 {
		ex, err := n2.Client.Run(t.Context(), "core.echo", map[string]any{"message": fmt.Sprintf("record %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, n2.WaitExecution(ex.ID.String(), domain.StatusSucceeded, 15*time.Second))
	}
	slow, err := n2.Client.Run(t.Context(), "core.local",
		map[string]any{"cmd": "sleep 4; echo \"$TROUPE_EXECUTION_ID\" >> " + ledger})
	if err != nil {
		t.Fatal(err)
	}
	slowID := slow.ID.String()
	slow = n2.WaitExecution(slowID, domain.StatusRunning, 10*time.Second)
	c.Kill(n2)
	// The slow action finishes on its worker while its owner is down.
	waitFor(t, 10*time.Second, func() error {
		if runs := len(readLines(t, ledger)); runs != 1 {
			return fmt.Errorf("the action owned by the killed n2 finished %d times on %s during the outage, want once", runs, slow.Worker)
		}
		return nil
	})
	began := time.Now()
	c.Restart(n2)
	c.WaitMembers(n1, map[string]string{"n1": "alive", "n2": "alive", "n3": "alive"}, 20*time.Second)
	t.Logf("n2 restarted and listed alive by n1 after %s", time.Since(began).Round(time.Millisecond))

	same := func(a, b *api.ExecutionView) bool {
		return a.ID == b.ID && a.Status == b.Status && a.Node == b.Node && a.Worker == b.Worker && a.Attempt == b.Attempt &&
			reflect.DeepEqual(a.Parameters, b.Parameters) && reflect.DeepEqual(a.Result, b.Result) &&
			a.CreatedAt.Equal(b.CreatedAt) && len(a.History) == len(b.History)
	}
	for _, before := range done {
		for _, n := range []*Node{n2, n1} {
			after, err := n.Client.Execution(t.Context(), before.ID.String(), 0)
			if err != nil {
				t.Errorf("execution %s after n2's restart, asked on %s: %v", before.ID, n.Name, err)
				continue
			}
			if !same(before, after) {
				t.Errorf("execution %s asked on %s after n2's restart:\n%+v\nbefore:\n%+v", before.ID, n.Name, after, before)
			}
		}
	}
	page, err := n1.Client.Executions(t.Context(), api.ListQuery{Action: "core.echo", Limit: 100})
	if err != nil || page.Partial || len(page.Items) != len(done) {
		t.Errorf("core.echo executions listed on n1 after the restart: %d (partial %v, unreachable %v, err %v), want %d",
			len(page.Items), page.Partial, page.Unreachable, err, len(done))
	}
	got := n2.WaitExecution(slowID, domain.StatusSucceeded, 20*time.Second)
	if got.Attempt != 1 || got.Worker != slow.Worker {
		t.Errorf("execution %s ended attempt %d on %s, want attempt 1 on %s", slowID, got.Attempt, got.Worker, slow.Worker)
	}
	if runs := len(readLines(t, ledger)); runs != 1 {
		t.Errorf("the action ran %d times, want once", runs)
	}
}

// TestClusterRefusesStrangers: a node with another gossip key, or of
// another cluster, that joins n1 is refused: it exits non-zero (or runs on
// alone), its log says why, and no member ever lists it.
func TestClusterRefusesStrangers(t *testing.T) {
	k1 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	k2 := base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	c := StartCluster(t, 3, WithClusterArgs("--gossip-key", k1))
	members := c.Nodes[:3]
	for _, tc := range []struct {
		name, node string
		args       []string
		why        string // what the stranger's log must say
	}{
		{"wrong gossip key", "n4", []string{"--gossip-key", k2}, "is the gossip key the same on every node?"},
		{"other cluster name", "n5", []string{"--cluster-name", "elsewhere"}, `belongs to cluster "troupe", this node "n5" to cluster "elsewhere"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := c.SpawnNode(tc.node, tc.args...)
			defer n.Kill()
			// For 5 s nobody lists the stranger.
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				for _, m := range members {
					for _, mv := range c.Members(m) {
						if mv.Name == tc.node {
							t.Fatalf("%s lists the stranger %s as %s", m.Name, tc.node, mv.Status)
						}
					}
				}
			}
			code, exited := n.Exited(10 * time.Second)
			log := n.Log()
			t.Logf("%s: exited %v (code %d); its last lines:\n%s", tc.node, exited, code, tail(log, 1))
			if exited && code == 0 {
				t.Errorf("%s exited 0 after being refused", tc.node)
			}
			if !strings.Contains(log, tc.why) {
				t.Errorf("%s's log does not say %q:\n%s", tc.node, tc.why, tail(log, 10))
			}
			for _, m := range members {
				if ms := c.Members(m); len(ms) != 3 {
					t.Errorf("%s lists %d members, want 3", m.Name, len(ms))
				}
			}
		})
	}
}

type ledgerEntry struct {
	id string
	at time.Time
}

// readLedger parses "EXECUTION_ID TICK_TIME" lines.
func readLedger(t *testing.T, path string) []ledgerEntry {
	t.Helper()
	var out []ledgerEntry
	for _, line := range readLines(t, path) {
		id, at, ok := strings.Cut(line, " ")
		ts, err := time.Parse(time.RFC3339Nano, at)
		if !ok || err != nil {
			t.Fatalf("ledger line %q is not an execution ID and a tick time: %v", line, err)
		}
		out = append(out, ledgerEntry{id, ts})
	}
	return out
}

// readLines is the non-empty lines of a file that may not exist yet.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
