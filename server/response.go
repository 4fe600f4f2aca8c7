package server

import (
	"encoding/json"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// The API's answers for jobs and queues, mapped from package jobs' types here and nowhere else, so
// that a change of the record (or of its store) cannot change the wire by accident. The shape is
// api/openapi.yaml's Job and Queue; TestJobJSONIsTheWireFormat pins it byte for byte.

// jobResponse is a job as the API shows it: the timeout as a duration string.
type jobResponse struct {
	ID          string                 `json:"id"`
	Kind        string                 `json:"kind"`
	Queue       string                 `json:"queue"`
	Payload     json.RawMessage        `json:"payload,omitempty"`
	Priority    int                    `json:"priority"`
	RunAt       time.Time              `json:"run_at"`
	Attempt     int                    `json:"attempt"`
	MaxAttempts int                    `json:"max_attempts"`
	State       jobs.State             `json:"state"`
	Errors      []attemptErrorResponse `json:"errors,omitempty"`
	Result      json.RawMessage        `json:"result,omitempty"`
	UniqueKey   string                 `json:"unique_key,omitempty"`
	CreatedAt   time.Time              `json:"created_at"`
	UpdatedAt   time.Time              `json:"updated_at"`
	StartedAt   *time.Time             `json:"started_at,omitempty"`
	FinishedAt  *time.Time             `json:"finished_at,omitempty"`
	LeaseUntil  *time.Time             `json:"lease_until,omitempty"`
	Timeout     string                 `json:"timeout"`
	AttemptedBy []string               `json:"attempted_by"` // [] before the first attempt
	Progress    *progressResponse      `json:"progress,omitempty"`
	Periodic    string                 `json:"periodic,omitempty"`
	Slot        *time.Time             `json:"slot,omitempty"`
}

// progressResponse is a running handler's latest progress report.
type progressResponse struct {
	Percent int       `json:"percent"`
	Message string    `json:"message,omitempty"`
	At      time.Time `json:"at"`
}

// attemptErrorResponse is one attempt's error in a jobResponse.
type attemptErrorResponse struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
}

// newJobResponse is the one mapping of a job to the API's answer. The answer shares the job's
// payload, result and times; it is encoded at once, so nothing changes them meanwhile.
func newJobResponse(j *jobs.Job) jobResponse {
	v := jobResponse{
		ID: j.ID, Kind: j.Kind, Queue: j.Queue, Payload: j.Payload, Priority: j.Priority, RunAt: j.RunAt,
		Attempt: j.Attempt, MaxAttempts: j.MaxAttempts, State: j.State, Result: j.Result, UniqueKey: j.UniqueKey,
		CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt,
		LeaseUntil: j.LeaseUntil, Timeout: j.Timeout.String(), AttemptedBy: j.AttemptedBy, Periodic: j.Periodic,
	}
	if !j.Slot.IsZero() {
		slot := j.Slot
		v.Slot = &slot
	}
	if p := j.Progress; p != nil {
		v.Progress = &progressResponse{Percent: p.Percent, Message: p.Message, At: p.At}
	}
	if v.AttemptedBy == nil {
		v.AttemptedBy = []string{}
	}
	if len(j.Errors) > 0 {
		v.Errors = make([]attemptErrorResponse, len(j.Errors))
		for i, e := range j.Errors {
			v.Errors[i] = attemptErrorResponse{Attempt: e.Attempt, At: e.At, Error: e.Error}
		}
	}
	return v
}

// newJobResponses maps a list of jobs.
func newJobResponses(js []*jobs.Job) []jobResponse {
	out := make([]jobResponse, len(js))
	for i, j := range js {
		out[i] = newJobResponse(j)
	}
	return out
}

// queueResponse is a queue as the API shows it.
type queueResponse struct {
	Name                  string  `json:"name"`
	Paused                bool    `json:"paused"`
	Scheduled             int     `json:"scheduled"`
	Ready                 int     `json:"ready"`
	Prefetched            int     `json:"prefetched"`
	Running               int     `json:"running"`
	Retrying              int     `json:"retrying"`
	Succeeded             int     `json:"succeeded"`
	Dead                  int     `json:"dead"`
	Canceled              int     `json:"canceled"`
	OldestReadyAgeSeconds float64 `json:"oldest_ready_age_seconds"`
}

// newQueueResponse is the one mapping of a queue's stats to the API's answer, its oldest ready
// job's age taken at now.
func newQueueResponse(q jobs.QueueStats, now time.Time) queueResponse {
	v := queueResponse{
		Name: q.Name, Paused: q.Paused,
		Scheduled: q.Counts[jobs.StateScheduled], Ready: q.Counts[jobs.StateReady], Prefetched: q.Counts[jobs.StatePrefetched],
		Running: q.Counts[jobs.StateRunning], Retrying: q.Counts[jobs.StateRetrying], Succeeded: q.Counts[jobs.StateSucceeded],
		Dead: q.Counts[jobs.StateDead], Canceled: q.Counts[jobs.StateCanceled],
	}
	if !q.OldestReady.IsZero() {
		v.OldestReadyAgeSeconds = max(0, now.Sub(q.OldestReady).Seconds())
	}
	return v
}
