package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

func TestGoQueuesWithoutBlockingAndDropsOnCancel(t *testing.T) {
	p := newTestPool(t, 1, 5)
	ctx := context.Background()
	block := make(chan struct{})
	started := make(chan struct{})
	if err := p.Go(ctx, func() { close(started); <-block }, func(err error) { t.Errorf("first task dropped: %v", err) }); err != nil {
		t.Fatal(err)
	}
	<-started

	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	canceled, cancel := context.WithCancelCause(ctx)
	dropped := make(chan error, 1)
	for i := 1; i <= 5; i++ {
		c, task, drop := ctx, func() { mu.Lock(); order = append(order, i); mu.Unlock(); wg.Done() }, func(err error) { t.Errorf("task %d dropped: %v", i, err) }
		if i == 3 {
			c, task, drop = canceled, func() { t.Error("the canceled task ran") }, func(err error) { dropped <- err }
		} else {
			wg.Add(1)
		}
		// Go returns at once although the only worker is busy: the task waits in the backlog.
		if err := p.Go(c, task, drop); err != nil {
			t.Fatalf("Go %d = %v", i, err)
		}
	}
	if w := p.Waiting(); w != 5 {
		t.Fatalf("waiting = %d, want 5", w)
	}
	if err := p.Go(ctx, func() {}, func(error) {}); !errors.Is(err, ErrBacklogFull) {
		t.Fatalf("Go past the backlog = %v, want ErrBacklogFull", err)
	}
	why := errors.New("job canceled")
	cancel(why)
	if err := <-dropped; !errors.Is(err, ErrQueueTimeout) || !errors.Is(err, why) {
		t.Fatalf("dropped with %v, want ErrQueueTimeout wrapping the context's cause", err)
	}
	tandemtest.WaitFor(t, "the dropped task out of the backlog", func() bool { return p.Waiting() == 4 })
	close(block)
	wg.Wait()
	if want := []int{1, 2, 4, 5}; len(order) != 4 || order[0] != 1 || order[1] != 2 || order[2] != 4 || order[3] != 5 {
		t.Fatalf("ran in order %v, want %v (FIFO)", order, want)
	}
	if s := p.Stats(); s.Rejected != 2 {
		t.Fatalf("rejected = %d, want 2 (backlog full, canceled)", s.Rejected)
	}
}

// A slot reaches a waiting Go task by every path: an Acquire holder's release, a resize, and a
// finishing worker (above); closing the pool drops it.
func TestGoWaiterGetsEverySlotPath(t *testing.T) {
	ctx := context.Background()
	ran := make(chan int, 4)
	noDrop := func(err error) { t.Errorf("dropped: %v", err) }

	p := newTestPool(t, 1, 5)
	release, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Go(ctx, func() { ran <- 1 }, noDrop); err != nil {
		t.Fatal(err)
	}
	release()
	if got := <-ran; got != 1 {
		t.Fatal(got)
	}

	block := make(chan struct{})
	if err := p.Go(ctx, func() { <-block }, noDrop); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 3; i++ {
		if err := p.Go(ctx, func() { ran <- i }, noDrop); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Tune(3); err != nil {
		t.Fatal(err)
	}
	got := map[int]bool{<-ran: true, <-ran: true}
	if !got[2] || !got[3] {
		t.Fatalf("after growing, ran %v, want 2 and 3", got)
	}
	close(block)

	q := newTestPool(t, 1, 5)
	hold := make(chan struct{})
	if err := q.Go(ctx, func() { <-hold }, noDrop); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	if err := q.Go(ctx, func() { t.Error("ran after Release") }, func(err error) { closed <- err }); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- q.Release(ctx) }()
	if err := <-closed; !errors.Is(err, ErrClosed) {
		t.Fatalf("dropped by Release with %v, want ErrClosed", err)
	}
	close(hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := q.Go(ctx, func() {}, noDrop); !errors.Is(err, ErrClosed) {
		t.Fatalf("Go after Release = %v, want ErrClosed", err)
	}
}

// Exactly one of task and dropped runs for every accepted Go, however cancels race the workers.
func TestGoRunsOrDropsExactlyOnce(t *testing.T) {
	const n = 2000
	p := newTestPool(t, 2, n)
	var calls [n]atomic.Int32
	var wg sync.WaitGroup
	var ran, dropped atomic.Int32
	cancels := make([]context.CancelFunc, n)
	deadline := time.Now().Add(10 * time.Second)
	for i := range n {
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		wg.Add(1)
		err := p.Go(ctx, func() {
			defer wg.Done()
			calls[i].Add(1)
			ran.Add(1)
		}, func(error) {
			defer wg.Done()
			calls[i].Add(1)
			dropped.Add(1)
		})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			go cancels[i-1]() // race the cancel of an earlier task with the workers taking it
		}
		if time.Now().After(deadline) {
			t.Fatal("bounded loop ran out of time")
		}
	}
	wg.Wait()
	for i := range cancels {
		cancels[i]()
		if c := calls[i].Load(); c != 1 {
			t.Fatalf("task %d: task and dropped ran %d times together, want once", i, c)
		}
	}
	if ran.Load() == 0 || ran.Load()+dropped.Load() != n {
		t.Fatalf("ran %d, dropped %d, want %d in all", ran.Load(), dropped.Load(), n)
	}
	t.Logf("ran %d, dropped %d", ran.Load(), dropped.Load())
}
