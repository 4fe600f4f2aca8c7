package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/tandem-run/tandem/store"
)

// outcome is how an attempt ended.
type outcome struct {
	state     State
	err       error
	result    json.RawMessage
	runAt     time.Time
	runTime   time.Duration
	unstarted bool // never ran: the attempt is given back
	snoozed   bool
}

// run executes one attempt on a pool worker, then queues its acknowledgement (finish), so the
// worker takes the next job while the acknowledgement waits for its commit.
func (r *Runtime) run(parent context.Context, j *Job) {
	start := r.opts.Now()
	r.mu.Lock()
	lj := r.running[j.ID]
	stopping := r.stopping
	if lj != nil && !stopping {
		lj.started = true
	}
	r.mu.Unlock()
	var o outcome
	if context.Cause(parent) != nil || stopping {
		o = outcome{state: StateReady, unstarted: true, err: errShutdown}
	} else {
		r.opts.Observer.Started(j, start.Sub(j.RunAt))
		ctx, cancel := context.WithTimeoutCause(parent, j.Timeout, errTimeout)
		result, err := r.call(ctx, j)
		cancel()
		o = r.judge(j, ctx, result, err)
	}
	o.runTime = r.opts.Now().Sub(start)
	r.finish(j, o)
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
	return k.Handler.Run(ctx, j.Clone())
}

// judge decides what an attempt's result means for the job.
func (r *Runtime) judge(j *Job, ctx context.Context, result any, err error) outcome {
	now := r.opts.Now().UTC()
	cause := context.Cause(ctx)
	r.mu.Lock()
	userCanceled := r.running[j.ID] != nil && r.running[j.ID].canceled
	r.mu.Unlock()
	var snooze *snoozeError
	var perm *permanentError
	switch {
	case userCanceled:
		return outcome{state: StateCanceled, err: errCanceledByUser}
	case errors.Is(cause, errShutdown):
		return outcome{state: StateReady, err: errShutdown, runAt: now}
	case err == nil:
		return outcome{state: StateSucceeded, result: r.encodeResult(result)}
	case errors.As(err, &snooze):
		return outcome{state: StateRetrying, snoozed: true, runAt: now.Add(snooze.d)}
	case errors.Is(cause, errTimeout):
		err = fmt.Errorf("timed out after %s: %w", j.Timeout, err)
	}
	if errors.As(err, &perm) || j.Attempt >= j.MaxAttempts {
		return outcome{state: StateDead, err: err}
	}
	return outcome{state: StateRetrying, err: err, runAt: now.Add(r.opts.Backoff(j.Attempt))}
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
		o = outcome{state: StateCanceled, err: errCanceledByUser, unstarted: o.unstarted, runTime: o.runTime}
	}
	r.mu.Unlock()
	wait, err := r.store.UpdateQueued(ctx, j.ID, func(cur *Job) error {
		if cur.State != StateRunning || cur.Attempt != j.Attempt {
			return errStale // changed behind our back (canceled and retried by hand): leave it
		}
		now := r.opts.Now().UTC()
		cur.LeaseUntil = nil
		cur.State = o.state
		if o.err != nil && !o.unstarted {
			cur.Errors = append(cur.Errors, store.AttemptError{Attempt: cur.Attempt, At: now, Error: o.err.Error()})
			if len(cur.Errors) > maxErrorsKept {
				cur.Errors = append([]store.AttemptError(nil), cur.Errors[len(cur.Errors)-maxErrorsKept:]...)
			}
		}
		if o.unstarted || o.snoozed {
			cur.Attempt-- // the attempt never ran, or a snooze does not count
		}
		switch {
		case o.state.Finished():
			cur.FinishedAt = &now
			cur.Result = o.result
		case !o.runAt.IsZero():
			cur.RunAt = o.runAt
		}
		return nil
	})
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
	r.mu.Unlock()
	r.signal(r.wake)
	// The wait for the commit goes to the acknowledgement drainer, so the worker that ran the job
	// is free at once and no goroutine is started per job.
	r.jobsWG.Add(1)
	r.ackMu.Lock()
	r.acks = append(r.acks, pendingAck{j: j, o: o, wait: wait, err: err})
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
	switch {
	case errors.Is(err, errStale), errors.Is(err, store.ErrNotFound):
	case err != nil:
		// The record stays running; the next start's recovery (or the lease sweeper) puts it back.
		r.log.Error("acknowledge job", "job", j.ID, "state", o.state, "err", err)
	default:
		if !o.unstarted {
			r.opts.Observer.Finished(updated, o.runTime)
		}
		if o.state == StateRetrying || (o.state == StateReady && !o.runAt.IsZero()) {
			r.signal(r.promote)
		}
	}
}

var errStale = errors.New("job changed while it ran")
