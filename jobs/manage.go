package jobs

import (
	"context"
	"fmt"
)

// isLocal reports whether the job is leased by this process.
func (r *Runtime) isLocal(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[id] != nil
}

// Get returns one job.
func (r *Runtime) Get(ctx context.Context, id string) (*Job, error) {
	return r.store.Get(ctx, id)
}

// List returns jobs newest first, and the cursor of the next page ("" at the end).
func (r *Runtime) List(ctx context.Context, f Filter) ([]*Job, string, error) {
	return r.store.List(ctx, f)
}

// Cancel cancels a job: a waiting or prefetched one never runs; a running one's context is canceled
// and the attempt ends canceled. A finished job is ErrInvalidState.
func (r *Runtime) Cancel(ctx context.Context, id string) (*Job, error) {
	var running bool
	j, err := r.store.Update(ctx, id, func(j *Job) error {
		switch {
		case j.State.Finished():
			return fmt.Errorf("%w: job %s is %s", ErrInvalidState, id, j.State)
		case j.State.Leased() && (r.shared == nil || r.isLocal(id)):
			// The attempt, started or not, is this process's (the only one, on a store of its own).
			running = true
			return errStale // the attempt itself records the cancellation when it ends
		}
		// Waiting, or leased by another replica: canceled here. That replica's heartbeat learns it
		// lost the lease and stops the attempt, whose acknowledgement then finds the job canceled.
		now := r.opts.Now().UTC()
		j.State, j.FinishedAt, j.LeaseUntil = StateCanceled, &now, nil
		return nil
	})
	if running {
		r.mu.Lock()
		lj := r.running[id]
		if lj != nil {
			lj.canceled = true
			lj.cancel(errCanceledByUser)
		}
		r.mu.Unlock()
		if lj == nil {
			return nil, fmt.Errorf("%w: job %s is running in no worker of this process (its lease will expire)", ErrInvalidState, id)
		}
		return r.store.Get(ctx, id)
	}
	if err == nil {
		r.watch.publish(j)
	}
	return j, err
}

// Retry puts a dead or canceled job back to ready with its attempts reset; its errors are kept.
func (r *Runtime) Retry(ctx context.Context, id string) (*Job, error) {
	j, err := r.store.Update(ctx, id, func(j *Job) error {
		if j.State != StateDead && j.State != StateCanceled {
			return fmt.Errorf("%w: only dead or canceled jobs can be retried; job %s is %s", ErrInvalidState, id, j.State)
		}
		requeue(j, r.opts.Now().UTC())
		return nil
	})
	if err == nil {
		r.signal(r.wake)
		r.watch.publish(j)
	}
	return j, err
}

// Delete removes a finished job.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	if err := r.store.Delete(ctx, id); err != nil {
		return err
	}
	r.watch.gone(id)
	return nil
}

// Queues returns the stats of every configured queue (and of any other queue the store knows).
func (r *Runtime) Queues(ctx context.Context) ([]QueueStats, error) {
	qs, err := r.store.Queues(ctx)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, q := range qs {
		known[q.Name] = true
	}
	for _, name := range r.QueueNames() {
		if !known[name] {
			qs = append(qs, QueueStats{Name: name, Counts: zeroCounts()})
		}
	}
	sortQueues(qs)
	return qs, nil
}

// Queue returns one configured queue's stats; ErrNotFound for an unknown queue.
func (r *Runtime) Queue(ctx context.Context, name string) (QueueStats, error) {
	qs, err := r.Queues(ctx)
	if err != nil {
		return QueueStats{}, err
	}
	for _, q := range qs {
		if q.Name == name {
			return q, nil
		}
	}
	return QueueStats{}, fmt.Errorf("%w: queue %q", ErrNotFound, name)
}

// Pause stops leasing from a configured queue; the flag survives restarts.
func (r *Runtime) Pause(ctx context.Context, queue string) error {
	return r.setPaused(ctx, queue, true)
}

// Resume lets a paused queue run again.
func (r *Runtime) Resume(ctx context.Context, queue string) error {
	return r.setPaused(ctx, queue, false)
}

func (r *Runtime) setPaused(ctx context.Context, queue string, paused bool) error {
	if _, ok := r.opts.Queues[queue]; !ok && !r.store.Paused(queue) {
		return fmt.Errorf("%w: queue %q", ErrNotFound, queue)
	}
	if err := r.store.SetPaused(ctx, queue, paused); err != nil {
		return err
	}
	r.signal(r.wake)
	return nil
}

func zeroCounts() map[State]int {
	m := make(map[State]int, len(States))
	for _, s := range States {
		m[s] = 0
	}
	return m
}

func sortQueues(qs []QueueStats) {
	for i := 1; i < len(qs); i++ {
		for k := i; k > 0 && qs[k].Name < qs[k-1].Name; k-- {
			qs[k], qs[k-1] = qs[k-1], qs[k]
		}
	}
}

// ReadyBacklog is how many jobs are ready to run in configured, unpaused queues: what the jobs
// autoscaler grows the pool for.
func (r *Runtime) ReadyBacklog() int {
	n := 0
	for q := range r.opts.Queues {
		if !r.store.Paused(q) {
			n += r.store.Ready(q)
		}
	}
	return n
}
