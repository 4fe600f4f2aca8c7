package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

// outcome is how an attempt ended.
type outcome struct {
	state       State
	attempt     int // the record's attempt the outcome is for: the one started, or the last one
	err         error
	result      json.RawMessage
	runAt       time.Time
	runTime     time.Duration
	unstarted   bool // its handler was never called: the job is still prefetched, no attempt to count
	snoozed     bool
	interrupted bool      // stopped by a shutdown: the attempt is given back, a deploy is not the job's fault
	startedAt   time.Time // when the handler started, for an acknowledgement that carries the start
}

// run executes one attempt on a pool worker, then queues its acknowledgement (finish), so the
// worker takes the next job while the acknowledgement waits for its commit. The attempt starts
// here, not at the lease: the record goes prefetched -> running with its attempt number and start
// time, and the timeout counts from now.
func (r *Runtime) run(parent context.Context, j *Job) {
	r.mu.Lock()
	lj := r.running[j.ID]
	stopping := r.stopping
	if lj != nil && !stopping {
		lj.started = true
	}
	r.mu.Unlock()
	if context.Cause(parent) != nil || stopping {
		r.finish(j, outcome{state: StateReady, attempt: j.Attempt, unstarted: true, err: errShutdown})
		return
	}
	if j.Attempt >= j.MaxAttempts {
		// None is started beyond max_attempts. Only a record from an older tandem gets here: it
		// counted an attempt at each lease, and kept it when a restart put the job back.
		r.finish(j, outcome{state: StateDead, attempt: j.Attempt, unstarted: true,
			err: fmt.Errorf("no attempt left: %d of %d used", j.Attempt, j.MaxAttempts)})
		return
	}
	start := r.opts.Now()
	job := r.start(j, start)
	r.opts.Observer.Started(job, start.Sub(j.RunAt))
	ctx, cancel := context.WithTimeoutCause(parent, j.Timeout, errTimeout)
	live := &liveAttempt{r: r, id: j.ID, attempt: job.Attempt}
	result, err := r.call(context.WithValue(ctx, attemptKey{}, live), job)
	live.end()
	cancel()
	o := r.judge(j, job.Attempt, ctx, result, err)
	o.runTime = r.opts.Now().Sub(start)
	o.startedAt = *job.StartedAt
	r.finish(j, o)
}

// start notes the start of an attempt of j (prefetched, shared with the store) for writing
// (start.go) and returns the handler's own copy of the job as running. It does not wait for the
// write: a crash before it is on disk re-runs the job with the attempt uncounted (see the package
// doc).
func (r *Runtime) start(j *Job, at time.Time) *Job {
	job := j.Clone()
	started := at.UTC()
	job.State, job.Attempt, job.StartedAt, job.Progress = StateRunning, j.Attempt+1, &started, nil
	job.AttemptedBy = appendNode(job.AttemptedBy, r.opts.Node)
	r.noteStart(j.ID, startMark{attempt: job.Attempt, at: started})
	return job
}

// call runs the handler, turning a panic into an error.
func (r *Runtime) call(ctx context.Context, j *Job) (result any, err error) {
	defer func() {
		if v := recover(); v != nil {
			r.log.Error("job handler panicked", "job", j.ID, "kind", j.Kind, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	k, ok := r.kind(j.Kind)
	if !ok {
		return nil, Permanent(fmt.Errorf("%w %q: no handler registered in this process", ErrUnknownKind, j.Kind))
	}
	return k.Handler.Run(ctx, j) // the handler's own copy (start)
}

// judge decides what attempt number attempt of j, ended with result and err, means for the job.
func (r *Runtime) judge(j *Job, attempt int, ctx context.Context, result any, err error) outcome {
	now := r.opts.Now().UTC()
	cause := context.Cause(ctx)
	r.mu.Lock()
	userCanceled := r.running[j.ID] != nil && r.running[j.ID].canceled
	r.mu.Unlock()
	var snooze *snoozeError
	var perm *permanentError
	switch {
	case userCanceled:
		return outcome{state: StateCanceled, attempt: attempt, err: errCanceledByUser}
	case err == nil:
		return outcome{state: StateSucceeded, attempt: attempt, result: r.encodeResult(result)}
	case errors.Is(cause, errShutdown):
		return outcome{state: StateReady, attempt: attempt, err: errShutdown, runAt: now, interrupted: true}
	case errors.As(err, &snooze):
		return outcome{state: StateRetrying, attempt: attempt, snoozed: true, runAt: now.Add(snooze.d)}
	case errors.Is(cause, errTimeout):
		err = fmt.Errorf("timed out after %s: %w", j.Timeout, err)
	}
	if errors.As(err, &perm) || attempt >= j.MaxAttempts {
		return outcome{state: StateDead, attempt: attempt, err: err}
	}
	return outcome{state: StateRetrying, attempt: attempt, err: err, runAt: now.Add(r.opts.Backoff(attempt))}
}

// encodeResult stores a handler's result as JSON of at most MaxResultBytes.
func (r *Runtime) encodeResult(v any) json.RawMessage {
	var b []byte
	switch x := v.(type) {
	case nil:
		return nil
	case json.RawMessage:
		b = x
	case []byte:
		b = x
	}
	if b == nil || !json.Valid(b) {
		var err error
		if b, err = json.Marshal(v); err != nil {
			b, _ = json.Marshal(map[string]string{"error": "result not JSON: " + err.Error()})
		}
	}
	if len(b) > r.opts.MaxResultBytes {
		b, _ = json.Marshal(map[string]any{"truncated": true, "bytes": len(b), "limit": r.opts.MaxResultBytes})
	}
	return b
}

// finish queues an attempt's outcome for the committer, frees its room for the dispatcher, and
// leaves the wait for the commit to drainAcks.
func (r *Runtime) finish(j *Job, o outcome) {
	ctx := context.Background() // the acknowledgement must land even during shutdown
	r.mu.Lock()
	if lj := r.running[j.ID]; lj != nil && lj.canceled {
		o = outcome{state: StateCanceled, attempt: o.attempt, err: errCanceledByUser, unstarted: o.unstarted,
			runTime: o.runTime, startedAt: o.startedAt}
	}
	r.mu.Unlock()
	if !o.unstarted {
		r.takeStart(j.ID) // if it is not written yet, this acknowledgement writes it
	}
	fn := func(cur *Job) error {
		switch {
		case o.unstarted && cur.State == StatePrefetched && cur.Attempt == o.attempt:
		case !o.unstarted && cur.State == StateRunning && cur.Attempt == o.attempt:
		case !o.unstarted && cur.State == StatePrefetched && cur.Attempt == o.attempt-1:
			at := o.startedAt // the start was not written: it is, with the outcome
			cur.Attempt, cur.StartedAt, cur.Progress = o.attempt, &at, nil
			cur.AttemptedBy = appendNode(cur.AttemptedBy, r.opts.Node)
		default:
			return errStale // changed behind our back (canceled and retried by hand): leave it
		}
		now := r.opts.Now().UTC()
		cur.LeaseUntil = nil
		cur.State = o.state
		if o.err != nil && (!o.unstarted || o.state == StateDead) {
			cur.Errors = appendError(cur.Errors, AttemptError{Attempt: cur.Attempt, At: now, Error: o.err.Error()})
		}
		if o.interrupted || o.snoozed {
			cur.Attempt-- // a shutdown's interruption and a snooze do not count
		}
		switch {
		case o.state.Finished():
			cur.FinishedAt = &now
			cur.Result = o.result
		case !o.runAt.IsZero():
			cur.RunAt = o.runAt
		}
		return nil
	}
	// Until its acknowledgement is on record the lease is still this process's: the heartbeat
	// renews it and no rescue takes it, even while a database that is down makes it wait.
	r.ackMu.Lock()
	r.acked[j.ID]++
	r.ackMu.Unlock()
	wait, err := r.store.UpdateQueued(ctx, j.ID, fn)
	// The room is free once the acknowledgement is queued: a lease that takes it is queued later,
	// so it commits with this acknowledgement or after it, and the file never holds more than
	// size + prefetch leased jobs. The next lease thus shares this commit instead of waiting a
	// whole commit cycle for it.
	r.mu.Lock()
	if lj := r.running[j.ID]; lj != nil {
		lj.cancel(nil)
		delete(r.running, j.ID)
	}
	r.inflight--
	r.perQueue[j.Queue]--
	if !o.unstarted {
		r.prefetch.observeJob(j.Queue, o.runTime)
	}
	r.mu.Unlock()
	r.signal(r.wake)
	// The wait for the commit goes to the acknowledgement drainer, so the worker that ran the job
	// is free at once and no goroutine is started per job.
	r.jobsWG.Add(1)
	r.ackMu.Lock()
	r.acks = append(r.acks, pendingAck{j: j, o: o, fn: fn, wait: wait, err: err})
	start := !r.acking
	r.acking = true
	r.ackMu.Unlock()
	if start {
		r.ackers.Add(1)
		go r.drainAcks()
	}
}

// pendingAck is an acknowledgement queued for the committer, waiting for its commit.
type pendingAck struct {
	j    *Job
	o    outcome
	fn   func(cur *Job) error // the write, for a retry
	wait func() (*Job, error)
	err  error // from queueing it; wait is nil then
}

// drainAcks waits for queued acknowledgements in the order they were queued, which is the order
// they commit in, and exits when none is left; finish starts it again.
func (r *Runtime) drainAcks() {
	defer r.ackers.Done()
	for {
		r.ackMu.Lock()
		if len(r.acks) == 0 {
			r.acking = false
			r.ackMu.Unlock()
			return
		}
		a := r.acks[0]
		r.acks[0] = pendingAck{}
		r.acks = r.acks[1:]
		r.ackMu.Unlock()
		r.acknowledged(a)
		r.ackMu.Lock()
		if r.acked[a.j.ID]--; r.acked[a.j.ID] <= 0 {
			delete(r.acked, a.j.ID)
		}
		r.ackMu.Unlock()
		r.jobsWG.Done()
	}
}

// acknowledged reports an acknowledgement's commit.
func (r *Runtime) acknowledged(a pendingAck) {
	j, o, err := a.j, a.o, a.err
	var updated *Job
	if err == nil {
		updated, err = a.wait()
	}
	if err != nil && r.shared != nil {
		updated, err = r.retryAck(a, err)
	}
	switch {
	case errors.Is(err, errStale), errors.Is(err, ErrNotFound):
	case err != nil:
		// The record stays running; the next start's recovery (or the lease sweeper) puts it back.
		r.log.Error("acknowledge job", "job", j.ID, "state", o.state, "err", err)
	default:
		if r.shared != nil && r.opts.Queues[j.Queue].Concurrency > 0 {
			// A capped queue's lease counts the cluster's leases in the database, where this job
			// held one until now: lease again, rather than at the next safety tick.
			r.signal(r.wake)
		}
		r.watch.publish(updated)
		if !o.unstarted {
			r.opts.Observer.Finished(updated, o.runTime)
		}
		r.logOutcome(updated, o)
		if o.state == StateRetrying || (o.state == StateReady && !o.runAt.IsZero()) {
			r.signal(r.promote)
		}
	}
}

// retryAck writes an acknowledgement again until a Shared store takes it (its database is down or
// unreachable) or Stop gives up, so a job that ran while the database was away is not run again
// for want of its acknowledgement. Its lease is renewed meanwhile, so no other replica rescues it;
// and a retry after a write that did land but whose answer was lost finds the job already
// acknowledged (errStale).
func (r *Runtime) retryAck(a pendingAck, err error) (*Job, error) {
	if errors.Is(err, errStale) || errors.Is(err, ErrNotFound) {
		return nil, err
	}
	r.log.Warn("acknowledge job: the store failed; retrying until it answers", "job", a.j.ID, "state", a.o.state, "err", err)
	backoff := 50 * time.Millisecond
	for {
		t := time.NewTimer(backoff)
		select {
		case <-r.ackCtx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
		var j *Job
		if j, err = r.store.Update(r.ackCtx, a.j.ID, a.fn); err == nil || errors.Is(err, errStale) || errors.Is(err, ErrNotFound) {
			return j, err
		}
	}
}

// logOutcome logs how an attempt ended once that is on disk: a failed attempt as a warning with
// its next run, a dead job as an error, an interruption by a shutdown as information. Successes
// and snoozes are not logged: the metrics count them.
func (r *Runtime) logOutcome(j *Job, o outcome) {
	switch {
	case o.state == StateDead:
		r.log.Error("job dead", "job", j.ID, "kind", j.Kind, "queue", j.Queue, "attempt", j.Attempt,
			"max_attempts", j.MaxAttempts, "err", errText(o.err))
	case o.state == StateRetrying && !o.snoozed:
		r.log.Warn("job attempt failed", "job", j.ID, "kind", j.Kind, "queue", j.Queue, "attempt", j.Attempt,
			"max_attempts", j.MaxAttempts, "err", errText(o.err), "next_run_at", j.RunAt)
	case o.interrupted:
		r.log.Info("job interrupted by the shutdown; its attempt is given back", "job", j.ID, "kind", j.Kind,
			"queue", j.Queue, "attempt", o.attempt)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// appendError adds an attempt's error, keeping the most recent maxErrorsKept.
func appendError(errs []AttemptError, e AttemptError) []AttemptError {
	errs = append(errs, e)
	if len(errs) > maxErrorsKept {
		errs = append([]AttemptError(nil), errs[len(errs)-maxErrorsKept:]...)
	}
	return errs
}

var errStale = errors.New("job changed while it ran")
