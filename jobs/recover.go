package jobs

import (
	"context"
	"time"
)

// A job holds a lease while it is prefetched or running. A lease that outlives its process (a
// crash, a kill -9, a power loss) or its attempt (an acknowledgement that never reached the disk)
// is put back here, and how depends on what the job did under it:
//
//   - prefetched: its handler never started, nothing was attempted; it is ready again with its
//     attempts as they were.
//   - running: the attempt was interrupted by something that stopped the process, which may well be
//     the job itself (it ran out of memory, it crashed the runtime), so the attempt counts: it is
//     recorded, and a job that has used max_attempts is dead, so that a job that kills the process
//     ends dead instead of killing it at every start. A graceful shutdown is not this case: Stop
//     gives the attempts it interrupts back (attempt.go).

// Messages of the attempts put back here.
const (
	msgCrashed      = "interrupted: the process stopped while it ran (a crash or a kill)"
	msgLeaseExpired = "interrupted: its lease expired with no attempt running in this process"
	msgRescued      = "interrupted: its lease expired: the replica that ran it stopped renewing it (it died, or lost the database)"
)

// putBack moves a job found leased with no live attempt out of the leased states, as the comment
// above says.
func (r *Runtime) putBack(j *Job, now time.Time, msg string) {
	if j.State == StatePrefetched {
		j.State = StateReady
		return
	}
	now = now.UTC()
	j.Errors = appendError(j.Errors, AttemptError{Attempt: j.Attempt, At: now, Error: msg})
	if j.Attempt >= j.MaxAttempts {
		j.State, j.FinishedAt = StateDead, &now
		return
	}
	j.State = StateReady
}

// recoverLeases puts back every job the previous process left leased; Start calls it before the
// first lease. It logs each job whose attempt was interrupted, once that is on disk.
func (r *Runtime) recoverLeases(ctx context.Context) error {
	now := r.opts.Now()
	var interrupted []*Job
	n, err := r.store.Recover(ctx, func(j *Job) {
		started := j.State == StateRunning
		r.putBack(j, now, msgCrashed)
		if started {
			interrupted = append(interrupted, j)
		}
	})
	if err != nil {
		return err
	}
	if n > 0 {
		r.log.Info("recovered jobs left leased by the previous process", "jobs", n, "interrupted", len(interrupted))
	}
	for _, j := range interrupted {
		r.logPutBack(j, msgCrashed)
	}
	return nil
}

// logPutBack logs a job whose interrupted attempt putBack recorded.
func (r *Runtime) logPutBack(j *Job, msg string) {
	if j.State == StateDead {
		r.log.Error("job dead", "job", j.ID, "kind", j.Kind, "queue", j.Queue, "attempt", j.Attempt,
			"max_attempts", j.MaxAttempts, "err", msg)
		return
	}
	r.log.Warn("job attempt failed", "job", j.ID, "kind", j.Kind, "queue", j.Queue, "attempt", j.Attempt,
		"max_attempts", j.MaxAttempts, "err", msg, "next_run_at", j.RunAt)
}
