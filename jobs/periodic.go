package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Periodic jobs (Celery beat, asynq's Scheduler, River's periodic jobs): a schedule registered
// before Start enqueues one job per slot. Each slot fires exactly once, whatever the number of
// processes and restarts: the job and the schedule's mark (its last slot) are written in one
// commit, only when the slot is after the mark (Store.FirePeriodic), so a second process or a
// restarted one that tries the same slot writes nothing. Every process runs the scheduler (on a
// shared store too: no slot waits for a leadership handover); the store lets one win.
//
// A running process fires each slot when it comes, late by its commit. A slot that came while no
// process ran is missed; at start the runtime looks at the latest slot at or before now, and
// when the mark is older it applies CatchUp: CatchUpOne fires that latest slot (once) and counts
// the older missed ones as skipped; CatchUpNone records nothing and counts them all as skipped.
// A schedule that never fired has nothing to catch up: its first slot is the first after start.
// A process that sleeps past several slots (a stall) fires the latest and skips the others, as
// CatchUpOne does. Replicas' clocks are assumed in step (NTP): a slot fires by the clock of the
// first process to reach it.

// CatchUp says what a start does about the slots missed while no process ran.
type CatchUp string

// The catch-up policies.
const (
	CatchUpOne  CatchUp = "one"  // fire the latest missed slot at start; skip the older ones (the default)
	CatchUpNone CatchUp = "none" // fire none of them: wait for the next slot
)

// Periodic is a schedule that enqueues a job at each slot.
type Periodic struct {
	// Name identifies the schedule in the store (its last slot) and on its jobs (Job.Periodic):
	// 1 to 128 bytes, unique. Renaming a schedule starts it afresh. Required.
	Name string
	// Schedule is a cron expression, a descriptor or @every (see ParseSchedule). Required.
	Schedule string
	// Timezone reads the cron fields in this zone. Default UTC. A CRON_TZ= prefix wins over it.
	Timezone *time.Location
	// CatchUp is what a start does about missed slots. Default CatchUpOne.
	CatchUp CatchUp
	// Kind, Queue, Payload, Priority, MaxAttempts and Timeout describe each job, as
	// EnqueueParams do, with the same defaults; they are validated at RegisterPeriodic. Kind is
	// required and must be registered before.
	Kind        string
	Queue       string
	Payload     json.RawMessage
	Priority    int
	MaxAttempts int
	Timeout     time.Duration
}

// PeriodicMark is what a store records of a schedule: its last slot fired and that slot's job.
type PeriodicMark struct {
	Slot  time.Time
	JobID string
}

// PeriodicStatus is one schedule as the API lists it.
type PeriodicStatus struct {
	Periodic
	Next      time.Time // the next slot after now
	LastSlot  time.Time // the last slot fired (by any process); zero when none
	LastJobID string    // that slot's job; "" when none
	LastState State     // that job's state; "" when none or when it was deleted (retention)
}

// PeriodicObserver is what an Observer may add to count periodic slots (package metrics does).
type PeriodicObserver interface {
	// PeriodicFired is called for each slot this process fired (its job was created).
	PeriodicFired(name string)
	// PeriodicSkipped is called with the slots of a schedule that were missed and not caught up.
	PeriodicSkipped(name string, n int)
}

// periodicEntry is a registered schedule; last and due belong to the scheduler goroutine.
type periodicEntry struct {
	p     Periodic
	sched Schedule
	last  time.Time // the latest slot fired, refused as already fired, or skipped
	due   time.Time // the next slot to fire
	retry time.Time // after a failed fire: not before this
}

// RegisterPeriodic adds a schedule; call it before Start, after registering its kind. Errors:
// a bad schedule (wrapping ErrBadSchedule), an unknown kind (wrapping ErrUnknownKind), a field a
// job could not have (a *ValidationError naming it), a duplicate name.
func (r *Runtime) RegisterPeriodic(p Periodic) error {
	if p.Name == "" || len(p.Name) > 128 || strings.IndexByte(p.Name, 0) >= 0 {
		return fmt.Errorf("jobs: register periodic: name must be 1 to 128 bytes without NUL, got %q", p.Name)
	}
	sched, err := ParseSchedule(p.Schedule, p.Timezone)
	if err != nil {
		return fmt.Errorf("jobs: register periodic %s: schedule: %w", p.Name, err)
	}
	switch p.CatchUp {
	case "":
		p.CatchUp = CatchUpOne
	case CatchUpOne, CatchUpNone:
	default:
		return fmt.Errorf("jobs: register periodic %s: catch_up must be %q or %q, got %q", p.Name, CatchUpOne, CatchUpNone, p.CatchUp)
	}
	if p.Timezone == nil {
		p.Timezone = time.UTC
	}
	p.Queue = cmp.Or(p.Queue, "default")
	if _, ok := r.kind(p.Kind); !ok {
		return fmt.Errorf("jobs: register periodic %s: kind %q: %w (registered: %v)", p.Name, p.Kind, ErrUnknownKind, r.Kinds())
	}
	if _, err := r.periodicJob(p, time.Now()); err != nil {
		return fmt.Errorf("jobs: register periodic %s: %w", p.Name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return fmt.Errorf("jobs: register periodic %s: the runtime has started", p.Name)
	}
	for _, e := range r.periodic {
		if e.p.Name == p.Name {
			return fmt.Errorf("jobs: register periodic %s: already registered", p.Name)
		}
	}
	r.periodic = append(r.periodic, &periodicEntry{p: p, sched: sched})
	return nil
}

// periodicJob builds a schedule's job for a slot, validated as an enqueue is.
func (r *Runtime) periodicJob(p Periodic, slot time.Time) (*Job, error) {
	verr := &ValidationError{Subject: "periodic job"}
	j, err := r.build(EnqueueParams{Kind: p.Kind, Queue: p.Queue, Payload: p.Payload, Priority: p.Priority,
		MaxAttempts: p.MaxAttempts, Timeout: p.Timeout}, 0, slot.UTC(), verr)
	if err != nil {
		return nil, err
	}
	if len(verr.Fields) > 0 {
		fields := map[string]string{}
		for k, v := range verr.Fields {
			fields[trimBatchPrefix(k)] = v
		}
		verr.Fields = fields
		return nil, verr
	}
	// Due at its slot, so that its queue wait counts from there.
	j.Periodic, j.Slot, j.RunAt = p.Name, slot.UTC(), slot.UTC()
	return j, nil
}

// Periodic lists the registered schedules, sorted by name, with their last slot (by whichever
// process fired it) and that job's state.
func (r *Runtime) Periodic(ctx context.Context) ([]PeriodicStatus, error) {
	r.mu.Lock()
	entries := append([]*periodicEntry(nil), r.periodic...)
	r.mu.Unlock()
	if len(entries) == 0 {
		return []PeriodicStatus{}, nil
	}
	marks, err := r.store.PeriodicMarks(ctx)
	if err != nil {
		return nil, fmt.Errorf("periodic: %w", err)
	}
	now := r.opts.Now()
	out := make([]PeriodicStatus, 0, len(entries))
	for _, e := range entries {
		m := marks[e.p.Name]
		st := PeriodicStatus{Periodic: e.p, Next: e.sched.Next(now), LastSlot: m.Slot, LastJobID: m.JobID}
		if m.JobID != "" {
			j, err := r.store.Get(ctx, m.JobID)
			switch {
			case err == nil:
				st.LastState = j.State
			case !errors.Is(err, ErrNotFound):
				return nil, fmt.Errorf("periodic %s: last job: %w", e.p.Name, err)
			}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
