package jobs

import (
	"context"
	"time"
)

// An attempt starts when a worker calls its handler, and the record says so (prefetched ->
// running, with the attempt's number and start time), so that the API, the dashboard and the
// metrics call running exactly what a worker runs, and a crash can tell an attempt that ran from a
// job that only waited. That write costs little: a worker notes the start here, and one request
// (store.ApplyQueued) writes the starts noted by the time the committer reaches it, of the jobs
// still running then. A job whose handler returned before that is started by its acknowledgement,
// in the one write of its outcome (finish), as a short job's record was written once before there
// was a start to write.

// startMark is a start noted and not yet written.
type startMark struct {
	attempt int // the attempt started: the record's attempt + 1
	at      time.Time
}

// noteStart notes the start of a job's attempt and makes sure a request will write it.
func (r *Runtime) noteStart(id string, m startMark) {
	r.startMu.Lock()
	r.starts[id] = m
	send := !r.startQueued
	r.startQueued = true
	r.startMu.Unlock()
	if !send {
		return
	}
	if err := r.store.ApplyQueued(context.Background(), r.writeStarts); err != nil {
		// The store is closed: the acknowledgement fails too, and the next start tries again.
		r.startMu.Lock()
		r.startQueued = false
		r.startMu.Unlock()
	}
}

// takeStart forgets a start not yet written, once its handler returned: the acknowledgement
// writes it with the outcome.
func (r *Runtime) takeStart(id string) {
	r.startMu.Lock()
	delete(r.starts, id)
	r.startMu.Unlock()
}

// writeStarts writes the starts noted so far; it runs in the committer, one at a time.
func (r *Runtime) writeStarts(u Updater) {
	r.startMu.Lock()
	marks := r.starts
	r.starts, r.startsSpare = r.startsSpare, nil
	r.startQueued = false
	r.startMu.Unlock()
	for id, m := range marks {
		u.Update(id, func(cur *Job) error {
			if cur.State != StatePrefetched || cur.Attempt != m.attempt-1 {
				return errStale // its lease never reached the disk, or it changed: the ack will see it
			}
			// LeaseUntil stays as the lease set it: a new deadline would move the job's lease entry,
			// two more writes for each job, and reclaimExpired never touches a job running here.
			at := m.at
			cur.State, cur.Attempt, cur.StartedAt = StateRunning, m.attempt, &at
			cur.Progress = nil // a new attempt reports afresh
			cur.AttemptedBy = appendNode(cur.AttemptedBy, r.opts.Node)
			return nil
		})
	}
	clear(marks)
	r.startMu.Lock()
	r.startsSpare = marks
	r.startMu.Unlock()
}
