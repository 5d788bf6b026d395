package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestJoinSeesEveryoneWithMeta(t *testing.T) {
	began := time.Now()
	nodes := startN(t, 3)
	t.Logf("3 nodes joined and converged in %s", time.Since(began).Round(time.Millisecond))
	for _, c := range nodes {
		members := c.Members()
		if len(members) != 3 {
			t.Fatalf("%s knows %s, want 3 members", c.Self().Name, describe(members))
		}
		for _, o := range nodes {
			want := o.LocalMeta()
			got, _ := c.Member(want.Name)
			if !got.Meta.equal(want) {
				t.Errorf("%s sees %s with meta %+v, want %+v", c.Self().Name, want.Name, got.Meta, want)
			}
			if got.GossipAddr != o.LocalAddr() {
				t.Errorf("%s sees %s at %s, want %s", c.Self().Name, want.Name, got.GossipAddr, o.LocalAddr())
			}
			if got.Self != (o == c) {
				t.Errorf("%s sees %s with Self=%v", c.Self().Name, want.Name, got.Self)
			}
		}
		if got := len(c.Alive()); got != 3 {
			t.Errorf("%s: Alive() has %d members, want 3", c.Self().Name, got)
		}
	}
}

func TestUpdateMetaPropagates(t *testing.T) {
	nodes := startN(t, 3)
	changes := record(t, nodes[1])
	meta := nodes[0].LocalMeta()
	meta.Runtimes = append(meta.Runtimes, "python")
	meta.Slots = 8
	if err := nodes[0].UpdateMeta(meta); err != nil {
		t.Fatal(err)
	}
	if got := nodes[0].Self().Meta; !got.equal(meta) {
		t.Errorf("Self() after UpdateMeta is %+v, want %+v", got, meta)
	}
	for _, c := range nodes[1:] {
		waitFor(t, 5*time.Second, func() error {
			m, _ := c.Member("n1")
			if !m.HasRuntime("python") || m.Slots != 8 {
				return fmt.Errorf("%s sees n1 with runtimes %v and %d slots, want python and 8", c.Self().Name, m.Runtimes, m.Slots)
			}
			return nil
		})
	}
	waitFor(t, 5*time.Second, func() error { return changes.has("n1", ChangeUpdated) })
	changes.mu.Lock()
	for _, ch := range changes.changes {
		if ch.Kind == ChangeUpdated && ch.Previous.HasRuntime("python") {
			t.Errorf("updated change's Previous already has python: %+v", ch.Previous)
		}
	}
	changes.mu.Unlock()
}

func TestUpdateMetaRejects(t *testing.T) {
	c := start(t, testConfig(t, "n1"))
	tests := []struct {
		name string
		edit func(*Meta)
		want string
	}{
		{"rename", func(m *Meta) { m.Name = "other" }, `name cannot change from "n1" to "other"`},
		{"other cluster", func(m *Meta) { m.Cluster = "blue" }, `cluster cannot change`},
		{"new started", func(m *Meta) { m.Started++ }, `started cannot change`},
		{"too big", func(m *Meta) { m.Kinds = []string{strings.Repeat("k", 600)} }, "over memberlist's limit of 512"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := c.LocalMeta()
			tt.edit(&m)
			err := c.UpdateMeta(m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("UpdateMeta: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestHardStopGoesSuspectThenDead(t *testing.T) {
	nodes := startN(t, 3)
	watch := []*recorder{record(t, nodes[0]), record(t, nodes[1])}
	stopped := time.Now()
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, c := range nodes[:2] {
		waitFor(t, 10*time.Second, func() error { return seesStatus(c, "n3", StatusDead) })
	}
	t.Logf("n3 dead everywhere %s after a hard stop", time.Since(stopped).Round(time.Millisecond))
	for i, r := range watch {
		// Subscribers hear of a change just after the view shows it.
		waitFor(t, 5*time.Second, func() error {
			return prefix(nodes[i].Self().Name, r.has("n3", ChangeSuspect, ChangeDead))
		})
		if slices.Contains(r.kinds("n3"), ChangeLeft) {
			t.Errorf("on %s: a hard stop reads as left: %v", nodes[i].Self().Name, r.kinds("n3"))
		}
	}
	for _, c := range nodes[:2] {
		if slices.ContainsFunc(c.Alive(), func(m Member) bool { return m.Name == "n3" }) {
			t.Errorf("%s: Alive() still lists dead n3", c.Self().Name)
		}
	}
}

func TestLeaveIsLeft(t *testing.T) {
	nodes := startN(t, 3, patient)
	watch := record(t, nodes[0])
	if err := nodes[2].Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, c := range nodes {
		waitFor(t, 5*time.Second, func() error { return seesStatus(c, "n3", StatusLeft) })
	}
	if got := watch.kinds("n3"); !slices.Equal(got, []ChangeKind{ChangeLeft}) {
		t.Errorf("n1's changes about n3 are %v, want [left]", got)
	}
	if err := nodes[2].UpdateMeta(nodes[2].LocalMeta()); err == nil {
		t.Error("UpdateMeta after Leave succeeded, want an error")
	}
	if err := nodes[2].Leave(time.Second); err != nil {
		t.Errorf("second Leave: %v, want nil", err)
	}
}

func TestRestartWithSameName(t *testing.T) {
	tests := []struct {
		name      string
		sameAddr  bool // bind the previous gossip address again
		afterDead bool // wait until the old life is declared dead
		want      ChangeKind
	}{
		{"same address, before declared dead", true, false, ChangeRestarted},
		{"new address, before declared dead", false, false, ChangeJoined},
		{"new address, after declared dead", false, true, ChangeJoined},
		{"same address, after declared dead", true, true, ChangeJoined},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := startN(t, 3)
			watch := record(t, nodes[0])
			old := nodes[2].Self()
			if err := nodes[2].Shutdown(); err != nil {
				t.Fatal(err)
			}
			stopped := time.Now()
			if tt.afterDead {
				waitFor(t, 10*time.Second, func() error { return seesStatus(nodes[0], "n3", StatusDead) })
			}
			cfg := testConfig(t, "n3", nodes[0].LocalAddr())
			if tt.sameAddr {
				cfg.BindAddr = old.GossipAddr
			}
			restarted := start(t, cfg)
			restartedAt := time.Now()
			for _, c := range nodes[:2] {
				waitFor(t, 15*time.Second, func() error {
					m, _ := c.Member("n3")
					if m.Status != StatusAlive || m.Started != restarted.Self().Started || m.GossipAddr != restarted.LocalAddr() {
						return fmt.Errorf("%s sees n3 %s at %s started %d, want alive at %s started %d",
							c.Self().Name, m.Status, m.GossipAddr, m.Started, restarted.LocalAddr(), restarted.Self().Started)
					}
					return nil
				})
			}
			t.Logf("restarted n3 alive everywhere %s after the old one stopped, %s after the restart (kinds on n1: %v)",
				time.Since(stopped).Round(time.Millisecond), time.Since(restartedAt).Round(time.Millisecond), watch.kinds("n3"))
			waitFor(t, 5*time.Second, func() error { return watch.has("n3", tt.want) })
			waitFor(t, 5*time.Second, func() error { return seesAlive(restarted, "n1", "n2", "n3") })
		})
	}
}

func TestWrongGossipKeyIsRefused(t *testing.T) {
	k1 := bytes.Repeat([]byte{1}, 32)
	k2 := bytes.Repeat([]byte{2}, 16)
	tests := []struct {
		name              string
		seedKey, joinKey  []byte
		seedLogsSomething string
	}{
		{"different keys", k1, k2, "could not be decrypted"},
		{"joiner has no key", k1, nil, "sent unencrypted gossip"},
		{"seed has no key", nil, k2, "sent encrypted gossip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seedCfg := testConfig(t, "seed")
			seedCfg.GossipKey = tt.seedKey
			seedLog := newLogRecorder(t)
			seedCfg.Logger = seedLog.logger()
			seed := start(t, seedCfg)

			cfg := testConfig(t, "joiner", seed.LocalAddr())
			cfg.GossipKey = tt.joinKey // retrying (the default) cannot mend that
			c, err := New(cfg)
			if err == nil {
				_ = c.Shutdown()
				t.Fatal("joined with a different gossip key")
			}
			t.Logf("joiner: %v", err)
			want := "join " + seed.LocalAddr() + ": "
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "(is the gossip key the same on every node?)") {
				t.Errorf("error %q, want it to contain %q and the gossip key hint", err, want)
			}
			waitFor(t, 5*time.Second, func() error { return seedLog.find(tt.seedLogsSomething, "gossip key the same on every node") })
			if _, ok := seed.Member("joiner"); ok {
				t.Error("seed took the joiner in")
			}
		})
	}
}

func TestOtherClusterIsRefused(t *testing.T) {
	seedCfg := testConfig(t, "red1")
	seedCfg.Meta.Cluster = "red"
	seedLog := newLogRecorder(t)
	seedCfg.Logger = seedLog.logger()
	seed := start(t, seedCfg)

	cfg := testConfig(t, "blue1", seed.LocalAddr())
	cfg.Meta.Cluster = "blue" // retrying (the default) cannot mend that
	c, err := New(cfg)
	if err == nil {
		_ = c.Shutdown()
		t.Fatal("a node of cluster blue joined cluster red")
	}
	t.Logf("joiner: %v", err)
	for _, want := range []string{"join " + seed.LocalAddr(), `"red1"`, `cluster "red"`, `cluster "blue"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	waitFor(t, 5*time.Second, func() error {
		return seedLog.find("refused a node", "peer=blue1", `cluster "blue"`, `cluster "red"`)
	})
	if _, ok := seed.Member("blue1"); ok {
		t.Error("red1 took blue1 in")
	}
}

func TestJoinUnreachableSeedNamesIt(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	cfg := testConfig(t, "n1", dead)
	cfg.JoinRetry = 0
	c, err := New(cfg)
	if err == nil {
		_ = c.Shutdown()
		t.Fatal("joined a seed nobody listens at")
	}
	if want := "join " + dead + ": "; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the seed (%q)", err, want)
	}
	t.Logf("error: %v", err)
}

// TestJoinRetryConvergesWhateverTheStartOrder: three nodes given the same
// seed list (every node's address, its own included) start one after the
// other, the first one alone for a while. Each starts although its seeds
// are not up, says which seeds it still tries, and all three converge to
// one cluster without help.
func TestJoinRetryConvergesWhateverTheStartOrder(t *testing.T) {
	addrs := freeAddrs(t, 3)
	cfgs := make([]Config, 3)
	logs := make([]*logRecorder, 3)
	for i := range cfgs {
		cfgs[i] = testConfig(t, fmt.Sprintf("n%d", i+1), addrs...)
		cfgs[i].BindAddr = addrs[i]
		logs[i] = newLogRecorder(t)
		cfgs[i].Logger = logs[i].logger()
	}
	began := time.Now()
	n1 := start(t, cfgs[0])
	if got, want := n1.Joining(), addrs[1:]; !slices.Equal(got, want) {
		t.Errorf("n1 alone: Joining() = %v, want the other seeds %v", got, want)
	}
	if err := logs[0].find("no seed answered; running alone", addrs[1], addrs[2], "connection refused"); err != nil {
		t.Error(err)
	}
	time.Sleep(3 * time.Second) // alone through at least one retry
	if err := seesAlive(n1, "n1"); err != nil || len(n1.Members()) != 1 {
		t.Fatalf("n1 alone knows %s (%v)", describe(n1.Members()), err)
	}
	n2 := start(t, cfgs[1])
	n3 := start(t, cfgs[2])
	nodes := []*Cluster{n1, n2, n3}
	for _, c := range nodes {
		waitFor(t, 10*time.Second, func() error {
			if err := seesAlive(c, "n1", "n2", "n3"); err != nil {
				return err
			}
			if seeds := c.Joining(); seeds != nil {
				return fmt.Errorf("%s still joining %v", c.Self().Name, seeds)
			}
			return nil
		})
	}
	t.Logf("converged %s after n1 started alone", time.Since(began).Round(time.Millisecond))
	waitFor(t, time.Second, func() error { return logs[0].find("joined the cluster") })
}

// TestJoinRetryReachesASeedThatStartsLater: n1's only seed is n2, which
// starts later without seeds of its own, so only n1's retries can bring
// them together.
func TestJoinRetryReachesASeedThatStartsLater(t *testing.T) {
	addrs := freeAddrs(t, 2)
	cfg1 := testConfig(t, "n1", addrs[1])
	cfg1.BindAddr = addrs[0]
	n1 := start(t, cfg1)
	time.Sleep(time.Second)
	cfg2 := testConfig(t, "n2")
	cfg2.BindAddr = addrs[1]
	n2 := start(t, cfg2)
	began := time.Now()
	for _, c := range []*Cluster{n1, n2} {
		waitFor(t, 5*time.Second, func() error { return seesAlive(c, "n1", "n2") })
	}
	t.Logf("n1's retry joined n2 %s after n2 started", time.Since(began).Round(time.Millisecond))
	if seeds := n1.Joining(); seeds != nil {
		t.Errorf("n1 joined n2 but still retries %v", seeds)
	}
}

func TestJoinRetrySchedule(t *testing.T) {
	for _, tt := range []struct {
		retry, waited, want time.Duration
	}{
		{20 * time.Second, 0, 2 * time.Second},
		{20 * time.Second, 59 * time.Second, 2 * time.Second},
		{20 * time.Second, time.Minute, 20 * time.Second},
		{time.Second, 0, time.Second},
	} {
		t.Run(fmt.Sprintf("every %s after %s", tt.retry, tt.waited), func(t *testing.T) {
			c := &Cluster{cfg: Config{JoinRetry: tt.retry}}
			if got := c.joinRetryAfter(tt.waited); got != tt.want {
				t.Errorf("next try in %s, want %s", got, tt.want)
			}
		})
	}
}

func TestJoinSkipsOwnAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := testConfig(t, "n1", addr)
	cfg.BindAddr = addr
	c := start(t, cfg) // the only seed is itself: a new cluster
	if err := seesAlive(c, "n1"); err != nil {
		t.Fatal(err)
	}
}

func TestSubscribeDeliversInOrder(t *testing.T) {
	n1 := start(t, patient(testConfig(t, "n1")))
	watch := record(t, n1)
	n2 := start(t, patient(testConfig(t, "n2", n1.LocalAddr())))
	waitFor(t, 5*time.Second, func() error { return watch.has("n2", ChangeJoined) })
	n3 := start(t, patient(testConfig(t, "n3", n1.LocalAddr())))
	waitFor(t, 5*time.Second, func() error { return watch.has("n3", ChangeJoined) })
	if err := n2.Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error { return watch.has("n2", ChangeLeft) })
	if err := n3.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() error { return watch.has("n3", ChangeDead) })

	watch.mu.Lock()
	defer watch.mu.Unlock()
	var got []string
	for _, ch := range watch.changes {
		switch ch.Kind {
		case ChangeJoined, ChangeLeft, ChangeDead:
			got = append(got, string(ch.Kind)+" "+ch.Member.Name)
		}
	}
	want := []string{"joined n2", "joined n3", "left n2", "dead n3"}
	if !slices.Equal(got, want) {
		t.Errorf("changes %v, want %v", got, want)
	}
}

func TestSlowSubscriberNeverBlocksGossip(t *testing.T) {
	cfg := patient(testConfig(t, "n1"))
	cfg.SubscriberBuffer = 1
	n1 := start(t, cfg)
	stuck, cancel := n1.Subscribe() // never read until the end
	defer cancel()
	n2 := start(t, patient(testConfig(t, "n2", n1.LocalAddr())))
	n3 := start(t, patient(testConfig(t, "n3", n1.LocalAddr())))
	meta := n2.LocalMeta()
	for i := range 20 {
		meta.Slots = i + 1
		if err := n2.UpdateMeta(meta); err != nil {
			t.Fatal(err)
		}
	}
	// n1 kept up with gossip while its subscriber slept.
	waitFor(t, 5*time.Second, func() error {
		if err := seesAlive(n1, "n2", "n3"); err != nil {
			return err
		}
		if m, _ := n1.Member("n2"); m.Slots != 20 {
			return fmt.Errorf("n1 sees n2 with %d slots, want 20", m.Slots)
		}
		return nil
	})
	first := <-stuck
	if first.Kind != ChangeJoined {
		t.Errorf("first change is %s %s, want joined", first.Kind, first.Member.Name)
	}
	waitFor(t, 5*time.Second, func() error {
		select {
		case ch := <-stuck:
			if ch.Kind == ChangeResync {
				return nil
			}
			return fmt.Errorf("got %s %s, want resync", ch.Kind, ch.Member.Name)
		default:
			return errors.New("no resync yet")
		}
	})
	// After the resync, changes flow again.
	if err := n3.Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		select {
		case ch := <-stuck:
			if ch.Kind == ChangeLeft && ch.Member.Name == "n3" {
				return nil
			}
			return fmt.Errorf("got %s %s, want left n3", ch.Kind, ch.Member.Name)
		default:
			return errors.New("no change yet")
		}
	})
}

func TestShutdownClosesSubscriptions(t *testing.T) {
	c := start(t, testConfig(t, "n1"))
	ch, cancel := c.Subscribe()
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for range ch {
	}
	cancel() // after Shutdown: no double close
	if err := c.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := c.Leave(time.Second); err == nil {
		t.Error("Leave after Shutdown succeeded, want an error")
	}
	late, _ := c.Subscribe()
	if _, ok := <-late; ok {
		t.Error("Subscribe after Shutdown returned an open channel")
	}
}
