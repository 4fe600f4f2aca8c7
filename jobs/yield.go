package jobs

import "time"

// Yield is how far the jobs pool gives way so HTTP requests find a free core (SetYield;
// autoscale.Yield sets it in tandem). It is not the pool's size, which stays the operator's or the
// autoscaler's number: the pool keeps its workers, fewer of them take jobs.
type Yield struct {
	// Limit is the most jobs run at once while it is below the pool's size; 0 (or a limit at or
	// above the size) is no limit.
	Limit int `json:"limit"`
	// Reason says why the limit is what it is, for /admin/pools and the log.
	Reason string `json:"reason,omitempty"`
	// Since is when the limit last changed; zero if it never did.
	Since time.Time `json:"since"`
	// Yields counts the times the limit came down (a tighter limit than before).
	Yields uint64 `json:"yields"`
}

// SetYield lets at most limit jobs run at once (0: no limit) until the next call; reason says why.
// The limit applies where a worker takes its next job (pool.Pool.SetLimit): a running job is never
// interrupted, so a lower limit is reached as running jobs end. The dispatcher leases up to the
// limit plus Prefetch, so a worker that finishes finds its next job waiting, and acknowledgements
// are never held back. Raising or lifting the limit starts prefetched jobs at once and wakes the
// dispatcher to fill the room.
func (r *Runtime) SetYield(limit int, reason string) {
	limit = max(limit, 0)
	// yieldMu keeps the pool's limit in the order of the calls; r.mu is not held while the pool
	// starts the jobs a higher limit lets through (one that cannot start is given back by
	// finish, which takes r.mu).
	r.yieldMu.Lock()
	defer r.yieldMu.Unlock()
	r.mu.Lock()
	old := r.yield.Limit
	if limit == old && reason == r.yield.Reason {
		r.mu.Unlock()
		return
	}
	if limit != old {
		r.yield.Since = r.opts.Now().UTC()
		if limit > 0 && (old == 0 || limit < old) {
			r.yield.Yields++
		}
	}
	r.yield.Limit, r.yield.Reason = limit, reason
	r.mu.Unlock()
	r.pool.SetLimit(limit)
	if limit == 0 || (old > 0 && limit > old) {
		r.signal(r.wake)
	}
}

// Yield returns the dispatcher's current yield (SetYield).
func (r *Runtime) Yield() Yield {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.yield
}

// workersLocked is how many of the pool's workers take jobs now: the pool's size, or the yield
// limit while it is below it. The dispatcher leases for these plus each queue's prefetch, so a
// worker that finishes finds its next job waiting, and acknowledgements never wait on the limit.
func (r *Runtime) workersLocked() int {
	workers := r.pool.Size()
	if y := r.yield.Limit; y > 0 {
		workers = min(workers, y)
	}
	return workers
}
