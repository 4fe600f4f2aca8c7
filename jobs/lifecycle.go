package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The causes a job's context can be canceled with.
var (
	errCanceledByUser = errors.New("canceled")
	errShutdown       = errors.New("interrupted: shutdown")
	errTimeout        = errors.New("timed out")
)

// Start recovers the jobs a previous process left leased (recover.go), then starts the dispatcher, the
// promoter of delayed jobs, the retention sweeper and, when schedules are registered, the periodic
// scheduler (periodic.go). Stop stops them.
func (r *Runtime) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return errors.New("jobs: already started")
	}
	r.started = true
	r.mu.Unlock()
	if err := r.recoverLeases(ctx); err != nil {
		return fmt.Errorf("jobs: recover: %w", err)
	}
	if len(r.periodic) > 0 {
		if err := r.periodicInit(ctx); err != nil {
			return fmt.Errorf("jobs: periodic: %w", err)
		}
	}
	r.runCtx, r.runStop = context.WithCancelCause(context.Background())
	r.ackCtx, r.ackStop = context.WithCancel(context.Background())
	loopCtx, cancel := context.WithCancel(context.Background())
	r.loopStop = cancel
	r.startedAt = r.opts.Now().UTC()
	r.loops.Add(3)
	go func() { defer r.loops.Done(); r.dispatchLoop(loopCtx) }()
	go func() { defer r.loops.Done(); r.promoteLoop(loopCtx) }()
	go func() { defer r.loops.Done(); r.sweepLoop(loopCtx) }()
	if len(r.periodic) > 0 {
		r.loops.Add(1)
		go func() { defer r.loops.Done(); r.periodicLoop(loopCtx) }()
	}
	if r.shared != nil {
		// Its own context: it renews the leases of the jobs Stop lets finish, until they have.
		beatCtx, cancel := context.WithCancel(context.Background())
		r.beatStop = cancel
		r.beats.Add(1)
		go func() { defer r.beats.Done(); r.heartbeatLoop(beatCtx) }()
	}
	return nil
}

// Stop shuts down in this order (asynq's): stop leasing; prefetched jobs, not started, go back to
// ready; running jobs may finish until ShutdownTimeout or ctx ends, whichever is first; then their
// contexts are canceled and they go back to ready with the interruption recorded ("interrupted:
// shutdown") and the attempt given back, since a deploy is not the job's fault; every
// acknowledgement is written; the followers of jobs (Watch, Wait) end with ErrStopped; then Stop
// returns.
func (r *Runtime) Stop(ctx context.Context) error {
	r.mu.Lock()
	if !r.started || r.stopping {
		started := r.started
		r.mu.Unlock()
		if !started {
			r.watch.close() // a runtime never started may have had followers
		}
		return nil
	}
	r.stopping = true
	r.mu.Unlock()
	// Followers see the jobs that finish in the grace period, then end with ErrStopped.
	defer r.watch.close()

	r.loopStop()
	r.loops.Wait()
	defer r.stopHeartbeat()
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
		r.ackStop() // acknowledgements retried against a store that is down give up
		return fmt.Errorf("jobs: stop: %w", ctx.Err())
	}
}

// stopHeartbeat ends the heartbeat once Stop is done with the jobs, and leaves the cluster.
func (r *Runtime) stopHeartbeat() {
	if r.beatStop == nil {
		return
	}
	r.beatStop()
	r.beats.Wait()
	r.leave()
}
