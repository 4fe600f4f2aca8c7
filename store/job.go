package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// recordV1 is the first record format: the job as JSON. Records are versioned by their first
// byte; new records are written as recordV2 (codec.go) and version-1 records are still read.
const recordV1 = 1

var errBadRecord = errors.New("store: bad record")

func encodeJob(j *jobs.Job) ([]byte, error) { return encodeV2(j), nil }

func decodeJob(b []byte) (*jobs.Job, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: too short", errBadRecord)
	}
	switch b[0] {
	case recordV2:
		return decodeV2(b[1:])
	case recordV1:
		var v jobV1
		if err := json.Unmarshal(b[1:], &v); err != nil {
			return nil, fmt.Errorf("%w: %w", errBadRecord, err)
		}
		return v.job(), nil
	}
	return nil, fmt.Errorf("%w: unknown version %d", errBadRecord, b[0])
}

// jobV1 is a version-1 record: the job as JSON, with the names the first tandem gave its fields.
// The format is the store's: jobs.Job has no JSON form of its own.
type jobV1 struct {
	ID          string          `json:"id"`
	Kind        string          `json:"kind"`
	Queue       string          `json:"queue"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	Priority    int             `json:"priority"`
	RunAt       time.Time       `json:"run_at"`
	Attempt     int             `json:"attempt"`
	MaxAttempts int             `json:"max_attempts"`
	Timeout     time.Duration   `json:"timeout"`
	State       jobs.State      `json:"state"`
	Errors      []struct {
		Attempt int       `json:"attempt"`
		At      time.Time `json:"at"`
		Error   string    `json:"error"`
	} `json:"errors,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"`
	UniqueKey  string          `json:"unique_key,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	StartedAt  *time.Time      `json:"started_at,omitempty"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
	LeaseUntil *time.Time      `json:"lease_until,omitempty"`
}

func (v *jobV1) job() *jobs.Job {
	j := &jobs.Job{ID: v.ID, Kind: v.Kind, Queue: v.Queue, Payload: v.Payload, Priority: v.Priority, RunAt: v.RunAt,
		Attempt: v.Attempt, MaxAttempts: v.MaxAttempts, Timeout: v.Timeout, State: v.State, Result: v.Result,
		UniqueKey: v.UniqueKey, CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt, StartedAt: v.StartedAt,
		FinishedAt: v.FinishedAt, LeaseUntil: v.LeaseUntil}
	for _, e := range v.Errors {
		j.Errors = append(j.Errors, jobs.AttemptError{Attempt: e.Attempt, At: e.At, Error: e.Error})
	}
	return j
}
