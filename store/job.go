package store

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

// AttemptError is the error of one attempt.
type AttemptError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
}

// Job is the persisted record.
type Job struct {
	ID          string          `json:"id"` // UUIDv7; Insert assigns one when empty
	Kind        string          `json:"kind"`
	Queue       string          `json:"queue"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	Priority    int             `json:"priority"` // 0..9, higher runs first
	RunAt       time.Time       `json:"run_at"`
	Attempt     int             `json:"attempt"` // attempts started so far (a handler was called)
	MaxAttempts int             `json:"max_attempts"`
	Timeout     time.Duration   `json:"timeout"`
	State       State           `json:"state"`
	Errors      []AttemptError  `json:"errors,omitempty"`
	Result      json.RawMessage `json:"result,omitempty"`
	UniqueKey   string          `json:"unique_key,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	StartedAt   *time.Time      `json:"started_at,omitempty"` // when the last attempt's handler started
	FinishedAt  *time.Time      `json:"finished_at,omitempty"`
	LeaseUntil  *time.Time      `json:"lease_until,omitempty"`
}

// Clone returns a deep copy, so a caller can change it without touching the store's.
func (j *Job) Clone() *Job {
	c := *j
	c.Payload = append(json.RawMessage(nil), j.Payload...)
	c.Result = append(json.RawMessage(nil), j.Result...)
	c.Errors = append([]AttemptError(nil), j.Errors...)
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

// recordV1 is the first record format: the job as JSON. Records are versioned by their first
// byte; new records are written as recordV2 (codec.go) and version-1 records are still read.
const recordV1 = 1

var errBadRecord = errors.New("store: bad record")

func encodeJob(j *Job) ([]byte, error) { return encodeV2(j), nil }

func decodeJob(b []byte) (*Job, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: too short", errBadRecord)
	}
	switch b[0] {
	case recordV2:
		return decodeV2(b[1:])
	case recordV1:
		j := new(Job)
		if err := json.Unmarshal(b[1:], j); err != nil {
			return nil, fmt.Errorf("%w: %w", errBadRecord, err)
		}
		return j, nil
	}
	return nil, fmt.Errorf("%w: unknown version %d", errBadRecord, b[0])
}
