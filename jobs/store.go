package jobs

import (
	"context"
	"time"
)

// Store is the backend that keeps the jobs: package store implements it on a bbolt file, package
// store/postgres on a Postgres database that several processes share (Shared). The
// runtime gives states their meaning (retries, backoff, recovery); a Store keeps records, their
// indexes and counters consistent, and makes each write durable before it reports it done.
//
// # Commits
//
// Writes are group-committed: the requests sent while a commit is being made share the next one,
// in the order they were sent, so a write sent after another never lands before it. A request
// whose own checks fail (a full queue, a missing job, an error from fn) fails alone and writes
// nothing; a commit that fails (a full disk) fails every request it carried and leaves the jobs as
// they were. The ...Queued methods return once their request is queued, and report its commit
// through the function they return; a method that takes no such function waits for its commit.
//
// # Errors
//
// Methods return ErrNotFound, ErrQueueFull, ErrNotFinished, ErrBadCursor and ErrStoreClosed (or
// errors wrapping them) as documented; any other error is the backend's own (an I/O error, a
// damaged file), and the write it came from did not happen.
//
// Every method is safe for concurrent use. The *Job values returned are the caller's, except
// where said.
type Store interface {
	// Insert writes new jobs in one commit, all or nothing. It assigns an ID to each job with
	// none (a UUIDv7, so ids sort by creation) and sets CreatedAt; State must be ready or
	// scheduled. A job whose UniqueKey a live (unfinished) job holds is not written: that job is
	// returned in its place with created false. When maxPending is non-nil and the jobs would
	// take a queue's waiting jobs (State.Waiting) past maxPending(queue), when it is above 0,
	// nothing is written and the error wraps ErrQueueFull.
	Insert(ctx context.Context, jobs []*Job, maxPending func(queue string) int) (out []*Job, created []bool, err error)

	// Get returns one job, or ErrNotFound.
	Get(ctx context.Context, id string) (*Job, error)

	// GetMany returns the jobs of ids that exist, in the order of ids, in one read: an id with no
	// job (or not a job id at all) is left out, and one named twice is returned once. It is what the runtime's watchers poll (watch.go),
	// one read for every job followed in the process rather than one per follower.
	GetMany(ctx context.Context, ids []string) ([]*Job, error)

	// Update is a read-modify-write of one job, in a shared commit: fn gets a copy of the record
	// and may change any field but ID. An error from fn aborts this update alone and is returned
	// as it is. ErrNotFound when there is no such job. It returns the job as written.
	Update(ctx context.Context, id string, fn func(j *Job) error) (*Job, error)

	// UpdateQueued is Update that returns as soon as the request is queued; wait blocks until its
	// commit and returns what Update would have.
	UpdateQueued(ctx context.Context, id string, fn func(j *Job) error) (wait func() (*Job, error), err error)

	// ApplyQueued queues fn and returns once it is queued; fn runs inside the commit its request
	// joins and changes any number of jobs through u, each as Update does. It is for writes whose
	// jobs are only known when the commit is made (the runtime's attempt starts, start.go). The
	// commit is not reported: a later request's wait covers it, since requests land in order.
	ApplyQueued(ctx context.Context, fn func(u Updater)) error

	// LeaseQueued takes up to l.N ready jobs of l.Queue, best first (priority, then RunAt, then
	// ID), and marks them prefetched with LeaseUntil now+l.For; Attempt and StartedAt stay as they
	// were. A paused queue gives none; with l.Cap set, a Shared store leases none beyond it. It returns as soon as the jobs are leased in the commit
	// being built; wait blocks until that commit and returns its error. If the commit fails, the
	// jobs were never leased: they are still ready, and a later Update finds them not prefetched.
	// It only takes jobs whose state is committed, so nothing runs that a failed commit could take
	// back from its enqueuer. The jobs returned are shared with the commit until wait returns:
	// read them, Clone them to change them.
	LeaseQueued(ctx context.Context, l Lease) (jobs []*Job, wait func() error, err error)

	// Promote moves scheduled and retrying jobs whose RunAt is not after now to ready, in commits
	// of a bounded size. It returns how many moved and the earliest RunAt still ahead (zero when
	// none).
	Promote(ctx context.Context, now time.Time) (moved int, next time.Time, err error)

	// Recover hands each job a previous process left leased (prefetched or running) to fn, which
	// gets a copy and must move it out of those states; LeaseUntil is cleared after fn. All of
	// them are written in one commit, or none; it returns how many. Call it once at start, before
	// any lease. With no job left leased it writes nothing. A Shared store hands none (see Shared).
	Recover(ctx context.Context, fn func(j *Job)) (int, error)

	// Expired returns the ids of leased jobs whose LeaseUntil is before now, at most limit,
	// soonest first. It reads only.
	Expired(ctx context.Context, now time.Time, limit int) ([]string, error)

	// Delete removes a finished job: ErrNotFinished when it has not finished, ErrNotFound when
	// there is no such job.
	Delete(ctx context.Context, id string) error

	// DeleteMany removes, in one commit, those of ids whose state is one of states, and returns
	// how many it removed; an id that is missing or in another state is left alone, not an error.
	// states must not name a leased state (prefetched, running): a process holds those jobs.
	DeleteMany(ctx context.Context, ids []string, states []State) (int, error)

	// Sweep deletes the jobs that finished before `before`, at most batch per commit (a default
	// when batch <= 0), until none is left or ctx ends, and returns how many.
	Sweep(ctx context.Context, before time.Time, batch int) (int, error)

	// List returns the jobs that match f, newest first, and the cursor of the next page ("" when
	// there is none); it may return fewer than f.Limit jobs with a cursor, when it bounds its
	// scan. A cursor List did not return is ErrBadCursor.
	List(ctx context.Context, f Filter) ([]*Job, string, error)

	// Queues returns every queue that has or had jobs, or is paused, sorted by name, with a count
	// for every State.
	Queues(ctx context.Context) ([]QueueStats, error)

	// SetPaused pauses or resumes a queue, durably; a paused queue leases nothing.
	SetPaused(ctx context.Context, queue string, paused bool) error

	// Ready returns the queue's committed ready jobs. It must be cheap (the dispatcher asks
	// before every lease) and never blocks on a commit.
	Ready(queue string) int

	// Paused reports whether the queue is paused; as cheap as Ready.
	Paused(queue string) bool

	// Ping checks that the store answers: a read that goes to the disk or the database.
	Ping(ctx context.Context) error

	// FirePeriodic is a periodic schedule's fire of one slot: in one commit, it inserts j (as
	// Insert does, without a max_pending check) and records slot as the schedule's mark, when
	// slot is after the mark recorded for name (or none is); otherwise it writes nothing and
	// returns created false. prev is the mark's slot before the call (zero when none). Two fires
	// of one slot, from any number of goroutines or processes sharing the store, create one job.
	FirePeriodic(ctx context.Context, name string, slot time.Time, j *Job) (created bool, prev time.Time, err error)

	// PeriodicMarks returns the mark of every schedule that fired, by name.
	PeriodicMarks(ctx context.Context) (map[string]PeriodicMark, error)
}

// Lease asks LeaseQueued for jobs.
type Lease struct {
	Queue string
	N     int           // at most this many
	For   time.Duration // the lease's length
	// Cap is the queue's concurrency cap: a Shared store leases none that would leave more than
	// Cap of the queue's jobs leased across every process. 0: no cap. A store for one process may
	// ignore it: the runtime counts its own leases.
	Cap int
}

// Updater changes jobs inside the commit of an ApplyQueued request.
type Updater interface {
	// Update changes one job as Store.Update does, in the request's commit. An error from fn, or
	// no such job, leaves that job as it was, and is not reported: a store may apply the changes
	// once the ApplyQueued function has named them all, so that it reads them in one go.
	Update(id string, fn func(j *Job) error)
}
