package cluster

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

type memberlistNode = memberlist.Node

// step is one event fed to the view, at an offset from the test's start.
type step struct {
	at time.Duration
	do func(v *view, now time.Time) []Change
}

func aliveAt(name, addr string, started int64, slots int) func(*view, time.Time) []Change {
	return func(v *view, now time.Time) []Change {
		return v.alive(name, addr, Meta{Name: name, Cluster: "c", Started: started, Slots: slots}, now)
	}
}

func goneStep(name string) func(*view, time.Time) []Change {
	return func(v *view, now time.Time) []Change { return v.gone(name, now) }
}

func suspectStep(name string, started int64) func(*view, time.Time) []Change {
	return func(v *view, now time.Time) []Change { return v.suspect(name, started, now) }
}

func clearStep(name string, started int64) func(*view, time.Time) []Change {
	return func(v *view, now time.Time) []Change { return v.clear(name, started, now) }
}

func leaveStep(name string, started int64) func(*view, time.Time) []Change {
	return func(v *view, now time.Time) []Change { return v.leaveIntent(name, started, now) }
}

func tickStep(v *view, now time.Time) []Change { return v.tick(now) }

func TestViewTransitions(t *testing.T) {
	const suspectFor = 5 * time.Second
	tests := []struct {
		name       string
		steps      []step
		wantKinds  []ChangeKind
		wantStatus Status // of "b" at the end; "" = forgotten
	}{
		{"join", []step{{0, aliveAt("b", "h:1", 1, 1)}}, []ChangeKind{ChangeJoined}, StatusAlive},
		{"join twice is one join", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, aliveAt("b", "h:1", 1, 1)}},
			[]ChangeKind{ChangeJoined}, StatusAlive},
		{"metadata update", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, aliveAt("b", "h:1", 1, 2)}},
			[]ChangeKind{ChangeJoined, ChangeUpdated}, StatusAlive},
		{"new life before death is a restart", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, aliveAt("b", "h:2", 2, 1)}},
			[]ChangeKind{ChangeJoined, ChangeRestarted}, StatusAlive},
		{"failure", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, goneStep("b")}},
			[]ChangeKind{ChangeJoined, ChangeDead}, StatusDead},
		{"announced leave", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, leaveStep("b", 1)}, {0, goneStep("b")}},
			[]ChangeKind{ChangeJoined, ChangeLeft}, StatusLeft},
		{"leave announced after the departure", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, goneStep("b")}, {0, leaveStep("b", 1)}},
			[]ChangeKind{ChangeJoined, ChangeDead, ChangeLeft}, StatusLeft},
		{"leave announced by an older life is ignored", []step{{0, aliveAt("b", "h:1", 2, 1)}, {0, leaveStep("b", 1)}, {0, goneStep("b")}},
			[]ChangeKind{ChangeJoined, ChangeDead}, StatusDead},
		{"back after death is a join", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, goneStep("b")}, {0, aliveAt("b", "h:2", 2, 1)}},
			[]ChangeKind{ChangeJoined, ChangeDead, ChangeJoined}, StatusAlive},
		{"suspect then dead", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, suspectStep("b", 0)}, {time.Second, goneStep("b")}},
			[]ChangeKind{ChangeJoined, ChangeSuspect, ChangeDead}, StatusDead},
		{"suspect then ack", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, suspectStep("b", 1)}, {0, suspectStep("b", 1)}, {0, clearStep("b", 0)}},
			[]ChangeKind{ChangeJoined, ChangeSuspect, ChangeRecovered}, StatusAlive},
		{"suspicion of an older life is ignored", []step{{0, aliveAt("b", "h:1", 2, 1)}, {0, suspectStep("b", 1)}},
			[]ChangeKind{ChangeJoined}, StatusAlive},
		{"refutation by a newer life does not clear the old one", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, suspectStep("b", 1)}, {0, clearStep("b", 2)}},
			[]ChangeKind{ChangeJoined, ChangeSuspect}, StatusSuspect},
		{"suspect then update recovers", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, suspectStep("b", 0)}, {0, aliveAt("b", "h:1", 1, 3)}},
			[]ChangeKind{ChangeJoined, ChangeSuspect, ChangeRecovered, ChangeUpdated}, StatusAlive},
		{"suspicion lapses", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, suspectStep("b", 0)}, {suspectFor - time.Second, tickStep}, {suspectFor + time.Second, tickStep}},
			[]ChangeKind{ChangeJoined, ChangeSuspect, ChangeRecovered}, StatusAlive},
		{"renewed suspicion lasts longer", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, suspectStep("b", 0)}, {3 * time.Second, suspectStep("b", 0)}, {suspectFor + time.Second, tickStep}},
			[]ChangeKind{ChangeJoined, ChangeSuspect}, StatusSuspect},
		{"dead is kept a while", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, goneStep("b")}, {9 * time.Minute, tickStep}},
			[]ChangeKind{ChangeJoined, ChangeDead}, StatusDead},
		{"then forgotten", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, goneStep("b")}, {11 * time.Minute, tickStep}},
			[]ChangeKind{ChangeJoined, ChangeDead}, ""},
		{"gone twice is one death", []step{{0, aliveAt("b", "h:1", 1, 1)}, {0, goneStep("b")}, {0, goneStep("b")}},
			[]ChangeKind{ChangeJoined, ChangeDead}, StatusDead},
		{"unknown members are ignored", []step{{0, goneStep("b")}, {0, suspectStep("b", 0)}, {0, clearStep("b", 0)}, {0, leaveStep("b", 1)}},
			nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newView("a", 10*time.Minute, func(int) time.Duration { return suspectFor })
			t0 := time.Unix(1_000_000, 0)
			var got []ChangeKind
			for _, s := range tt.steps {
				for _, ch := range s.do(v, t0.Add(s.at)) {
					got = append(got, ch.Kind)
				}
			}
			if !slices.Equal(got, tt.wantKinds) {
				t.Errorf("changes %v, want %v", got, tt.wantKinds)
			}
			m, ok := v.get("b")
			if status := Status(""); ok {
				status = m.Status
				if status != tt.wantStatus {
					t.Errorf("b is %q, want %q", status, tt.wantStatus)
				}
			} else if tt.wantStatus != "" {
				t.Errorf("b is forgotten, want %q", tt.wantStatus)
			}
		})
	}
}

func TestViewNeverSuspectsOrForgetsItself(t *testing.T) {
	v := newView("a", time.Minute, func(int) time.Duration { return time.Second })
	t0 := time.Unix(1_000_000, 0)
	v.alive("a", "h:1", Meta{Started: 1}, t0)
	if ch := v.suspect("a", 0, t0); ch != nil {
		t.Errorf("suspected itself: %v", ch)
	}
	v.leaveIntent("a", 1, t0)
	if ch := v.gone("a", t0); len(ch) != 1 || ch[0].Kind != ChangeLeft {
		t.Errorf("own departure after Leave: %v, want left", ch)
	}
	v.tick(t0.Add(time.Hour))
	if m, ok := v.get("a"); !ok || !m.Self {
		t.Errorf("forgot itself: %+v %v", m, ok)
	}
}

func TestViewMembersSortedAndCopied(t *testing.T) {
	v := newView("a", time.Minute, func(int) time.Duration { return time.Second })
	now := time.Now()
	for _, n := range []string{"c", "a", "b"} {
		v.alive(n, "h:1", Meta{Runtimes: []string{"shell"}}, now)
	}
	ms := v.members()
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Errorf("members %v, want sorted", names)
	}
	ms[0].Runtimes[0] = "changed"
	if m, _ := v.get("a"); m.Runtimes[0] != "shell" {
		t.Error("members() shares slices with the view")
	}
	if v.live() != 3 {
		t.Errorf("live() = %d, want 3", v.live())
	}
}

func TestLogBridge(t *testing.T) {
	tests := []struct {
		line      string
		wantLevel string
		wantEvent evKind
		wantName  string
		wantHint  string
	}{
		{"[INFO] memberlist: Suspect n3 has failed, no acks received", "INFO", evProbeFailed, "n3", ""},
		{"[WARN] memberlist: Refuting a suspect message (from: n1)", "WARN", evRefuted, "", ""},
		{"[WARN] memberlist: Refuting a dead message (from: n1)", "WARN", evRefuted, "", ""},
		{"[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=127.0.0.1:1", "ERROR", -1, "", "gossip key"},
		{"[ERR] memberlist: Conflicting address for n3. Mine: a Theirs: b Old state: 0", "ERROR", -1, "", "restarted on a new address"},
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1", "DEBUG", -1, "", ""},
		{"[WARN] memberlist: ignoring alive message for 'x': nope (" + refusalMarker + ")", "DEBUG", -1, "", ""},
		{"a line without a level", "INFO", -1, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			rec := newLogRecorder(t)
			events := newInbox()
			b := &logBridge{logger: rec.logger(), events: events}
			if _, err := b.Write([]byte(tt.line + "\n")); err != nil {
				t.Fatal(err)
			}
			if err := rec.find(tt.wantLevel+" ", "source=memberlist"); err != nil {
				t.Error(err)
			}
			if tt.wantHint != "" {
				if err := rec.find("hint=", tt.wantHint); err != nil {
					t.Error(err)
				}
			}
			got := events.take()
			switch {
			case tt.wantEvent < 0 && len(got) > 0:
				t.Errorf("events %+v, want none", got)
			case tt.wantEvent >= 0 && (len(got) != 1 || got[0].kind != tt.wantEvent || got[0].name != tt.wantName):
				t.Errorf("events %+v, want one of kind %d about %q", got, tt.wantEvent, tt.wantName)
			}
		})
	}
}

func TestNoticeRoundTrip(t *testing.T) {
	n := notice{Kind: noticeLeave, Node: "n3", Started: 42, From: "n3", Seq: 7}
	got, err := decodeNotice(n.encode())
	if err != nil || got != n {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, []byte("x{}"), []byte(`n{"k":"gossip","n":"a","o":"b"}`), []byte(`n{"k":"leave"}`), []byte("n{")} {
		if _, err := decodeNotice(bad); err == nil {
			t.Errorf("decodeNotice(%q) accepted it", bad)
		}
	}
}

func TestDelegateRefusesStrangers(t *testing.T) {
	d := &delegate{self: "a", cluster: "red", logger: newLogRecorder(t).logger(), refused: map[string]time.Time{}}
	node := func(name string, m *Meta) *memberlistNode {
		n := &memberlistNode{Name: name, Addr: []byte{127, 0, 0, 1}, Port: 7946}
		if m != nil {
			n.Meta, _ = m.Encode()
		}
		return n
	}
	tests := []struct {
		name string
		peer *memberlistNode
		want string
	}{
		{"same cluster", node("b", &Meta{Name: "b", Cluster: "red"}), ""},
		{"other cluster", node("b", &Meta{Name: "b", Cluster: "blue"}), `node "b" at 127.0.0.1:7946 belongs to cluster "blue", this node "a" to cluster "red"`},
		{"no metadata", node("b", nil), `node "b" at 127.0.0.1:7946 is not a troupe node`},
		{"metadata of another node", node("b", &Meta{Name: "c", Cluster: "red"}), `gossips metadata of node "c"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for via, err := range map[string]error{
				"alive": d.NotifyAlive(tt.peer),
				"merge": d.NotifyMerge([]*memberlistNode{node("a", &Meta{Name: "a", Cluster: "red"}), tt.peer}),
			} {
				switch {
				case tt.want == "" && err != nil:
					t.Errorf("%s: %v, want nil", via, err)
				case tt.want != "" && (err == nil || !containsAll(err.Error(), []string{tt.want, refusalMarker})):
					t.Errorf("%s: %v, want an error containing %q", via, err, tt.want)
				}
			}
		})
	}
}

func ExampleChangeKind() {
	fmt.Println(ChangeJoined, ChangeRestarted, ChangeResync)
	// Output: joined restarted resync
}
