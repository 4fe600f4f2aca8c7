package jobs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// gated is a kind whose jobs run until the test releases them one by one, counting how many run at
// once.
type gated struct {
	mu      sync.Mutex
	running int
	most    int
	started chan struct{}
	release chan struct{}
}

func newGated(t *testing.T, rt *jobs.Runtime) *gated {
	g := &gated{started: make(chan struct{}, 1000), release: make(chan struct{})}
	err := rt.RegisterFunc("gated", func(ctx context.Context, _ *jobs.Job) (any, error) {
		g.mu.Lock()
		g.running++
		g.most = max(g.most, g.running)
		g.mu.Unlock()
		defer func() { g.mu.Lock(); g.running--; g.mu.Unlock() }()
		g.started <- struct{}{}
		select {
		case <-g.release:
			return nil, nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// awaitStart waits for the next job to start, at most 10 s.
func (g *gated) awaitStart(t *testing.T) {
	t.Helper()
	select {
	case <-g.started:
	case <-time.After(10 * time.Second):
		t.Fatal("no job started within 10 s")
	}
}

// most returns the most jobs that ran at once since the last call, and resets it.
func (g *gated) takeMost() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.most
	g.most = g.running
	return m
}

func enqueueGated(t *testing.T, rt *jobs.Runtime, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = enqueue(t, rt, jobs.EnqueueParams{Kind: "gated"}).ID
	}
	return ids
}

// waitLoad polls until the runtime has leased jobs leased and g runs running, at most 10 s.
func waitLoad(t *testing.T, rt *jobs.Runtime, g *gated, leased, running int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		n := g.running
		g.mu.Unlock()
		if rt.Inflight() == leased && n == running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs leased and %d running after 10 s, want %d and %d", rt.Inflight(), n, leased, running)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestYieldLimitsTheJobsRunning: with a yield limit of 1 on a pool of 4 one job runs at once, the
// dispatcher leasing no more than the limit plus the prefetch, and each is acknowledged and
// followed by the next. Lifting the limit starts 4 at once. A lower limit interrupts none of the
// jobs running: each succeeds at its first attempt; then the new limit holds.
func TestYieldLimitsTheJobsRunning(t *testing.T) {
	const prefetch = 4
	rt, b := setup(t, bbolt(), 4, func(o *jobs.Options) { o.Prefetch = prefetch })
	g := newGated(t, rt)
	rt.SetYield(1, "test: one at a time")
	if y := rt.Yield(); y.Limit != 1 || y.Reason != "test: one at a time" || y.Yields != 1 || y.Since.IsZero() {
		t.Fatalf("Yield() = %+v", y)
	}
	if b.pool.Size() != 4 || b.pool.Limit() != 1 {
		t.Fatalf("pool size %d limit %d, want 4 and 1: a yield does not resize", b.pool.Size(), b.pool.Limit())
	}
	ids := enqueueGated(t, rt, 8)
	for range ids {
		g.awaitStart(t)
		if n := rt.Inflight(); n > 1+prefetch {
			t.Fatalf("%d jobs leased under a limit of 1 with prefetch %d", n, prefetch)
		}
		g.release <- struct{}{}
	}
	for _, id := range ids {
		waitState(t, rt, id, jobs.StateSucceeded)
	}
	if m := g.takeMost(); m != 1 {
		t.Fatalf("%d jobs ran at once under a limit of 1", m)
	}

	rt.SetYield(0, "test: lifted")
	ids = enqueueGated(t, rt, 8)
	for range 4 {
		g.awaitStart(t) // all four workers take a job
	}
	rt.SetYield(2, "test: two")
	if y := rt.Yield(); y.Limit != 2 || y.Yields != 2 {
		t.Fatalf("Yield() = %+v, want limit 2 after 2 yields", y)
	}
	for range ids {
		g.release <- struct{}{} // the four running, then the four prefetched as they start
	}
	for range 4 {
		g.awaitStart(t)
	}
	for _, id := range ids {
		if j := waitState(t, rt, id, jobs.StateSucceeded); j.Attempt != 1 {
			t.Fatalf("job %s succeeded at attempt %d: the limit interrupted it", id, j.Attempt)
		}
	}
	g.takeMost()
	ids = enqueueGated(t, rt, 6)
	waitLoad(t, rt, g, 2+prefetch, 2)
	for range ids {
		g.awaitStart(t)
		g.release <- struct{}{}
	}
	for _, id := range ids {
		waitState(t, rt, id, jobs.StateSucceeded)
	}
	if m := g.takeMost(); m != 2 {
		t.Fatalf("%d jobs ran at once under a limit of 2 on a pool of 4", m)
	}
}

// TestYieldOffIsTodays: no limit, or one at or above the pool's size, leases size + prefetch jobs
// as without yielding.
func TestYieldOffIsTodays(t *testing.T) {
	for _, limit := range []int{0, 2, 3} {
		rt, _ := setup(t, bbolt(), 2, func(o *jobs.Options) { o.Prefetch = 3 })
		g := newGated(t, rt)
		rt.SetYield(limit, "test")
		ids := enqueueGated(t, rt, 8)
		waitLoad(t, rt, g, 2+3, 2) // both workers busy, 3 prefetched
		for range ids {
			g.awaitStart(t)
			g.release <- struct{}{}
		}
		for _, id := range ids {
			waitState(t, rt, id, jobs.StateSucceeded)
		}
		if m := g.takeMost(); m != 2 {
			t.Fatalf("limit %d: %d jobs ran at once on a pool of 2", limit, m)
		}
	}
}
