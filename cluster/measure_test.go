package cluster

import (
	"os"
	"slices"
	"testing"
	"time"
)

// TestMeasureFailureDetection prints how long joining and failure detection
// take with each timing preset on this machine. It takes about half a
// minute, so it runs only with TROUPE_CLUSTER_MEASURE=1.
func TestMeasureFailureDetection(t *testing.T) {
	if os.Getenv("TROUPE_CLUSTER_MEASURE") != "1" {
		t.Skip("set TROUPE_CLUSTER_MEASURE=1 to measure")
	}
	presets := []struct {
		name   string
		timing Timing
	}{{"test", TestTiming()}, {"lan", LANTiming()}}
	for _, p := range presets {
		t.Run(p.name, func(t *testing.T) {
			for trial := range 3 {
				join, suspect, dead := measureOnce(t, p.timing)
				t.Logf("%s trial %d: 3rd node joined and seen by all in %s; after its hard stop: first suspect %s, dead on both others %s",
					p.name, trial+1, join.Round(time.Millisecond), suspect.Round(time.Millisecond), dead.Round(time.Millisecond))
			}
		})
	}
}

func measureOnce(t *testing.T, timing Timing) (join, suspect, dead time.Duration) {
	cfg := func(name string, seeds ...string) Config {
		c := testConfig(t, name, seeds...)
		c.Timing = timing
		c.Logger = newLogRecorder(t).logger()
		return c
	}
	n1 := start(t, cfg("n1"))
	n2 := start(t, cfg("n2", n1.LocalAddr()))
	began := time.Now()
	n3 := start(t, cfg("n3", n1.LocalAddr()))
	for _, c := range []*Cluster{n1, n2, n3} {
		waitFor(t, 30*time.Second, func() error { return seesAlive(c, "n1", "n2", "n3") })
	}
	join = time.Since(began)

	watch := []*recorder{record(t, n1), record(t, n2)}
	stopped := time.Now()
	if err := n3.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for suspect == 0 {
		for _, r := range watch {
			if slices.Contains(r.kinds("n3"), ChangeSuspect) && suspect == 0 {
				suspect = time.Since(stopped)
			}
		}
		if time.Since(stopped) > 30*time.Second {
			t.Fatal("no suspicion of n3 after 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, c := range []*Cluster{n1, n2} {
		waitFor(t, 30*time.Second, func() error { return seesStatus(c, "n3", StatusDead) })
	}
	dead = time.Since(stopped)
	_ = n1.Shutdown()
	_ = n2.Shutdown()
	return join, suspect, dead
}
