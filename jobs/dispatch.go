package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-run/tandem/store"
)

// The causes a job's context can be canceled with.
var (
	errCanceledByUser = errors.New("canceled")
	errShutdown       = errors.New("interrupted: shutdown")
	errTimeout        = errors.New("timed out")
)

// leaseGrace is added to a job's timeout for its lease, so a lease outlives the attempt it covers.
const leaseGrace = time.Minute

// Start recovers the jobs a previous process left running, then starts the dispatcher, the
// promoter of delayed jobs and the retention sweeper. Stop stops them.
func (r *Runtime) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return errors.New("jobs: already started")
	}
	r.started = true
	r.mu.Unlock()
	n, err := r.store.Recover(ctx)
	if err != nil {
		return fmt.Errorf("jobs: recover: %w", err)
	}
	if n > 0 {
		r.log.Info("recovered jobs left running by the previous process", "jobs", n)
	}
	r.runCtx, r.runStop = context.WithCancelCause(context.Background())
	loopCtx, cancel := context.WithCancel(context.Background())
	r.loopStop = cancel
	r.loops.Add(3)
	go func() { defer r.loops.Done(); r.dispatchLoop(loopCtx) }()
	go func() { defer r.loops.Done(); r.promoteLoop(loopCtx) }()
	go func() { defer r.loops.Done(); r.sweepLoop(loopCtx) }()
	return nil
}

// Stop shuts down in this order (asynq's): stop leasing; jobs leased but not started go back to
// ready with their attempt returned; running jobs may finish until ShutdownTimeout or ctx ends,
// whichever is first; then their contexts are canceled and they go back to ready with the attempt
// recorded ("interrupted: shutdown"); every acknowledgement is written; then Stop returns.
func (r *Runtime) Stop(ctx context.Context) error {
	r.mu.Lock()
	if !r.started || r.stopping {
		r.mu.Unlock()
		return nil
	}
	r.stopping = true
	r.mu.Unlock()

	r.loopStop()
	r.loops.Wait()
	// Prefetched jobs still waiting for a worker go back now, not after the grace period.
	r.mu.Lock()
	for _, lj := range r.running {
		if !lj.started {
			lj.cancel(errShutdown)
		}
	}
	r.mu.Unlock()

	done := make(chan struct{})
	go func() {
		r.jobsWG.Wait()
		// No acknowledgement can be queued any more; the drainer exits once it sees that.
		r.ackers.Wait()
		close(done)
	}()
	grace := time.NewTimer(r.opts.ShutdownTimeout)
	defer grace.Stop()
	select {
	case <-done:
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	r.log.Warn("shutdown timeout: canceling running jobs; they go back to ready")
	r.runStop(errShutdown)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("jobs: stop: %w", ctx.Err())
	}
}

// dispatchLoop leases jobs while there is room (free workers plus prefetch) and hands each to the
// pool. It sleeps until woken by an enqueue, a finished job, a resume, a resize or a promotion.
func (r *Runtime) dispatchLoop(ctx context.Context) {
	safety := time.NewTicker(time.Second) // a missed wake-up costs at most this
	defer safety.Stop()
	for {
		if n := r.dispatchOnce(ctx); n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-safety.C:
		}
	}
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
			jobs, wait, err := r.store.LeaseQueued(ctx, q, n, r.leaseFor(q))
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

func (r *Runtime) leaseFor(string) time.Duration { return r.opts.Timeout + leaseGrace }

// allocate shares the room (pool size + prefetch - inflight) among queues with ready jobs by smooth
// weighted round robin, honouring each queue's concurrency cap, and reserves it.
func (r *Runtime) allocate() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return nil
	}
	room := r.pool.Size() + r.opts.Prefetch - r.inflight
	if room <= 0 {
		return nil
	}
	type cand struct {
		name         string
		weight, left int
	}
	var cands []*cand
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
		left := ready
		if q.Concurrency > 0 {
			left = min(left, q.Concurrency-r.perQueue[name])
		}
		if left > 0 {
			cands = append(cands, &cand{name, q.Weight, left})
		}
	}
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

// promoteLoop moves delayed and retrying jobs to ready when their time comes, sleeping until the
// next one is due (at most a second, so a clock change is noticed) or a new one arrives.
func (r *Runtime) promoteLoop(ctx context.Context) {
	for {
		moved, next, err := r.store.Promote(ctx, r.opts.Now())
		if err != nil && ctx.Err() == nil {
			r.log.Error("promote delayed jobs", "err", err)
		}
		if moved > 0 {
			r.signal(r.wake)
		}
		wait := time.Second
		if !next.IsZero() {
			wait = min(max(next.Sub(r.opts.Now()), time.Millisecond), time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.promote:
		case <-t.C:
		}
		t.Stop()
	}
}

// sweepLoop deletes finished jobs past retention and puts back jobs whose lease expired without a
// live attempt in this process.
func (r *Runtime) sweepLoop(ctx context.Context) {
	every := min(r.opts.Retention/10, time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := r.opts.Now()
		if n, err := r.store.Sweep(ctx, now.Add(-r.opts.Retention), 500); err != nil && ctx.Err() == nil {
			r.log.Error("sweep finished jobs", "err", err)
		} else if n > 0 {
			r.log.Debug("swept finished jobs", "jobs", n)
		}
		r.reclaimExpired(ctx, now)
	}
}

func (r *Runtime) reclaimExpired(ctx context.Context, now time.Time) {
	ids, err := r.store.Expired(ctx, now, 1000)
	if err != nil {
		return
	}
	for _, id := range ids {
		r.mu.Lock()
		_, live := r.running[id]
		r.mu.Unlock()
		if live {
			continue // its handler is still running here; the timeout will end it
		}
		_, _ = r.store.Update(ctx, id, func(j *Job) error {
			if j.State != StateRunning || j.LeaseUntil == nil || !j.LeaseUntil.Before(now) {
				return errStale
			}
			j.State, j.LeaseUntil = StateReady, nil
			j.Errors = append(j.Errors, store.AttemptError{Attempt: j.Attempt, At: now.UTC(), Error: "lease expired"})
			return nil
		})
	}
	if len(ids) > 0 {
		r.signal(r.wake)
	}
}

// inflightNow is how many leased jobs are not yet acknowledged.
func (r *Runtime) inflightNow() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inflight
}
