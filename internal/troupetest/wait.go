package troupetest

import (
	"testing"
	"time"
)

// WaitFor polls cond until it returns nil, failing the test with cond's
// last error — what is still not true — once within has passed. It is the
// one polling helper of Troupe's tests: never sleep, then assert.
func WaitFor(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not true after %s: %v", within, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
