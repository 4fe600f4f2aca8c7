package autoscale

import (
	"testing"
	"time"
)

// jobsSetup returns a jobs controller on a fake pool whose jobs and CPU time the test sets,
// already past its first tick at now (Tick's argument is the controller's clock).
func jobsSetup(t *testing.T, size int, b Bounds) (*Jobs, *fakePool, *jobsLoad, time.Time) {
	t.Helper()
	p := &fakePool{size: size}
	l := &jobsLoad{}
	j, err := NewJobs(JobsOptions{Bounds: b, Pool: p, Resize: tune(p), Cores: 2, Logger: quiet, CPUWait: func() float64 { return l.cpuWait },
		Backlog: func() int { return max(0, l.jobs-p.running) }, CPU: func() time.Duration { return l.cpu }})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	j.Tick(now)
	return j, p, l, now
}

// jobsLoad is the work a fake jobs pool has: jobs not yet done (running or waiting), and the
// process's CPU time so far.
type jobsLoad struct {
	jobs    int
	cpu     time.Duration
	cpuWait float64 // seconds
}

// TestJobsGrowsToTheBacklogAtOnce: 386 I/O-bound jobs wait behind one busy worker and the CPU
// idles: the pool reaches max within two ticks of 2 s (the first measures what a worker costs),
// not one worker a tick. With few jobs waiting it grows to what they need, no further.
func TestJobsGrowsToTheBacklogAtOnce(t *testing.T) {
	j, p, l, now := jobsSetup(t, 1, Bounds{1, 16})
	l.jobs = 386
	var sizes []int
	for i := 1; i <= 2; i++ {
		p.running = min(p.size, l.jobs)
		l.cpu += time.Duration(p.size) * 20 * time.Millisecond // 1% of a core per worker
		j.Tick(now.Add(time.Duration(i) * 2 * time.Second))
		sizes = append(sizes, p.size)
	}
	if p.size != 16 {
		t.Fatalf("sizes %v with 386 jobs waiting and the CPU idle, want 16 within two ticks", sizes)
	}

	j, p, l, now = jobsSetup(t, 2, Bounds{1, 16})
	l.jobs = 5
	for i := 1; i <= 4; i++ {
		p.running = min(p.size, l.jobs)
		l.cpu += time.Duration(p.size) * 20 * time.Millisecond
		j.Tick(now.Add(time.Duration(i) * 2 * time.Second))
	}
	if p.size != 5 {
		t.Fatalf("size %d with 2 busy workers and 3 jobs waiting, want 5", p.size)
	}
}

// TestJobsCPUBoundStopsAtTheCores: each worker keeps a core busy; with 386 jobs waiting the pool
// grows only while CPU is spare, to the 2 cores, not to max. On a machine whose cores other
// processes share, the CPU share says there is room, but goroutines wait for a CPU: no growth.
func TestJobsCPUBoundStopsAtTheCores(t *testing.T) {
	j, p, l, now := jobsSetup(t, 1, Bounds{1, 16})
	l.jobs = 386
	for i := 1; i <= 20; i++ {
		p.running = min(p.size, l.jobs)
		l.cpu += time.Duration(min(p.size, 2)) * 2 * time.Second
		j.Tick(now.Add(time.Duration(i) * 2 * time.Second))
	}
	if p.size > 3 {
		t.Fatalf("CPU-bound jobs on 2 cores: grew to %d workers", p.size)
	}

	j, p, l, now = jobsSetup(t, 2, Bounds{1, 16})
	l.jobs, l.cpuWait = 386, 0.003
	for i := 1; i <= 10; i++ {
		p.running = min(p.size, l.jobs)
		l.cpu += time.Second // half of the 2 cores in 2 s: the rest went to other processes
		j.Tick(now.Add(time.Duration(i) * 2 * time.Second))
	}
	if p.size != 2 {
		t.Fatalf("grew to %d workers while goroutines waited for a CPU", p.size)
	}
}

// TestJobsShrinksWhenIdle: after Quiet (30 s) with nothing waiting and at most half the workers
// busy, the pool comes down to twice the most it used in that time, at least min, in one step;
// a busy moment starts the quiet period over.
func TestJobsShrinksWhenIdle(t *testing.T) {
	j, p, _, now := jobsSetup(t, 16, Bounds{2, 16})
	at := func(s int) time.Time { return now.Add(time.Duration(s) * time.Second) }
	for s := 2; s <= 28; s += 2 {
		p.running = 3
		j.Tick(at(s))
	}
	if p.size != 16 {
		t.Fatalf("shrank to %d before a quiet period passed", p.size)
	}
	p.running = 3
	j.Tick(at(30))
	if p.size != 6 {
		t.Fatalf("size %d after 30 s with at most 3 of 16 busy, want 6", p.size)
	}
	p.running = 6 // busy again: more than half
	j.Tick(at(32))
	for s := 34; s <= 60; s += 2 {
		p.running = 0
		j.Tick(at(s))
	}
	if p.size != 6 {
		t.Fatalf("shrank to %d within 30 s of being busy", p.size)
	}
	j.Tick(at(62))
	if p.size != 2 {
		t.Fatalf("size %d after 30 s idle, want min 2", p.size)
	}
}
