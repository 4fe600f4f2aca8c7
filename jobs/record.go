package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// State of a job.
type State string

// The states a job moves through.
const (
	StateScheduled  State = "scheduled"  // waiting for RunAt (a delayed job)
	StateReady      State = "ready"      // can run now
	StatePrefetched State = "prefetched" // leased by the process, waiting for a free worker
	StateRunning    State = "running"    // its handler runs (a worker took it)
	StateRetrying   State = "retrying"   // failed, waiting for its backoff (RunAt)
	StateSucceeded  State = "succeeded"
	StateDead       State = "dead"     // out of attempts, or a permanent error
	StateCanceled   State = "canceled" // canceled by hand
)

// States lists every state, in the order a job moves through them.
var States = []State{StateScheduled, StateReady, StatePrefetched, StateRunning, StateRetrying, StateSucceeded, StateDead, StateCanceled}

// Finished reports whether the job is done for good (succeeded, dead or canceled).
func (s State) Finished() bool {
	return s == StateSucceeded || s == StateDead || s == StateCanceled
}

// Waiting reports whether the job waits to run (scheduled, ready or retrying): what max_pending counts.
func (s State) Waiting() bool {
	return s == StateScheduled || s == StateReady || s == StateRetrying
}

// Leased reports whether a process holds the job's lease (prefetched or running): what a crash
// leaves behind for Recover.
func (s State) Leased() bool { return s == StatePrefetched || s == StateRunning }

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// CheckDeletable returns an error when states names a leased state, which DeleteMany refuses.
func CheckDeletable(states []State) error {
	for _, st := range states {
		if !st.Valid() || st.Leased() {
			return fmt.Errorf("delete many: state %q cannot be deleted (a process holds leased jobs)", st)
		}
	}
	return nil
}

// AttemptError is the error of one attempt.
type AttemptError struct {
	Attempt int
	At      time.Time
	Error   string
}

// Job is a job's record, as a Store keeps it and a Handler gets it. It has no JSON form of its
// own: the HTTP API maps it to its response type (package server), and each Store encodes it in
// its own format.
type Job struct {
	ID          string // UUIDv7; Store.Insert assigns one when empty
	Kind        string
	Queue       string
	Payload     json.RawMessage
	Priority    int // 0..9, higher runs first
	RunAt       time.Time
	Attempt     int // attempts started so far (a handler was called)
	MaxAttempts int
	Timeout     time.Duration
	State       State
	Errors      []AttemptError // the last attempts' errors, oldest first
	Result      json.RawMessage
	UniqueKey   string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	StartedAt   *time.Time // when the last attempt's handler started
	FinishedAt  *time.Time
	LeaseUntil  *time.Time      // while prefetched or running: when the lease ends
	AttemptedBy []string        // the node (Options.Node) that ran each attempt, oldest first, the last 25
	Progress    *ProgressReport // what the running handler last reported; nil when it reported none
	Periodic    string          // the periodic schedule that made the job; "" when none made it
	Slot        time.Time       // that schedule's slot (when it was due); zero when Periodic is ""
}

// ProgressReport is a handler's latest report on a running job (see Progress, the function a
// handler reports with). Only the latest is kept, so a job's record stays bounded however often
// its handler reports.
type ProgressReport struct {
	Percent int       // 0..100
	Message string    // at most MaxProgressMessage bytes
	At      time.Time // when it was reported
}

// MaxProgressMessage bounds ProgressReport.Message, in bytes: a longer message is cut.
const MaxProgressMessage = 512

// Clone returns a deep copy, so a caller can change it without touching the original.
func (j *Job) Clone() *Job {
	c := *j
	c.Payload = append(json.RawMessage(nil), j.Payload...)
	c.Result = append(json.RawMessage(nil), j.Result...)
	c.Errors = append([]AttemptError(nil), j.Errors...)
	c.AttemptedBy = append([]string(nil), j.AttemptedBy...)
	if j.Progress != nil {
		p := *j.Progress
		c.Progress = &p
	}
	for _, p := range []**time.Time{&c.StartedAt, &c.FinishedAt, &c.LeaseUntil} {
		if *p != nil {
			t := **p
			*p = &t
		}
	}
	if len(j.Payload) == 0 {
		c.Payload = nil
	}
	if len(j.Result) == 0 {
		c.Result = nil
	}
	return &c
}

// Filter selects jobs for List. Empty fields match everything.
type Filter struct {
	Queue, Kind string
	State       State
	Limit       int    // default 50, at most 1000
	Cursor      string // from a previous List; "" for the first page
	// CreatedAfter and CreatedBefore bound CreatedAt to the half-open range [CreatedAfter,
	// CreatedBefore), so that two adjacent ranges never both hold a job. Zero: no bound.
	CreatedAfter, CreatedBefore time.Time
}

// MatchesCreated reports whether t is within the filter's created range.
func (f Filter) MatchesCreated(t time.Time) bool {
	return (f.CreatedAfter.IsZero() || !t.Before(f.CreatedAfter)) && (f.CreatedBefore.IsZero() || t.Before(f.CreatedBefore))
}

// Matches reports whether j matches every field of the filter but Limit and Cursor: what List
// selects, for a backend that filters records itself.
func (f Filter) Matches(j *Job) bool {
	return (f.Queue == "" || j.Queue == f.Queue) && (f.Kind == "" || j.Kind == f.Kind) &&
		(f.State == "" || j.State == f.State) && f.MatchesCreated(j.CreatedAt)
}

// QueueStats describes one queue.
type QueueStats struct {
	Name        string
	Paused      bool
	Counts      map[State]int // every State, 0 when none
	OldestReady time.Time     // RunAt of the longest-waiting ready job; zero when none
}

// Errors of a Store that callers of the runtime branch on. A Store returns them, or errors that
// wrap them.
var (
	// ErrNotFound means no job has that id (or, from Runtime.Queue and Pause, no such queue).
	ErrNotFound = errors.New("not found")
	// ErrQueueFull means the queue holds max_pending waiting jobs already; nothing was written.
	ErrQueueFull = errors.New("queue full")
	// ErrNotFinished means the job has not finished, so it cannot be deleted.
	ErrNotFinished = errors.New("job has not finished")
	// ErrBadCursor means a List cursor was not one List returned.
	ErrBadCursor = errors.New("bad cursor")
	// ErrStoreClosed means the store was closed: nothing more can be written or read.
	ErrStoreClosed = errors.New("store closed")
)
