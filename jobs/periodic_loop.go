package jobs

import (
	"context"
	"time"
)

// periodicRetry is how long the scheduler waits after a failed fire (the store is down) before it
// tries the slot again; a retry that lands after the next slot fires that one instead, and counts
// the slot it missed as skipped.
const periodicRetry = time.Second

// periodicInit reads the schedules' marks and sets each one's first due slot (periodicStart):
// Start calls it, so that the catch-up is decided by the clock at start.
func (r *Runtime) periodicInit(ctx context.Context) error {
	marks, err := r.store.PeriodicMarks(ctx)
	if err != nil {
		return err
	}
	now := r.opts.Now()
	for _, e := range r.periodic {
		r.periodicStart(e, marks[e.p.Name], now)
	}
	return nil
}

// periodicLoop is the scheduler: it sleeps until the earliest due slot and fires it. It wakes at
// least every second, so a clock that jumps is followed within a second.
func (r *Runtime) periodicLoop(ctx context.Context) {
	for {
		now := r.opts.Now()
		wake := now.Add(time.Second)
		for _, e := range r.periodic {
			if e.due.IsZero() {
				continue // no slot within five years
			}
			if !e.due.After(now) && !e.retry.After(now) {
				r.firePeriodic(ctx, e, now)
			}
			if at := later(e.due, e.retry); !at.IsZero() && at.Before(wake) {
				wake = at
			}
		}
		if !r.sleep(ctx, wake.Sub(r.opts.Now())) {
			return
		}
	}
}

// sleep waits d (at least a millisecond), or less when WakePeriodic is called; false when ctx ended.
func (r *Runtime) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(max(d, time.Millisecond))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-r.periodicWake:
	case <-t.C:
	}
	return true
}

// periodicStart sets a schedule's first due slot from its mark m: a schedule that never fired
// waits for its first slot after now; with CatchUpOne a mark older than the latest slot makes
// that slot due at once (the loop fires it); with CatchUpNone the missed slots are skipped.
func (r *Runtime) periodicStart(e *periodicEntry, m PeriodicMark, now time.Time) {
	e.last = m.Slot
	latest := e.sched.Prev(now)
	switch {
	case m.Slot.IsZero():
		e.due = e.sched.Next(now)
	case latest.After(m.Slot) && e.p.CatchUp == CatchUpNone:
		r.periodicSkipped(e, 1+e.sched.Between(m.Slot, latest), m.Slot, latest)
		e.last, e.due = latest, e.sched.Next(latest)
	default:
		e.due = e.sched.Next(m.Slot)
	}
}

// firePeriodic fires the latest slot at or before now (e.due, unless the process slept past it).
func (r *Runtime) firePeriodic(ctx context.Context, e *periodicEntry, now time.Time) {
	slot := e.sched.Prev(now)
	if slot.Before(e.due) {
		slot = e.due // Prev and due agree but for a clock that went back
	}
	j, err := r.periodicJob(e.p, slot)
	if err != nil { // the kind's Validate refuses the payload it took at registration
		r.log.Error("periodic: the job is invalid; slot skipped", "periodic", e.p.Name, "slot", slot, "err", err)
		r.periodicSkipped(e, 1, e.last, slot)
		e.last, e.due = slot, e.sched.Next(slot)
		return
	}
	created, prev, err := r.store.FirePeriodic(ctx, e.p.Name, slot, j)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("periodic: fire; retrying", "periodic", e.p.Name, "slot", slot, "err", err)
		}
		e.retry = now.Add(periodicRetry)
		return
	}
	// Slots after the previous mark and before this one were fired by no process; those this
	// process skipped already (CatchUpNone at start) are not counted again.
	if from := later(prev, e.last); created && !from.IsZero() {
		if n := e.sched.Between(from, slot); n > 0 {
			r.periodicSkipped(e, n, from, slot)
		}
	}
	e.last, e.due, e.retry = slot, e.sched.Next(slot), time.Time{}
	if !created {
		r.log.Debug("periodic: slot already fired", "periodic", e.p.Name, "slot", slot, "last", prev)
		return
	}
	r.log.Debug("periodic: fired", "periodic", e.p.Name, "slot", slot, "job", j.ID)
	if po, ok := r.opts.Observer.(PeriodicObserver); ok {
		po.PeriodicFired(e.p.Name)
	}
	r.enqueued([]*Job{j}, []bool{true})
}

// periodicSkipped logs and counts n slots after from up to to that no process fired.
func (r *Runtime) periodicSkipped(e *periodicEntry, n int, from, to time.Time) {
	r.log.Info("periodic: missed slots skipped", "periodic", e.p.Name, "slots", n, "after", from, "until", to, "catch_up", e.p.CatchUp)
	if po, ok := r.opts.Observer.(PeriodicObserver); ok {
		po.PeriodicSkipped(e.p.Name, n)
	}
}

// later returns the later of two times.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
