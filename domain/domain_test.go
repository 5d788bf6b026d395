package domain

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestEveryStatusPair(t *testing.T) {
	allowed := map[[2]Status]bool{}
	for from, tos := range transitions {
		for _, to := range tos {
			allowed[[2]Status{from, to}] = true
		}
	}
	for _, from := range Statuses {
		for _, to := range Statuses {
			err := CanTransition(from, to)
			want := allowed[[2]Status{from, to}]
			if (err == nil) != want {
				t.Errorf("%s → %s: got err=%v, want allowed=%v", from, to, err, want)
			}
			if from.Terminal() && err == nil {
				t.Errorf("%s is terminal but may move to %s", from, to)
			}
			if err != nil && !errors.Is(err, ErrTransition) {
				t.Errorf("%s → %s: error %v does not wrap ErrTransition", from, to, err)
			}
		}
	}
	// Every non-terminal status must be able to end somewhere terminal.
	for _, s := range Statuses {
		if !s.Terminal() && len(transitions[s]) == 0 {
			t.Errorf("%s has no way out", s)
		}
	}
}

func TestDerivedIDs(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	ev := DeriveID(at, "tick", "core.intervaltimer{}", "42")
	if ev != DeriveID(at, "tick", "core.intervaltimer{}", "42") {
		t.Fatal("same inputs gave different IDs")
	}
	if ev == DeriveID(at, "tick", "core.intervaltimer{}", "43") {
		t.Fatal("different ticks share an ID")
	}
	if DeriveID(at, "ab", "c") == DeriveID(at, "a", "bc") {
		t.Fatal("part boundaries are ambiguous")
	}
	if !ev.Time().Equal(at) {
		t.Fatalf("embedded time %v, want %v", ev.Time(), at)
	}
	enf := EnforcementID(ev, "hello.rule")
	if enf != EnforcementID(ev, "hello.rule") || enf == EnforcementID(ev, "hello.other") {
		t.Fatal("enforcement IDs are not a function of (event, rule)")
	}
	if ExecutionIDFor(enf) == enf || ExecutionIDFor(enf) != ExecutionIDFor(enf) {
		t.Fatal("execution ID must be derived from, and differ from, the enforcement ID")
	}
	// A derivation is a format: records stored, and members of another
	// version during an upgrade, derive the same IDs from the same inputs.
	tick := DeriveID(time.UnixMilli(1_700_000_000_000), "tick", "core.intervaltimer{}", "42")
	enf = EnforcementID(tick, "hello.rule")
	if got := fmt.Sprint(tick, " ", enf, " ", ExecutionIDFor(enf)); got != "01HF7YAT00NFEH1T79NMY16FES 01HF7YAT00R6KKHE8GQ3111P39 01HF7YAT00DAJAHPQQ900DWQW2" {
		t.Fatalf("derived IDs changed: %s", got)
	}
	parsed, err := ParseID(ev.String())
	if err != nil || parsed != ev {
		t.Fatalf("round trip: %v %v", parsed, err)
	}
	if _, err := ParseID("nope"); err == nil {
		t.Fatal("ParseID accepted garbage")
	}
	if a, b := NewID(at), NewID(at.Add(time.Millisecond)); string(a[:]) >= string(b[:]) {
		t.Fatal("IDs are not time-ordered")
	}
}

func TestSuggest(t *testing.T) {
	cands := []string{"core.intervaltimer", "core.crontimer", "core.webhook"}
	for _, tc := range []struct{ word, want string }{
		{"core.intervaltimr", "core.intervaltimer"},
		{"core.webhok", "core.webhook"},
		{"something.else.entirely", ""},
	} {
		if got := Suggest(tc.word, cands); got != tc.want {
			t.Errorf("Suggest(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
}

func TestActionTimeoutIsSecondsInJSON(t *testing.T) {
	a := &Action{Ref: "p.a", Timeout: 90 * time.Second}
	b, err := json.Marshal(a)
	if err != nil || !strings.Contains(string(b), `"timeout":90`) {
		t.Fatalf("marshal: %s %v", b, err)
	}
	var back Action
	if err := json.Unmarshal(b, &back); err != nil || back.Timeout != a.Timeout || back.Ref != a.Ref {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}
