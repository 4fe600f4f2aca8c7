package autoscale

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/pool"
	"go.uber.org/goleak"
)

// ants starts the goroutines of its package-level default pool at init; they are not ours.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakePool is a pool whose load the test sets.
type fakePool struct{ size, running, waiting int }

func (p *fakePool) Size() int    { return p.size }
func (p *fakePool) Running() int { return p.running }
func (p *fakePool) Waiting() int { return p.waiting }

// tune adapts a pool's Tune to a controller's Resize.
func tune(p interface{ Tune(int) (int, error) }) func(int, string) (int, error) {
	return func(n int, _ string) (int, error) { return p.Tune(n) }
}
func (p *fakePool) Tune(n int) (int, error) {
	old := p.size
	p.size = n
	return old, nil
}

// TestHTTPGrowsForIOBound: service time stays 50 ms whatever the thread count (the handler waits on
// I/O), and the pool is saturated: the limit climbs to max.
func TestHTTPGrowsForIOBound(t *testing.T) {
	p := &fakePool{size: 4}
	h, err := NewHTTP(HTTPOptions{Bounds: Bounds{2, 64}, Pool: p, Resize: tune(p), Logger: quiet, CPUWait: noWait})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 60 {
		p.running = p.size
		for range 20 {
			h.Observe("", 50*time.Millisecond)
		}
		h.Tick(now.Add(time.Duration(i) * time.Second))
	}
	if p.size < 32 {
		t.Fatalf("I/O-bound: size %d after 60 ticks (a probe may have just halved it), want near 64", p.size)
	}
}

// TestHTTPSettlesForCPUBound: on 2 cores, service time grows with the threads beyond 2 (they share
// the cores); the limit comes down near the core count and stays within bounds.
func TestHTTPSettlesForCPUBound(t *testing.T) {
	p := &fakePool{size: 32}
	h, _ := NewHTTP(HTTPOptions{Bounds: Bounds{1, 64}, Pool: p, Resize: tune(p), Logger: quiet, CPUWait: noWait})
	const cores = 2
	now := time.Now()
	var sizes []int
	for i := range 120 {
		p.running = p.size
		lat := 10 * time.Millisecond * time.Duration(max(1, p.size)) / cores
		if p.size < cores {
			lat = 10 * time.Millisecond
		}
		for range 20 {
			h.Observe("", lat)
		}
		h.Tick(now.Add(time.Duration(i) * time.Second))
		sizes = append(sizes, p.size)
	}
	for _, s := range sizes[10:] {
		if s < 1 || s > 3*cores {
			t.Fatalf("CPU-bound: sizes %v, want settled near %d cores", sizes, cores)
		}
	}
}

// noWait is a CPUWait for tests where the cores are never full, so latency alone steers.
func noWait() float64 { return 0 }

// TestHTTPCPUBoundStopsTryingToGrow: once growth past the cores has failed, the controller waits
// longer and longer before trying again, so few ticks run with threads sharing cores (each such
// tick sets the p99 of its neighbourhood). CPUWait says nothing here: latency alone must do it.
func TestHTTPCPUBoundStopsTryingToGrow(t *testing.T) {
	p := &fakePool{size: 16}
	h, _ := NewHTTP(HTTPOptions{Bounds: Bounds{1, 128}, Pool: p, Resize: tune(p), Logger: quiet, CPUWait: noWait})
	const cores = 2
	now := time.Now()
	over := 0
	for i := range 200 {
		p.running = p.size
		lat := 6 * time.Millisecond * time.Duration(max(cores, p.size)) / cores
		for range 20 {
			h.Observe("", lat)
		}
		h.Tick(now.Add(time.Duration(i) * time.Second))
		if i >= 40 && p.size > cores {
			over++
		}
	}
	if over > 4 {
		t.Fatalf("CPU-bound: %d of the last 160 ticks ran with more than %d threads, want at most 4", over, cores)
	}
	if p.size != cores {
		t.Fatalf("CPU-bound: ended at %d threads, want %d", p.size, cores)
	}
}

// TestHTTPHoldsWhenCoresAreFull: a saturated pool whose latency stays flat would grow, but not
// while goroutines wait for a CPU: the cores are full and more threads would only share them. One
// quiet tick in between (chance, seen on /demo/cpu) does not let it grow; two in a row do.
func TestHTTPHoldsWhenCoresAreFull(t *testing.T) {
	p := &fakePool{size: 2}
	tick, full := 0, true
	wait := func() float64 {
		if full && tick%7 != 3 {
			return 0.003
		}
		return 0.0001
	}
	h, _ := NewHTTP(HTTPOptions{Bounds: Bounds{2, 128}, Pool: p, Resize: tune(p), Logger: quiet, CPUWait: wait})
	now := time.Now()
	run := func(ticks int) {
		for range ticks {
			p.running = p.size
			for range 20 {
				h.Observe("", 2500*time.Microsecond) // flat: latency gives no reason to stop growing
			}
			h.Tick(now.Add(time.Duration(tick) * time.Second))
			tick++
		}
	}
	run(100)
	if p.size != 2 {
		t.Fatalf("grew to %d while the cores were full", p.size)
	}
	full = false
	run(10)
	if p.size <= 2 {
		t.Fatalf("still %d threads with free cores and flat latency", p.size)
	}
}

func TestHTTPIdleDoesNotGrow(t *testing.T) {
	p := &fakePool{size: 4}
	h, _ := NewHTTP(HTTPOptions{Bounds: Bounds{2, 64}, Pool: p, Resize: tune(p), Logger: quiet})
	for range 10 {
		p.running = 1 // never saturated
		h.Observe("", time.Millisecond)
		h.Tick(time.Now())
	}
	if p.size != 4 {
		t.Fatalf("an idle pool grew to %d", p.size)
	}
}

// TestPausedControllerLeavesThePool: while Paused says true (a manual resize pinned the pool) the
// running controller's ticks change nothing, even with every slot busy and work waiting.
func TestPausedControllerLeavesThePool(t *testing.T) {
	p := &fakePool{size: 4, running: 4, waiting: 100}
	var asked atomic.Int64
	j, err := NewJobs(JobsOptions{Bounds: Bounds{2, 16}, Pool: p, Resize: tune(p), Cores: 2, Interval: time.Millisecond,
		Backlog: func() int { return 100 }, Logger: quiet, CPUWait: func() float64 { return 0 },
		Paused: func() bool { asked.Add(1); return true }})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	tandemtest.WaitFor(t, "ticks that ask whether the pool is pinned", func() bool { return asked.Load() >= 5 })
	j.Stop()
	if p.size != 4 {
		t.Fatalf("a pinned pool was resized to %d", p.size)
	}
}

func TestJobsGrowsHoldsAndShrinks(t *testing.T) {
	p := &fakePool{size: 2}
	var backlog atomic.Int64
	var cpu time.Duration
	var changes int
	j, err := NewJobs(JobsOptions{Bounds: Bounds{2, 16}, Pool: p, Resize: tune(p), Cores: 2, Quiet: 10 * time.Second,
		Backlog: func() int { return int(backlog.Load()) }, CPU: func() time.Duration { return cpu }, Logger: quiet,
		OnChange: func(string, int, int, string) { changes++ }})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	j.Tick(now)
	// I/O-bound jobs waiting, workers busy, CPU at 10%: grow to max.
	backlog.Store(100)
	for i := 1; i <= 30; i++ {
		p.running = p.size
		cpu += 200 * time.Millisecond // 0.2 s of CPU per second on 2 cores = 10%
		j.Tick(now.Add(time.Duration(i) * time.Second))
	}
	if p.size != 16 {
		t.Fatalf("size %d, want 16", p.size)
	}
	// CPU-bound: 95% busy: no growth even with jobs waiting.
	p.size = 4
	for i := 31; i <= 40; i++ {
		p.running = p.size
		cpu += 1900 * time.Millisecond
		j.Tick(now.Add(time.Duration(i) * time.Second))
	}
	if p.size != 4 {
		t.Fatalf("grew to %d while CPU was saturated", p.size)
	}
	// Quiet: nothing waiting, workers idle: one step down per quiet period, down to min.
	backlog.Store(0)
	p.running = 0
	for i := 41; i <= 100; i++ {
		j.Tick(now.Add(time.Duration(i) * time.Second))
	}
	if p.size != 2 {
		t.Fatalf("size %d after a quiet minute, want 2", p.size)
	}
	if changes == 0 {
		t.Fatal("changes not reported")
	}
}

// TestJobsCoresFollowTheLimit: the same CPU use (0.9 s a second) leaves room on 2 cores and none
// on 1, so the pool grows while CoresNow says 2 and holds once it says 1.
func TestJobsCoresFollowTheLimit(t *testing.T) {
	p := &fakePool{size: 2}
	var cpu time.Duration
	var cores atomic.Int64
	cores.Store(2)
	j, err := NewJobs(JobsOptions{Bounds: Bounds{1, 64}, Pool: p, Resize: tune(p), CoresNow: func() int { return int(cores.Load()) },
		Backlog: func() int { return 100 }, CPU: func() time.Duration { return cpu }, Logger: quiet, CPUWait: func() float64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tick := func(i int) {
		p.running = p.size
		cpu += 900 * time.Millisecond
		j.Tick(now.Add(time.Duration(i) * time.Second))
	}
	j.Tick(now)
	tick(1)
	tick(2)
	if p.size <= 2 {
		t.Fatalf("on 2 cores at 45%% the pool stayed at %d", p.size)
	}
	cores.Store(1)
	grown := p.size
	for i := 3; i <= 6; i++ {
		tick(i)
	}
	if p.size != grown {
		t.Fatalf("on 1 core at 90%% the pool went from %d to %d", grown, p.size)
	}
}

// TestJobsRealPool drives the controller's own loop against a real pool running real sleeping
// tasks: it grows past its minimum while tasks wait, never past max.
func TestJobsRealPool(t *testing.T) {
	p, err := pool.New(pool.Options{Name: "jobs", Size: 1, Backlog: 1000, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(context.Background())
	var pending atomic.Int64
	for range 60 {
		pending.Add(1)
		go func() {
			_ = p.Do(context.Background(), func() { time.Sleep(20 * time.Millisecond) })
			pending.Add(-1)
		}()
	}
	j, _ := NewJobs(JobsOptions{Bounds: Bounds{1, 8}, Pool: p, Resize: tune(p), Cores: 2, Interval: 20 * time.Millisecond,
		Backlog: func() int { return 0 }, Logger: quiet})
	if err := j.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer j.Stop()
	peak := 0
	deadline := time.Now().Add(10 * time.Second)
	for pending.Load() > 0 && time.Now().Before(deadline) {
		peak = max(peak, p.Size())
		time.Sleep(5 * time.Millisecond)
	}
	if peak < 4 || peak > 8 {
		t.Fatalf("peak size %d, want grown past min and at most 8", peak)
	}
}
