package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/sizing"
)

// ants starts the goroutines of its package-level default pool at init; they are not ours.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

func newTestPool(t *testing.T, size, backlog int) *Pool {
	t.Helper()
	p, err := New(Options{Name: "test", Size: size, Backlog: backlog, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Release(ctx); err != nil {
			t.Errorf("release: %v", err)
		}
	})
	return p
}

func TestNewValidates(t *testing.T) {
	for _, o := range []Options{{Size: -1}, {Size: MaxSize + 1}, {Size: 1, Backlog: -1}, {Size: 1, Backlog: MaxBacklog + 1}} {
		if _, err := New(o); !errors.Is(err, ErrInvalidSize) {
			t.Errorf("New(%+v) = %v, want ErrInvalidSize", o, err)
		}
	}
}

func TestAcquireBacklogAndFIFO(t *testing.T) {
	p := newTestPool(t, 1, 2)
	ctx := context.Background()
	release, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := p.Acquire(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			r()
		}()
		tandemtest.WaitFor(t, "waiter queued", func() bool { return p.Waiting() == i+1 })
	}
	if _, err := p.Acquire(ctx); !errors.Is(err, ErrBacklogFull) {
		t.Fatalf("third waiter: got %v, want ErrBacklogFull", err)
	}
	release()
	wg.Wait()
	if len(order) != 2 || order[0] != 0 || order[1] != 1 {
		t.Fatalf("waiters served in order %v, want [0 1]", order)
	}
	if s := p.Stats(); s.Running != 0 || s.Waiting != 0 || s.Rejected != 1 {
		t.Fatalf("stats after = %+v", s)
	}
}

func TestAcquireTimeout(t *testing.T) {
	p := newTestPool(t, 1, 4)
	release, _ := p.Acquire(context.Background())
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(ctx); !errors.Is(err, ErrQueueTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want ErrQueueTimeout wrapping DeadlineExceeded", err)
	}
	if p.Waiting() != 0 {
		t.Fatalf("timed-out waiter still queued")
	}
}

func TestTuneGrowAdmitsWaitersAndShrinkDrains(t *testing.T) {
	p := newTestPool(t, 1, 10)
	ctx := context.Background()
	first, _ := p.Acquire(ctx)
	got := make(chan func(), 3)
	for range 3 {
		go func() {
			r, err := p.Acquire(ctx)
			if err != nil {
				t.Error(err)
			}
			got <- r
		}()
	}
	tandemtest.WaitFor(t, "3 waiters", func() bool { return p.Waiting() == 3 })
	if old, err := p.Tune(3); err != nil || old != 1 {
		t.Fatalf("Tune(3) = %d, %v", old, err)
	}
	releases := []func(){first, <-got, <-got}
	if p.Running() != 3 || p.Waiting() != 1 {
		t.Fatalf("after grow: running %d waiting %d", p.Running(), p.Waiting())
	}
	// Shrink below running: nothing is interrupted, and the last waiter gets in only once
	// running fell below the new size.
	if _, err := p.Tune(1); err != nil {
		t.Fatal(err)
	}
	releases[0]()
	releases[1]()
	select {
	case <-got:
		t.Fatal("waiter admitted while running >= size")
	case <-time.After(20 * time.Millisecond):
	}
	releases[2]()
	(<-got)()
	if s := p.Stats(); s.Running != 0 || s.Size != 1 {
		t.Fatalf("stats after = %+v", s)
	}
	if _, err := p.Tune(0); !errors.Is(err, ErrInvalidSize) {
		t.Fatalf("Tune(0) = %v", err)
	}
}

func TestSubmitRunsAndRecoversPanics(t *testing.T) {
	p := newTestPool(t, 2, 100)
	var ran atomic.Int64
	var maxRunning atomic.Int64
	var running atomic.Int64
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		err := p.Submit(context.Background(), func() {
			defer wg.Done()
			n := running.Add(1)
			defer running.Add(-1)
			for {
				m := maxRunning.Load()
				if n <= m || maxRunning.CompareAndSwap(m, n) {
					break
				}
			}
			ran.Add(1)
			if i%10 == 0 {
				panic("boom")
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if ran.Load() != 50 {
		t.Fatalf("ran %d tasks, want 50", ran.Load())
	}
	if maxRunning.Load() > 2 {
		t.Fatalf("%d tasks ran at once in a pool of 2", maxRunning.Load())
	}
	tandemtest.WaitFor(t, "panics counted", func() bool { return p.Stats().Panics == 5 })
	tandemtest.WaitFor(t, "slots released", func() bool { return p.Running() == 0 })
}

func TestDoWaits(t *testing.T) {
	p := newTestPool(t, 1, 1)
	var done atomic.Bool
	if err := p.Do(context.Background(), func() { time.Sleep(5 * time.Millisecond); done.Store(true) }); err != nil {
		t.Fatal(err)
	}
	if !done.Load() {
		t.Fatal("Do returned before the task finished")
	}
}

func TestReleaseRefusesWaitersAndNewCallers(t *testing.T) {
	p, err := New(Options{Size: 1, Backlog: 5})
	if err != nil {
		t.Fatal(err)
	}
	release, _ := p.Acquire(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := p.Acquire(context.Background()); errc <- err }()
	tandemtest.WaitFor(t, "waiter", func() bool { return p.Waiting() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { time.Sleep(10 * time.Millisecond); release() }()
	if err := p.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter got %v, want ErrClosed", err)
	}
	if err := p.Submit(context.Background(), func() {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Release = %v", err)
	}
}

// TestConcurrentChurn hammers Acquire, Tune and timeouts together; run with -race.
func TestConcurrentChurn(t *testing.T) {
	p := newTestPool(t, 4, 8)
	var inside, peak atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		sizes := []int{1, 8, 2, 6, 4}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = p.Tune(sizes[i%len(sizes)])
			time.Sleep(100 * time.Microsecond)
		}
	}()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 300 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
				r, err := p.Acquire(ctx)
				cancel()
				if err != nil {
					continue
				}
				n := inside.Add(1)
				if n > peak.Load() {
					peak.Store(n)
				}
				inside.Add(-1)
				r()
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	if peak.Load() > 8 {
		t.Fatalf("%d holders at once, above the largest size 8", peak.Load())
	}
	if s := p.Stats(); s.Running != 0 || s.Waiting != 0 {
		t.Fatalf("leaked slots: %+v", s)
	}
}

// TestFinishingWorkerTakesQueuedTasks: a worker whose task ends runs the tasks waiting in the
// backlog itself, in FIFO order, on its own (pinned) thread, and goes on after a panic; an Acquire
// waiter still gets the slot handed over; a Submit whose context ends while it waits never runs.
func TestFinishingWorkerTakesQueuedTasks(t *testing.T) {
	cpus, err := sizing.Affinity()
	if err != nil {
		t.Skipf("no CPU affinity here: %v", err)
	}
	p, err := New(Options{Name: "pinned", Size: 1, Backlog: 10, PinCPUs: cpus[:1], Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Release(ctx); err != nil {
			t.Errorf("release: %v", err)
		}
	}()
	ctx := context.Background()

	var mu sync.Mutex
	var order []int
	tids := map[int]bool{}
	record := func(i int) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, i)
		tids[Gettid()] = true
	}
	block := make(chan struct{})
	if err := p.Submit(ctx, func() { record(0); <-block }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	submitted := make(chan error, 10)
	canceled, cancel := context.WithCancel(ctx)
	var ranCanceled atomic.Bool
	for i := 1; i <= 5; i++ {
		c, task := ctx, func() { record(i); wg.Done() }
		switch i {
		case 2:
			task = func() { record(i); wg.Done(); panic("boom") }
		case 3:
			c, task = canceled, func() { ranCanceled.Store(true) }
		}
		if i != 3 {
			wg.Add(1)
		}
		go func() { submitted <- p.Submit(c, task) }()
		tandemtest.WaitFor(t, "task in the backlog", func() bool { return p.Waiting() == i })
	}
	cancel()
	if err := <-submitted; !errors.Is(err, ErrQueueTimeout) {
		t.Fatalf("Submit with its context canceled while waiting = %v, want ErrQueueTimeout", err)
	}
	// An Acquire waiter behind the tasks gets the slot once they are done.
	acquired := make(chan func(), 1)
	go func() {
		r, err := p.Acquire(ctx)
		if err != nil {
			t.Error(err)
		}
		acquired <- r
	}()
	tandemtest.WaitFor(t, "Acquire in the backlog", func() bool { return p.Waiting() == 5 })
	close(block)
	wg.Wait()
	for range 4 {
		if err := <-submitted; err != nil {
			t.Fatalf("Submit = %v", err)
		}
	}
	release := <-acquired
	if s := p.Stats(); s.Running != 1 || s.Waiting != 0 || s.Panics != 1 {
		t.Fatalf("stats with the Acquire caller holding the slot: %+v", s)
	}
	release()
	mu.Lock()
	defer mu.Unlock()
	if want := []int{0, 1, 2, 4, 5}; fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("ran in order %v, want %v", order, want)
	}
	if len(tids) != 1 {
		t.Fatalf("tasks ran on %d threads, want the one pinned worker's", len(tids))
	}
	if ranCanceled.Load() {
		t.Fatal("a task whose Submit was canceled ran")
	}
	if p.Running() != 0 {
		t.Fatalf("running %d after all released", p.Running())
	}
}
