//go:build linux

package pool

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/sizing"
)

// runPinned runs n tasks at once on p, each blocked until all n have started, and returns the ids
// of the threads they ran on: n distinct pinned workers.
func runPinned(t *testing.T, p *Pool, n int) []int {
	t.Helper()
	var mu sync.Mutex
	var tids []int
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	all := make(chan struct{})
	for range n {
		if err := p.Submit(context.Background(), func() {
			defer done.Done()
			mu.Lock()
			tids = append(tids, Gettid())
			mu.Unlock()
			started.Done()
			<-all
		}); err != nil {
			t.Fatal(err)
		}
	}
	started.Wait()
	close(all)
	done.Wait()
	tandemtest.WaitFor(t, "the tasks' slots back", func() bool { return p.Running() == 0 })
	return tids
}

// alive counts the threads of tids that still exist in this process (the kernel's
// /proc/self/task) and are pinned to one CPU.
func alive(t *testing.T, tids []int) int {
	t.Helper()
	n := 0
	for _, tid := range tids {
		if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid)); err != nil {
			continue
		}
		if cpus, err := ThreadAffinity(tid); err == nil && len(cpus) == 1 {
			n++
		}
	}
	return n
}

// TestShrinkReleasesPinnedThreads: a pinned pool that shrinks from 4 to 1 ends the OS threads of
// the 3 workers it no longer needs, whether they were idle when it shrank or still running; it
// pins new threads when it grows again.
func TestShrinkReleasesPinnedThreads(t *testing.T) {
	cpus, err := sizing.Affinity()
	if err != nil {
		t.Skipf("no CPU affinity here: %v", err)
	}
	p, err := New(Options{Name: "pinned", Size: 4, PinCPUs: cpus, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
	wait := func(what string, tids []int, most int) {
		t.Helper()
		tandemtest.WaitFor(t, what, func() bool { return alive(t, tids) <= most })
	}

	// Idle workers when the pool shrinks. A worker that starts on the main thread runs unpinned
	// (see pinner.pin), so it may take a few rounds until all 4 are pinned.
	var tids []int
	for range 20 {
		if tids = runPinned(t, p, 4); alive(t, tids) == 4 {
			break
		}
	}
	if n := alive(t, tids); n < 2 {
		t.Fatalf("%d of the 4 workers' threads are alive and pinned, want 4", n)
	}
	if _, err := p.Tune(1); err != nil {
		t.Fatal(err)
	}
	wait("3 of 4 idle pinned threads to end after shrinking to 1", tids, 1)
	if got := runPinned(t, p, 1); alive(t, got) != 1 {
		t.Fatal("the one worker left is not pinned")
	}

	// Busy workers when the pool shrinks: each ends its thread once its task is done.
	if _, err := p.Tune(4); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var mu sync.Mutex
	var busy []int
	var started, done sync.WaitGroup
	started.Add(4)
	done.Add(4)
	for range 4 {
		if err := p.Submit(context.Background(), func() {
			defer done.Done()
			mu.Lock()
			busy = append(busy, Gettid())
			mu.Unlock()
			started.Done()
			<-release
		}); err != nil {
			t.Fatal(err)
		}
	}
	started.Wait()
	if _, err := p.Tune(1); err != nil {
		t.Fatal(err)
	}
	close(release)
	done.Wait()
	tandemtest.WaitFor(t, "the tasks' slots back", func() bool { return p.Running() == 0 })
	wait("3 of 4 busy pinned threads to end once their tasks are done", busy, 1)
	if got := runPinned(t, p, 1); alive(t, got) != 1 {
		t.Fatal("the one worker left is not pinned")
	}
}

// TestSetPinCPUsMovesWorkers: after SetPinCPUs, the workers' threads (the same threads, not new
// ones) run their next tasks on the new CPUs.
func TestSetPinCPUsMovesWorkers(t *testing.T) {
	cpus, err := sizing.Affinity()
	if err != nil || len(cpus) < 2 {
		t.Skipf("needs two CPUs in the affinity mask, have %v (%v)", cpus, err)
	}
	first, second := cpus[:1], cpus[1:2]
	p, err := New(Options{Name: "pinned", Size: 2, PinCPUs: first, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(context.Background())
	// on runs 2 tasks at once and returns each one's thread with that thread's CPUs.
	on := func() map[int][]int {
		got := map[int][]int{}
		for _, tid := range runPinned(t, p, 2) {
			a, err := ThreadAffinity(tid)
			if err != nil {
				t.Fatal(err)
			}
			got[tid] = a
		}
		return got
	}
	before := on()
	for tid, a := range before {
		if len(a) != 1 || a[0] != first[0] {
			t.Fatalf("thread %d on %v before, want %v", tid, a, first)
		}
	}
	if ok, err := p.SetPinCPUs(second); !ok || err != nil {
		t.Fatalf("SetPinCPUs = %v, %v", ok, err)
	}
	after := on()
	same := 0
	for tid, a := range after {
		if len(a) != 1 || a[0] != second[0] {
			t.Fatalf("thread %d on %v after SetPinCPUs(%v)", tid, a, second)
		}
		if _, ok := before[tid]; ok {
			same++
		}
	}
	if same == 0 {
		t.Errorf("no worker thread of before ran again (before %v, after %v): moved by replacing them?", before, after)
	}
	if ok, err := p.SetPinCPUs(nil); ok || err == nil {
		t.Errorf("SetPinCPUs(nil) = %v, %v; want refused", ok, err)
	}
	unpinned, _ := New(Options{Name: "free", Size: 1})
	defer unpinned.Release(context.Background())
	if ok, err := unpinned.SetPinCPUs(second); ok || err != nil {
		t.Errorf("SetPinCPUs on an unpinned pool = %v, %v; want false, nil", ok, err)
	}
}
