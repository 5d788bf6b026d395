package dispatch

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/troupehq/troupe/internal/troupetest"
)

func TestPoolRunsEverythingAndParksAtMostMax(t *testing.T) {
	p := New(10, 4)
	const n = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	ran := 0
	release := make(chan struct{})
	for range n {
		wg.Add(1)
		p.Go(func() {
			defer wg.Done()
			<-release // all n at once: the pool must not make any wait for another
			mu.Lock()
			ran++
			mu.Unlock()
		})
	}
	close(release)
	wg.Wait()
	if ran != n {
		t.Fatalf("ran %d of %d", ran, n)
	}
	troupetest.WaitFor(t, 5*time.Second, func() error {
		if n := p.parked.Load(); n != 4 {
			return fmt.Errorf("%d goroutines parked, want the maximum 4", n)
		}
		return nil
	})
	// Parked goroutines take new work.
	done := make(chan struct{})
	p.Go(func() { close(done) })
	<-done
	if p.Throughput() != 10 {
		t.Errorf("throughput %d, want 10", p.Throughput())
	}
}
