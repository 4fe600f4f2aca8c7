package jobs

import (
	"testing"
	"time"
)

// The adaptive prefetch follows ceil(2 x workers x commit latency / job duration) within
// [1, max], per queue, from durations fed to it: no clock involved.
func TestPrefetcherAdapts(t *testing.T) {
	const ms, us = time.Millisecond, time.Microsecond
	for _, c := range []struct {
		name    string
		commit  time.Duration
		job     time.Duration
		workers int
		want    int
	}{
		{"tiny jobs: the bound", 2 * ms, 10 * us, 2, 256},
		{"jobs as long as half a commit", 2 * ms, ms, 2, 8},
		{"jobs as long as a commit, 4 workers", 2 * ms, 2 * ms, 4, 8},
		{"long jobs: one", 2 * ms, time.Second, 2, 1},
		{"a job too short for the clock counts as the shortest", 2 * ms, 0, 2, 256},
	} {
		p := newPrefetcher(0, 256)
		p.observeCommit(c.commit)
		p.observeJob("q", c.job)
		if got := p.forQueue("q", c.workers); got != c.want {
			t.Errorf("%s: prefetch %d, want %d", c.name, got, c.want)
		}
	}
}

func TestPrefetcherBeforeMeasuring(t *testing.T) {
	p := newPrefetcher(0, 256)
	if got := p.forQueue("q", 2); got != initialPrefetch {
		t.Errorf("nothing measured: %d, want %d", got, initialPrefetch)
	}
	p.observeJob("q", time.Microsecond)
	if got := p.forQueue("q", 2); got != initialPrefetch {
		t.Errorf("no commit measured: %d, want %d", got, initialPrefetch)
	}
	if got := newPrefetcher(0, 2).forQueue("q", 2); got != 2 {
		t.Errorf("max 2, nothing measured: %d, want 2", got)
	}
}

// Each queue has its own: tiny jobs in one do not make another's long jobs wait here in hundreds.
func TestPrefetcherPerQueue(t *testing.T) {
	p := newPrefetcher(0, 64)
	p.observeCommit(2 * time.Millisecond)
	p.observeJob("tiny", 5*time.Microsecond)
	p.observeJob("slow", 10*time.Second)
	if got := p.forQueue("tiny", 2); got != 64 {
		t.Errorf("tiny: %d, want 64", got)
	}
	if got := p.forQueue("slow", 2); got != 1 {
		t.Errorf("slow: %d, want 1", got)
	}
	if got := p.bound(); got != 64 {
		t.Errorf("bound %d, want 64", got)
	}
}

// The averages move with the work: a queue whose jobs became tiny comes to the bound.
func TestPrefetcherFollowsChange(t *testing.T) {
	p := newPrefetcher(0, 256)
	p.observeCommit(2 * time.Millisecond)
	p.observeJob("q", time.Second)
	if got := p.forQueue("q", 2); got != 1 {
		t.Fatalf("long jobs: %d, want 1", got)
	}
	for range 200 {
		p.observeJob("q", 5*time.Microsecond)
	}
	if got := p.forQueue("q", 2); got != 256 {
		t.Errorf("after 200 tiny jobs: %d, want 256", got)
	}
}

// A fixed prefetch ignores what it is told.
func TestPrefetcherFixed(t *testing.T) {
	p := newPrefetcher(7, 256)
	p.observeCommit(time.Second)
	p.observeJob("q", time.Nanosecond)
	if got, b := p.forQueue("q", 2), p.bound(); got != 7 || b != 7 {
		t.Errorf("fixed 7: prefetch %d, bound %d", got, b)
	}
}
