package jobs

import "github.com/tandem-run/tandem/pool"

// The internals the tests of package jobs_test reach; they live outside package jobs because
// they use package store, which imports jobs.

// WakePromoter wakes the promoter, as the arrival of a delayed job does.
func (r *Runtime) WakePromoter() { r.signal(r.promote) }

// Inflight is how many leased jobs are not yet acknowledged.
func (r *Runtime) Inflight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inflight
}

// SetPool replaces the pool the handlers run on.
func (r *Runtime) SetPool(p *pool.Pool) { r.pool = p }

// SetBulkHook has fn called with the ids of each batch of a bulk action, between the batch's
// read and its write (nil: none). Set it before any Bulk runs.
func (r *Runtime) SetBulkHook(fn func(ids []string)) { r.bulkHook = fn }

// WakePeriodic wakes the periodic scheduler, so that a test that moved its clock sees the slots due.
func (r *Runtime) WakePeriodic() { r.signal(r.periodicWake) }
