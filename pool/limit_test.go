package pool

import (
	"context"
	"sync"
	"testing"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// TestLimitHoldsTasksBackWithoutResizing: a limit of 1 on a pool of 4 runs Go's tasks one at a
// time, the rest wait in the backlog, and the size stays 4; lifting it starts the waiters at once;
// a lower limit interrupts none of the tasks running, and the next starts only once fewer than
// the limit run (where a finishing worker takes its next task).
func TestLimitHoldsTasksBackWithoutResizing(t *testing.T) {
	p := newTestPool(t, 4, 100)
	ctx := context.Background()
	var mu sync.Mutex
	running, most := 0, 0
	release := make(chan struct{})
	task := func() {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
	}
	takeMost := func() int { mu.Lock(); defer mu.Unlock(); m := most; most = running; return m }
	if old := p.SetLimit(1); old != 0 {
		t.Fatalf("SetLimit(1) = %d, want 0", old)
	}
	for range 4 {
		if err := p.Go(ctx, task, func(err error) { t.Errorf("dropped: %v", err) }); err != nil {
			t.Fatal(err)
		}
	}
	if s := p.Stats(); s.Size != 4 || s.Running != 1 || s.Waiting != 3 || p.Free() != 0 || p.Limit() != 1 {
		t.Fatalf("under limit 1: %+v, free %d, limit %d", s, p.Free(), p.Limit())
	}
	release <- struct{}{} // the first ends; the worker takes the next
	tandemtest.WaitFor(t, "the next task", func() bool { return p.Waiting() == 2 && p.Running() == 1 })
	if m := takeMost(); m != 1 {
		t.Fatalf("%d tasks ran at once under limit 1", m)
	}

	p.SetLimit(0)
	if s := p.Stats(); s.Running != 3 || s.Waiting != 0 {
		t.Fatalf("after lifting the limit: %+v, want the 2 waiters started at once", s)
	}
	for range 2 {
		if err := p.Go(ctx, task, func(err error) { t.Errorf("dropped: %v", err) }); err != nil {
			t.Fatal(err)
		}
	}
	tandemtest.WaitFor(t, "4 tasks running", func() bool { mu.Lock(); defer mu.Unlock(); return running == 4 })
	if p.Waiting() != 1 {
		t.Fatalf("waiting %d, want 1 (4 run on a pool of 4)", p.Waiting())
	}
	p.SetLimit(2)
	takeMost()
	release <- struct{}{}
	release <- struct{}{}
	if p.Waiting() != 1 {
		t.Fatalf("waiting %d with 2 running at limit 2: the waiter started while running >= limit", p.Waiting())
	}
	release <- struct{}{} // 1 running now: the waiter starts
	tandemtest.WaitFor(t, "the waiter", func() bool { return p.Waiting() == 0 })
	release <- struct{}{}
	release <- struct{}{}
	tandemtest.WaitFor(t, "all done", func() bool { return p.Running() == 0 })
	if m := takeMost(); m != 4 {
		t.Fatalf("most at once after the limit came down: %d, want the 4 running then", m)
	}
}
