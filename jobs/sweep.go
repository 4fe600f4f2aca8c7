package jobs

import (
	"context"
	"time"
)

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
		if !r.leader.Load() {
			continue // on a Shared store the leader sweeps for all
		}
		now := r.opts.Now()
		if n, err := r.store.Sweep(ctx, now.Add(-r.opts.Retention), 500); err != nil && ctx.Err() == nil {
			r.log.Error("sweep finished jobs", "err", err)
		} else if n > 0 {
			r.log.Debug("swept finished jobs", "jobs", n)
		}
		if r.shared == nil { // the heartbeat rescues on a Shared store, more often
			r.reclaimExpired(ctx, now)
		}
	}
}

// reclaimExpired puts back the jobs whose lease ended before now and that no attempt of this
// process holds: their acknowledgement was lost (a failed commit).
func (r *Runtime) reclaimExpired(ctx context.Context, now time.Time) {
	ids, err := r.store.Expired(ctx, now, 1000)
	if err != nil {
		return
	}
	msg := msgLeaseExpired
	if r.shared != nil {
		msg = msgRescued
	}
	for _, id := range ids {
		r.mu.Lock()
		_, live := r.running[id]
		r.mu.Unlock()
		r.ackMu.Lock()
		_, acking := r.acked[id]
		r.ackMu.Unlock()
		if live || acking {
			continue // its handler is still running here (the timeout will end it), or its acknowledgement is on its way
		}
		var started bool
		j, err := r.store.Update(ctx, id, func(j *Job) error {
			if !j.State.Leased() || j.LeaseUntil == nil || !j.LeaseUntil.Before(now) {
				return errStale
			}
			started = j.State == StateRunning
			r.putBack(j, now, msg)
			j.LeaseUntil = nil
			return nil
		})
		if err == nil && started {
			r.logPutBack(j, msg)
		}
	}
	if len(ids) > 0 {
		r.signal(r.wake)
	}
}
