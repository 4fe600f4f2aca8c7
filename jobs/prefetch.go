package jobs

import (
	"math"
	"time"
)

// Adaptive prefetch (Options.Prefetch 0). A lease is a group commit: while it is being made, the
// workers run what they already hold. Jobs far shorter than a commit starve a worker unless each
// lease brings enough of them to cover the next commit, and long jobs leased ahead only wait here
// while another worker (or another replica) could have run them. So each queue's prefetch is the
// jobs its workers finish during one commit, at the measured rate, twice over for the commits that
// take longer than the average:
//
//	prefetch(q) = ceil(2 x workers x commit latency / job duration(q)), within [1, PrefetchMax]
//
// Both are moving averages: the lease's latency from the dispatcher's request to its commit, and
// each queue's handler durations. Until a queue has both, it prefetches initialPrefetch.
//
// PrefetchMax bounds what a crash may run again: jobs start as soon as their lease is in the
// commit being made, so a crash may lose the lease and acknowledgements of at most concurrency +
// PrefetchMax jobs, which then run again (at-least-once).

// initialPrefetch is a queue's prefetch before anything was measured: the old fixed default.
const initialPrefetch = 4

// ewmaWeight is the weight of a new sample in a moving average: about the last 16 count.
const ewmaWeight = 1.0 / 16

// ewma is an exponentially weighted moving average of durations; the zero value has no sample.
type ewma struct {
	v  float64 // nanoseconds
	ok bool
}

func (e *ewma) add(d time.Duration) {
	if !e.ok {
		e.v, e.ok = float64(d), true
		return
	}
	e.v += ewmaWeight * (float64(d) - e.v)
}

// prefetcher decides each queue's prefetch. Not safe for concurrent use: the runtime calls it
// under its mu.
type prefetcher struct {
	fixed  int // > 0: every queue's prefetch, nothing measured; 0: adaptive
	max    int // the adaptive prefetch's bound
	commit ewma
	jobs   map[string]*ewma // handler duration by queue
}

func newPrefetcher(fixed, most int) *prefetcher {
	return &prefetcher{fixed: fixed, max: most, jobs: map[string]*ewma{}}
}

// bound is the most any queue prefetches.
func (p *prefetcher) bound() int { return prefetchBound(p.fixed, p.max) }

// prefetchBound is the most a queue prefetches: fixed when set, else the adaptive bound.
func prefetchBound(fixed, most int) int {
	if fixed > 0 {
		return fixed
	}
	return most
}

// observeCommit notes how long a lease took from its request to its commit.
func (p *prefetcher) observeCommit(d time.Duration) {
	if p.fixed == 0 {
		p.commit.add(d)
	}
}

// observeJob notes how long a handler of queue ran.
func (p *prefetcher) observeJob(queue string, d time.Duration) {
	if p.fixed > 0 {
		return
	}
	e := p.jobs[queue]
	if e == nil {
		e = &ewma{}
		p.jobs[queue] = e
	}
	e.add(d)
}

// forQueue is queue's prefetch for a pool of workers.
func (p *prefetcher) forQueue(queue string, workers int) int {
	if p.fixed > 0 {
		return p.fixed
	}
	j := p.jobs[queue]
	if j == nil || !p.commit.ok {
		return min(initialPrefetch, p.max)
	}
	// A job measured at 0 (a clock too coarse for it) counts as 1 ns: as short as can be.
	n := math.Ceil(2 * float64(workers) * p.commit.v / max(j.v, 1))
	if n >= float64(p.max) {
		return p.max
	}
	return max(int(n), 1)
}
