package cluster

import (
	"fmt"
	"testing"
)

func TestPick(t *testing.T) {
	members := func(names ...string) []Member {
		var ms []Member
		for _, n := range names {
			ms = append(ms, Member{Meta: Meta{Name: n}})
		}
		return ms
	}
	if _, ok := Pick("k", nil); ok {
		t.Error("Pick among no members found one")
	}
	three, reversed := members("n1", "n2", "n3"), members("n3", "n2", "n1")
	won := map[string]int{}
	moved := 0
	for i := range 3000 {
		key := fmt.Sprintf("event-%d", i)
		a, _ := Pick(key, three)
		if b, _ := Pick(key, reversed); a.Name != b.Name {
			t.Fatalf("key %s: %s among n1, n2, n3 but %s among n3, n2, n1", key, a.Name, b.Name)
		}
		won[a.Name]++
		// n2 leaves: only the keys it held move.
		c, _ := Pick(key, members("n1", "n3"))
		if a.Name != "n2" && c.Name != a.Name {
			t.Fatalf("key %s moved from %s to %s when n2 left", key, a.Name, c.Name)
		}
		if a.Name == "n2" {
			moved++
		}
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if won[n] < 800 || won[n] > 1200 {
			t.Errorf("%s won %d of 3000 keys, want about 1000 each: %v", n, won[n], won)
		}
	}
	t.Logf("keys per member: %v; %d moved when n2 left", won, moved)
}
