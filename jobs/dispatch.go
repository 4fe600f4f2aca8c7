package jobs

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// leaseGrace is added to a job's timeout for its lease, so a lease outlives the attempt it covers.
const leaseGrace = time.Minute

// dispatchLoop leases jobs while there is room (free workers plus prefetch) and hands each to the
// pool. It sleeps until woken by an enqueue, a finished job, a resume, a resize or a promotion.
func (r *Runtime) dispatchLoop(ctx context.Context) {
	safety := time.NewTicker(time.Second) // a missed wake-up costs at most this
	defer safety.Stop()
	var backoff time.Duration // after failed leases (a failing disk, a damaged file): up to 1 s, so errors are not logged in a loop
	for {
		n := r.dispatchOnce(ctx)
		if r.leaseFailed.Load() {
			backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		} else {
			backoff = 0
		}
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-r.changes(): // another replica made jobs ready
		case <-safety.C:
		}
	}
}

// changes is the Shared store's Changes, nil (never ready) on a store of its own.
func (r *Runtime) changes() <-chan struct{} {
	if r.shared == nil {
		return nil
	}
	return r.shared.Changes()
}

// dispatchOnce leases one round of jobs and returns how many. Jobs start as soon as their lease is
// in the transaction being built (store.LeaseQueued), so a short job's acknowledgement can share
// the lease's commit and its record is written once; the round ends when that commit is on disk,
// so the next round's counters are current. Should a lease's commit fail, its jobs ran without a
// lease on disk: they are still ready there and run again later (at-least-once). From then on
// leases wait for their commit before starting jobs, until one commits again, so a failing disk
// re-runs at most one round of jobs.
func (r *Runtime) dispatchOnce(ctx context.Context) int {
	alloc := r.allocate()
	if len(alloc) == 0 {
		return 0
	}
	// One lease per queue, sent together so they share a commit.
	var leased atomic.Int64
	var wg sync.WaitGroup
	for q, n := range alloc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			asked := r.opts.Now()
			jobs, wait, err := r.store.LeaseQueued(ctx, Lease{Queue: q, N: n, For: r.leaseFor(q), Cap: r.opts.Queues[q].Concurrency})
			if err == nil && r.leaseFailed.Load() {
				if err = wait(); err != nil {
					jobs = nil // not leased on disk: they stay ready there
				}
			}
			for _, j := range jobs {
				r.launch(j)
			}
			leased.Add(int64(len(jobs)))
			r.mu.Lock()
			r.inflight -= n - len(jobs) // return the room not used
			r.perQueue[q] -= n - len(jobs)
			r.mu.Unlock()
			if err == nil {
				err = wait()
			}
			if err == nil && len(jobs) > 0 {
				took := r.opts.Now().Sub(asked)
				r.mu.Lock()
				r.prefetch.observeCommit(took)
				r.mu.Unlock()
			}
			if err == nil && r.shared != nil {
				// On record now: from here the heartbeat renews these leases (before, the
				// database would not know them as this process's, and Renew would call them lost).
				r.mu.Lock()
				for _, j := range jobs {
					if lj := r.running[j.ID]; lj != nil {
						lj.leased = true
					}
				}
				r.mu.Unlock()
			}
			if err != nil {
				if ctx.Err() == nil {
					r.log.Error("lease", "queue", q, "err", err)
				}
			}
			r.leaseFailed.Store(err != nil && ctx.Err() == nil)
		}()
	}
	wg.Wait()
	n := int(leased.Load())
	if n == 0 && ctx.Err() == nil {
		// Counters said ready but nothing was leased (a race with a pause, or a failing disk):
		// back off briefly rather than spin.
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	return n
}

// leaseFor is a lease's length: on a Shared store RescueAfter, renewed by the heartbeat while the
// job is here; on a store of its own longer than any attempt, since a restart recovers its leases.
func (r *Runtime) leaseFor(string) time.Duration {
	if r.shared != nil {
		return r.opts.RescueAfter
	}
	return r.opts.Timeout + leaseGrace
}

// allocate shares the room (the workers that take jobs - the pool size, or the yield limit while
// jobs yield to HTTP - + prefetch - inflight) among queues with ready jobs by smooth
// weighted round robin, honouring each queue's concurrency cap and prefetch (no queue holds more
// than pool size + its prefetch leased; the room is the largest prefetch of the queues with ready
// jobs), and reserves it.
func (r *Runtime) allocate() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return nil
	}
	size := r.workersLocked()
	if size+r.prefetch.bound()-r.inflight <= 0 {
		return nil
	}
	type cand struct {
		name         string
		weight, left int
	}
	var cands []*cand
	prefetch := 0
	names := make([]string, 0, len(r.opts.Queues))
	for name := range r.opts.Queues {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic tie-breaks
	for _, name := range names {
		q := r.opts.Queues[name]
		ready := r.store.Ready(name)
		if ready == 0 || r.store.Paused(name) {
			continue
		}
		pf := r.prefetch.forQueue(name, size)
		left := min(ready, size+pf-r.perQueue[name])
		if q.Concurrency > 0 {
			left = min(left, q.Concurrency-r.perQueue[name])
		}
		if left > 0 {
			cands = append(cands, &cand{name, q.Weight, left})
			prefetch = max(prefetch, pf)
		}
	}
	room := size + prefetch - r.inflight
	alloc := map[string]int{}
	for room > 0 && len(cands) > 0 {
		total, best := 0, -1
		for i, c := range cands {
			r.swrr[c.name] += c.weight
			total += c.weight
			if best < 0 || r.swrr[c.name] > r.swrr[cands[best].name] {
				best = i
			}
		}
		c := cands[best]
		r.swrr[c.name] -= total
		alloc[c.name]++
		room--
		if c.left--; c.left == 0 {
			cands = append(cands[:best], cands[best+1:]...)
		}
	}
	for q, n := range alloc {
		r.inflight += n
		r.perQueue[q] += n
	}
	return alloc
}

// launch registers a leased job and hands it to the pool, whose backlog holds it while every
// worker is busy (the prefetched jobs); jobsWG counts the job until its acknowledgement is handed
// on. No goroutine waits per job: each one parked and woken costs, above all when the worker that
// wakes it is pinned to its thread.
func (r *Runtime) launch(j *Job) {
	ctx, cancel := context.WithCancelCause(r.runCtx)
	r.mu.Lock()
	r.running[j.ID] = &liveJob{cancel: cancel}
	r.mu.Unlock()
	r.jobsWG.Add(1)
	notStarted := func(err error) {
		// Shutdown, a cancel, or the pool closed before a worker took it: give the attempt back.
		defer r.jobsWG.Done()
		r.finish(j, outcome{state: StateReady, unstarted: true, err: err})
	}
	err := r.pool.Go(ctx, func() {
		defer r.jobsWG.Done()
		r.run(ctx, j)
	}, notStarted)
	if err != nil {
		notStarted(err)
	}
}
