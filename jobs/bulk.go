package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// BulkOp names what a bulk action does to the jobs its filter selects.
type BulkOp string

// The bulk actions. Each takes only jobs in the states it names, whatever else the filter says;
// Filter.State narrows them further.
const (
	// BulkRetry puts dead jobs (or, with Filter.State canceled, canceled ones) back to ready
	// with their attempts reset, as Retry does.
	BulkRetry BulkOp = "retry"
	// BulkCancel cancels unfinished jobs: waiting ones (scheduled, ready, retrying) in batched
	// writes, leased ones (prefetched, running) one by one as Cancel does, so a running attempt
	// is stopped and ends canceled.
	BulkCancel BulkOp = "cancel"
	// BulkDelete deletes finished jobs (succeeded, dead, canceled).
	BulkDelete BulkOp = "delete"
	// BulkPurge deletes the waiting jobs (scheduled, ready, retrying) of one queue: Filter.Queue
	// is required. Leased jobs are left to finish.
	BulkPurge BulkOp = "purge"
)

// BulkOps lists the bulk actions.
var BulkOps = []BulkOp{BulkRetry, BulkCancel, BulkDelete, BulkPurge}

// Bulk batch sizes.
const (
	// DefaultBulkBatch is how many jobs one batch of a bulk action reads and writes: 500 ids a
	// commit keeps each commit within a few milliseconds on a small disk, so the writes of
	// others (enqueues, acknowledgements) wait for at most one batch.
	DefaultBulkBatch = 500
	// MaxBulkBatch is the largest BulkAction.BatchSize: a page of List.
	MaxBulkBatch = 1000
)

// BulkAction is one call of Runtime.Bulk.
type BulkAction struct {
	// Op is the action. Required.
	Op BulkOp
	// Filter selects the jobs (Queue, Kind, State, CreatedAfter, CreatedBefore). Its Cursor resumes
	// a previous call where its BulkResult.Cursor stopped; Limit is ignored (see BatchSize).
	Filter Filter
	// DryRun counts the jobs the action would take (BulkResult.Matched) and changes nothing.
	DryRun bool
	// BatchSize is how many jobs each batch takes, each batch in commits of its own. Default
	// DefaultBulkBatch, at most MaxBulkBatch.
	BatchSize int
	// MaxDuration bounds one call: once a batch ends past it, Bulk returns with a Cursor to
	// resume from. 0: no bound but ctx.
	MaxDuration time.Duration
}

// BulkResult is what a bulk action did.
type BulkResult struct {
	// Matched is how many jobs matched the filter in a state the action takes, when their batch
	// was read.
	Matched int
	// Changed is how many of them the action changed (retried, canceled, deleted); 0 for a dry run.
	Changed int
	// Skipped is how many matched but had changed by the time their write came (a dead job
	// retried by hand, a waiting job that started), or, for cancel, were running in no worker of
	// this process. Matched = Changed + Skipped, but for a dry run.
	Skipped int
	// Cursor is "" when the action went through every match; otherwise it stopped (MaxDuration,
	// or an error) and BulkAction.Filter.Cursor = Cursor resumes it below the last job it finished.
	Cursor string
}

// BulkObserver is an Observer that also counts bulk actions: when Options.Observer implements it,
// Bulk reports each batch it changed, for a metric by action. Like Observer's, it must be cheap.
type BulkObserver interface {
	Bulk(op BulkOp, changed int)
}

// Errors of one bulk update, which leave the job as it was.
var (
	// errBulkSkip marks a job whose state changed between its batch's read and its write.
	errBulkSkip = errors.New("bulk: job no longer matches")
	// errBulkLeased marks a leased job, which bulk cancel leaves to Cancel.
	errBulkLeased = errors.New("bulk: job is leased")
)

// bulkStates returns the states a's action takes: the filter's, when it names one the action
// takes, or all of them. A filter the action cannot take is a *ValidationError.
func (a BulkAction) bulkStates() ([]State, error) {
	var takes, dflt []State
	switch a.Op {
	case BulkRetry:
		takes, dflt = []State{StateDead, StateCanceled}, []State{StateDead}
	case BulkCancel:
		takes = []State{StateScheduled, StateReady, StatePrefetched, StateRunning, StateRetrying}
	case BulkDelete:
		takes = []State{StateSucceeded, StateDead, StateCanceled}
	case BulkPurge:
		takes = []State{StateScheduled, StateReady, StateRetrying}
	}
	v := &ValidationError{Subject: "bulk action"}
	if !slices.Contains(BulkOps, a.Op) {
		v.add("action", fmt.Sprintf("must be one of %v, got %q", BulkOps, a.Op))
	}
	f := a.Filter
	switch {
	case f.State == "" || takes == nil:
	case !f.State.Valid():
		v.add("filter.state", fmt.Sprintf("must be one of %v, got %q", States, f.State))
	case !slices.Contains(takes, f.State):
		v.add("filter.state", fmt.Sprintf("%s takes %v jobs, not %s", a.Op, takes, f.State))
	}
	if a.Op == BulkPurge && f.Queue == "" {
		v.add("filter.queue", "purge needs a queue")
	}
	if !f.CreatedAfter.IsZero() && !f.CreatedBefore.IsZero() && !f.CreatedAfter.Before(f.CreatedBefore) {
		v.add("filter.created_before", "must be after created_after")
	}
	if a.BatchSize < 0 || a.BatchSize > MaxBulkBatch {
		v.add("batch_size", fmt.Sprintf("must be from 1 to %d, got %d", MaxBulkBatch, a.BatchSize))
	}
	if len(v.Fields) > 0 {
		return nil, v
	}
	switch {
	case f.State != "":
		return []State{f.State}, nil
	case dflt != nil:
		return dflt, nil
	}
	return takes, nil
}

// Bulk applies an action to every job a filter selects, in batches of BatchSize ids taken in id
// order (newest first, as List pages): each batch is read, then written in commits of its own, so
// other writes interleave and a million jobs never hold the store for long. A job whose state
// changed between its batch's read and its write is skipped. Jobs created after the call started
// are not taken (they sort above its first page). Bulk honours ctx between and within batches; on
// an error or past MaxDuration it returns what it did with the Cursor to resume from, and a
// resumed call finds the jobs already done no longer match (a retried job is not dead).
func (r *Runtime) Bulk(ctx context.Context, a BulkAction) (BulkResult, error) {
	states, err := a.bulkStates()
	if err != nil {
		return BulkResult{}, err
	}
	f := a.Filter
	if len(states) == 1 {
		f.State = states[0] // one state: the store filters on it, so a page is a page of matches
	}
	f.Limit = cmp.Or(a.BatchSize, DefaultBulkBatch)
	var deadline time.Time
	if a.MaxDuration > 0 {
		deadline = time.Now().Add(a.MaxDuration)
	}
	var res BulkResult
	for {
		res.Cursor = f.Cursor
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("bulk %s: %w", a.Op, err)
		}
		page, next, err := r.store.List(ctx, f)
		if err != nil {
			return res, fmt.Errorf("bulk %s: list: %w", a.Op, err)
		}
		var ids []string
		for _, j := range page {
			if slices.Contains(states, j.State) {
				ids = append(ids, j.ID)
			}
		}
		res.Matched += len(ids)
		if r.bulkHook != nil && len(ids) > 0 {
			r.bulkHook(ids)
		}
		if !a.DryRun && len(ids) > 0 {
			n, err := r.bulkApply(ctx, a.Op, ids, states)
			if bo, ok := r.opts.Observer.(BulkObserver); ok && n > 0 {
				bo.Bulk(a.Op, n)
			}
			res.Changed += n
			res.Skipped += len(ids) - n
			if err != nil {
				return res, fmt.Errorf("bulk %s: %w", a.Op, err)
			}
		}
		if next == "" {
			res.Cursor = ""
			return res, nil
		}
		f.Cursor = next
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			res.Cursor = next
			return res, nil
		}
	}
}

// bulkApply applies op to one batch of ids whose states were in states when read, and returns how
// many it changed.
func (r *Runtime) bulkApply(ctx context.Context, op BulkOp, ids []string, states []State) (int, error) {
	if op == BulkDelete || op == BulkPurge {
		n, err := r.store.DeleteMany(ctx, ids, states)
		if err != nil {
			return 0, fmt.Errorf("delete: %w", err)
		}
		return n, nil
	}
	now := r.opts.Now().UTC()
	var leased []string
	fn := func(j *Job) error {
		switch {
		case !slices.Contains(states, j.State):
			return errBulkSkip
		case op == BulkRetry:
			requeue(j, now)
		case j.State.Leased():
			return errBulkLeased // left to Cancel, below: the attempt is a process's
		default:
			j.State, j.FinishedAt, j.LeaseUntil = StateCanceled, &now, nil
		}
		return nil
	}
	// Every update is queued before the first is waited for, so the batch shares commits.
	waits := make([]func() (*Job, error), 0, len(ids))
	var first error
	for _, id := range ids {
		wait, err := r.store.UpdateQueued(ctx, id, fn)
		if err != nil {
			first = fmt.Errorf("update %s: %w", id, err)
			break
		}
		waits = append(waits, wait)
	}
	n := 0
	for i, wait := range waits {
		_, err := wait()
		switch {
		case err == nil:
			n++
		case errors.Is(err, errBulkLeased):
			leased = append(leased, ids[i])
		case errors.Is(err, errBulkSkip), errors.Is(err, ErrNotFound):
		case first == nil:
			first = fmt.Errorf("update %s: %w", ids[i], err)
		}
	}
	if op == BulkRetry && n > 0 {
		r.signal(r.wake)
	}
	for _, id := range leased {
		if first != nil {
			break
		}
		switch _, err := r.Cancel(ctx, id); {
		case err == nil:
			n++
		case errors.Is(err, ErrInvalidState), errors.Is(err, ErrNotFound):
		default:
			first = fmt.Errorf("cancel %s: %w", id, err)
		}
	}
	return n, first
}

// requeue puts a dead or canceled job back to ready with its attempts reset; its errors are kept.
func requeue(j *Job, now time.Time) {
	j.State, j.Attempt, j.FinishedAt, j.RunAt, j.Result = StateReady, 0, nil, now, nil
}
